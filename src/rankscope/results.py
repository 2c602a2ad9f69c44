"""The result of one run: what experiments return, the store keeps and claims/figures read.

A leaf module (like :mod:`rankscope.records`) so that the store, below the experiments,
can hold results without importing the experiment layer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from rankscope.records import Records

__all__ = ["Result", "summary_to_dict"]


@dataclass
class Result:
    """What one run produced.

    ``summary``: the experiment's summary dataclass (see
    :mod:`rankscope.experiments.summary`); stored as JSON by :func:`summary_to_dict`.
    ``records``: the tidy log (step, name, layer, index, value); ``tensors``: saved as safetensors.
    ``status``: ``ok`` | ``diverged`` | ``failed`` (the latter two set by the runner).
    """

    summary: Any = field(default_factory=dict)
    records: Records = field(default_factory=Records.empty)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    status: str = "ok"
    diverged_step: int | None = None
    error: str | None = None
    # Filled in by the runner/store, not by experiments:
    run_id: str = ""
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        if isinstance(self.summary, dict):
            return self.summary.get(key, default)
        return getattr(self.summary, key, default)


def summary_to_dict(obj: Any) -> Any:
    """JSON-able form of a summary: dataclasses become dicts, tuples lists, numpy scalars floats."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: summary_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): summary_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [summary_to_dict(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, str | bytes):  # numpy / torch values
        return summary_to_dict(obj.tolist())
    return obj
