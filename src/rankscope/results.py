"""The result of one run: what experiments return, the store keeps and claims/figures read.

A leaf module (like :mod:`rankscope.records`) so that the store, below the experiments,
can hold results without importing the experiment layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rankscope.records import Records

__all__ = ["Result"]


@dataclass
class Result:
    """What one run produced.

    ``summary``: JSON-serializable scalars and short lists that claims read.
    ``records``: the tidy log (step, name, layer, index, value); ``tensors``: saved as safetensors.
    ``status``: ``ok`` | ``diverged`` | ``failed`` (the latter two set by the runner).
    """

    summary: dict[str, Any] = field(default_factory=dict)
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
        return self.summary.get(key, default)
