"""Probe data: a tensor, a tensor file, or any iterable of batches, as (inputs, labels) pairs.

Accepted ``data``:

- a tensor or numpy array (N, ...): cut into batches of ``batch_size`` along dim 0;
- a path to a ``.pt``/``.pth``/``.safetensors``/``.npy``/``.npz`` file (read safely,
  :func:`rankscope.probe.checkpoint.load_tensor_file`) holding a tensor, an ``(x, y)`` pair,
  or a dict with an input key (``x``, ``inputs``, ``input``, ``data``, ``features``) and
  optionally a label key (``y``, ``labels``, ``label``, ``targets``, ``target``);
- an iterable (a ``DataLoader``, a list, a generator) of tensors, of ``(x, y)`` pairs, of
  1-tuples or 1-lists ``(x,)`` (what ``DataLoader(TensorDataset(x))`` yields) or of such
  dicts.

``labels`` (a tensor or file, (N,) integer class ids) goes with tensor/file data only; an
iterable carries its labels in its batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from rankscope.probe.checkpoint import CheckpointError, load_tensor_file

__all__ = ["iter_batches"]

_X_KEYS = ("x", "inputs", "input", "data", "features")
_Y_KEYS = ("y", "labels", "label", "targets", "target")
Batch = tuple[Any, torch.Tensor | None]


def iter_batches(
    data: Any,
    labels: Any = None,
    *,
    batch_size: int = 256,
    max_batches: int | None = None,
) -> Iterator[Batch]:
    """Yield (x, y) batches; ``y`` is None when there are no labels."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    source = load_tensor_file(data) if isinstance(data, str | Path) else data
    y_all = _as_labels(load_tensor_file(labels) if isinstance(labels, str | Path) else labels)
    if _is_array(source) or isinstance(source, Mapping | tuple):
        x, y_in = _split(source, where=str(data) if isinstance(data, str | Path) else "data")
        y = y_all if y_all is not None else y_in
        batches: Iterable[Batch] = _slices(_as_tensor(x), y, batch_size)
    elif isinstance(source, Iterable) and not isinstance(source, str | bytes):
        if y_all is not None:
            raise ValueError(
                "labels= goes with tensor or file data; an iterable of batches must carry its "
                "labels as (x, y) pairs"
            )
        batches = (_split(item, where="a batch") for item in source)
    else:
        raise TypeError(
            "data must be a tensor, a path to a .pt/.safetensors/.npy/.npz file, or an iterable "
            f"of tensors or (x, y) batches (e.g. a DataLoader); got {type(data).__name__}"
        )
    for i, (x, y) in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            return
        yield _as_tensor(x), _as_labels(y)


def _slices(x: torch.Tensor, y: torch.Tensor | None, batch_size: int) -> Iterator[Batch]:
    if y is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"{y.shape[0]} labels for {x.shape[0]} inputs; expected one label each")
    for start in range(0, x.shape[0], batch_size):
        stop = start + batch_size
        yield x[start:stop], (y[start:stop] if y is not None else None)


def _split(item: Any, *, where: str) -> tuple[Any, Any]:
    if _is_array(item):
        return item, None
    if isinstance(item, Mapping):
        x_key = next((k for k in _X_KEYS if k in item), None)
        if x_key is None:
            if len(item) == 1:
                return next(iter(item.values())), None
            raise CheckpointError(
                f"{where} has keys {sorted(item)}; expected an input key among {_X_KEYS} "
                f"and optionally a label key among {_Y_KEYS}"
            )
        y_key = next((k for k in _Y_KEYS if k in item), None)
        return item[x_key], (item[y_key] if y_key else None)
    if isinstance(item, tuple | list) and len(item) == 2:
        return item[0], item[1]
    if isinstance(item, tuple | list) and len(item) == 1:  # DataLoader(TensorDataset(x))
        return item[0], None
    raise TypeError(
        f"{where} is a {type(item).__name__}"
        + (f" of length {len(item)}" if isinstance(item, tuple | list) else "")
        + "; expected a tensor, an (x,) or (x, y) tuple/list or a dict with an input key"
    )


def _is_array(obj: Any) -> bool:
    if isinstance(obj, torch.Tensor):
        return True
    import numpy as np

    return isinstance(obj, np.ndarray)


def _as_tensor(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, tuple | list):  # several positional inputs
        return tuple(_as_tensor(v) for v in x)
    import numpy as np

    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    raise TypeError(f"model inputs must be tensors or numpy arrays, got {type(x).__name__}")


def _as_labels(y: Any) -> torch.Tensor | None:
    if y is None:
        return None
    y = _as_tensor(y)
    if isinstance(y, tuple):
        raise TypeError("labels must be one tensor of class ids, got a tuple")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            f"labels must be integer class ids of shape (N,), got {y.dtype} of shape "
            f"{tuple(y.shape)} (one-hot labels: pass labels.argmax(-1))"
        )
    return y.reshape(-1) if y.ndim > 1 and y.shape[-1] == 1 else y
