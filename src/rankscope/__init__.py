"""rankscope: measure, reproduce and use the notions of rank that explain how deep networks learn.

Importing the package is cheap and has no side effects: it does not import torch, does not
change thread counts and does not configure logging. Submodules load on first use::

    import rankscope
    rankscope.metrics.singular_values(x)
    rankscope.analyze(model)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "metrics",
    "probe",
    "models",
    "train",
    "experiments",
    "store",
    "sweep",
    "report",
    "threads",
    "compress",
    "track",
    "regularizers",
}
_ATTRS = {
    "analyze": ("rankscope.probe.analyze", "analyze"),
    "set_threads": ("rankscope.threads", "set_threads"),
}

__all__ = ["__version__", *sorted(_SUBMODULES), *sorted(_ATTRS)]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"rankscope.{name}")
    if name in _ATTRS:
        module, attr = _ATTRS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'rankscope' has no attribute {name!r}")
