"""Calibration: stream each selected layer's inputs into float64 second moments.

A calibration set is a list of :class:`Batch` (positional and keyword arguments of the
model's forward, plus an optional (B, T) token mask that drops padding rows). Forward
pre-hooks turn a layer's input into rows of the matrix the weight multiplies:

- Linear: x (..., n) -> (rows, n), keeping the rows where the token mask is true when the
  leading dims of x are the mask's (B, T);
- Conv1d/Conv2d: the unfolded patches (``torch.nn.functional.unfold``), (B·L, C_in·k), in the
  same order as ``weight.reshape(out, -1)``.

Rows go into :class:`rankscope.metrics.CovarianceAccumulator` (float64, Chan's update); the
uncentred E[x xᵀ] = Σxxᵀ/N is what whitening needs. Layers fed the very same tensor in a
forward pass (the query/key/value projections of an attention block) share one accumulator.

Sequential mode (:func:`sequential_moments`) re-runs the model being compressed up to one
group of layers at a time and pairs its inputs x̂ with the original model's inputs x on the
same rows, giving Ĉ = E[x̂x̂ᵀ] and the cross moment E[x x̂ᵀ].
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from rankscope.metrics import CovarianceAccumulator

__all__ = ["Batch", "InputMoments", "collect_moments", "input_rows", "sequential_moments"]

_F64 = torch.float64


@dataclass
class Batch:
    """One calibration batch: ``model(*args, **kwargs)``; ``mask`` (B, T) marks real tokens."""

    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        mv = lambda v: v.to(device) if isinstance(v, torch.Tensor) else v  # noqa: E731
        return Batch(
            tuple(mv(a) for a in self.args),
            {k: mv(v) for k, v in self.kwargs.items()},
            None if self.mask is None else self.mask.to(device),
        )


def input_rows(module: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The rows (N, n) that ``module``'s weight matrix multiplies for the input ``x``."""
    if isinstance(module, nn.Linear):
        rows = x.reshape(-1, x.shape[-1])
        if mask is not None and tuple(x.shape[:-1]) == tuple(mask.shape):
            rows = rows[mask.reshape(-1).to(torch.bool)]
        return rows
    if isinstance(module, nn.Conv2d):
        pad = 0 if module.padding == "valid" else module.padding
        cols = F.unfold(x, module.kernel_size, module.dilation, pad, module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if isinstance(module, nn.Conv1d):
        pad = 0 if module.padding == "valid" else module.padding[0]
        cols = F.unfold(
            x.unsqueeze(2),
            (1, module.kernel_size[0]),
            (1, module.dilation[0]),
            (0, pad),
            (1, module.stride[0]),
        )
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    raise TypeError(f"no input rows for {type(module).__name__}")  # pragma: no cover


class _Stop(Exception):
    """Raised by a hook to end a forward pass early (nothing after the layer is needed)."""


@dataclass
class InputMoments:
    """Per-layer float64 moments of the calibration inputs.

    ``alias`` maps each layer name to the layer whose accumulator holds its inputs (itself,
    or the first layer fed the same tensor); ``order`` is the forward order of first calls.
    """

    acc: dict[str, CovarianceAccumulator]
    alias: dict[str, str]
    order: list[str]
    rows: dict[str, list[torch.Tensor]] | None = None  # kept inputs (float32), per batch

    def second_moment(self, name: str) -> torch.Tensor:
        """(n, n) E[x xᵀ] of layer ``name``'s inputs (float64)."""
        acc = self.acc[self.alias[name]]
        return acc.sum_outer / acc.n

    def samples(self, name: str) -> int:
        return self.acc[self.alias[name]].n


def _call(model: nn.Module, batch: Batch) -> None:
    try:
        model(*batch.args, **batch.kwargs)
    except _Stop:
        pass
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        shapes = [tuple(a.shape) for a in batch.args if isinstance(a, torch.Tensor)]
        shapes += [f"{k}={tuple(v.shape)}" for k, v in batch.kwargs.items() if hasattr(v, "shape")]
        raise ValueError(
            f"calibration batch of shape {', '.join(map(str, shapes))} does not fit "
            f"{type(model).__name__}: {exc}"
        ) from exc


@contextmanager
def _hooks(modules: dict[str, nn.Module], fn: Callable[[str, nn.Module, torch.Tensor], None]):
    handles = [
        mod.register_forward_pre_hook(lambda m, args, _n=name: fn(_n, m, args[0]))
        for name, mod in modules.items()
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def collect_moments(
    model: nn.Module,
    modules: dict[str, nn.Module],
    batches: Sequence[Batch],
    *,
    keep_rows: bool = False,
) -> InputMoments:
    """One pass over ``batches``: E[x xᵀ] of every layer in ``modules`` (name -> module).

    ``keep_rows=True`` also keeps each (canonical) layer's input rows per batch in float32
    (needed by the sequential mode; memory N_rows·Σn·4 bytes).
    """
    acc: dict[str, CovarianceAccumulator] = {}
    alias: dict[str, str] = {}
    order: list[str] = []
    rows: dict[str, list[torch.Tensor]] | None = {} if keep_rows else None
    seen: dict[tuple, tuple[str, torch.Tensor]] = {}
    mask: list[torch.Tensor | None] = [None]

    def hook(name: str, mod: nn.Module, x: torch.Tensor) -> None:
        if name not in alias:
            order.append(name)
        key = (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype)
        if isinstance(mod, nn.Linear) and key in seen:  # the same tensor fed another layer
            alias.setdefault(name, seen[key][0])
            return
        if isinstance(mod, nn.Linear):
            seen[key] = (name, x)  # keeps x alive, so its address is not reused this pass
        alias.setdefault(name, name)
        r = input_rows(mod, x.detach(), mask[0])
        acc.setdefault(name, CovarianceAccumulator(r.shape[1])).update(r)
        if rows is not None:
            rows.setdefault(name, []).append(r.to(torch.float32).cpu())

    device = _device(model)
    with torch.no_grad(), _hooks(modules, hook):
        for batch in batches:
            batch = batch.to(device)
            seen.clear()
            mask[0] = batch.mask
            _call(model, batch)
    seen.clear()
    return InputMoments(acc, alias, order, rows)


def sequential_moments(
    model: nn.Module,
    group: dict[str, nn.Module],
    batches: Sequence[Batch],
    original: InputMoments,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(Ĉ, E[x x̂ᵀ], N) for one group of layers sharing an input, in the model as it is now.

    The forward pass stops right after the group's first layer has been called. ``original``
    must hold the original model's input rows (``keep_rows=True``) on the same batches.
    """
    first = next(iter(group))
    canon = original.alias[first]
    stored = original.rows[canon]
    mod = group[first]
    acc = CovarianceAccumulator()
    cross: torch.Tensor | None = None
    state = {"i": 0, "mask": None}

    def hook(name: str, m: nn.Module, x: torch.Tensor) -> None:
        nonlocal cross
        xh = input_rows(m, x.detach(), state["mask"]).to(_F64)
        x0 = stored[state["i"]].to(device=xh.device, dtype=_F64)
        if x0.shape != xh.shape:
            raise RuntimeError(
                f"sequential calibration of {name}: {tuple(xh.shape)} input rows, the original "
                f"model gave {tuple(x0.shape)} on the same batch"
            )
        acc.update(xh)
        c = x0.T @ xh
        cross = c if cross is None else cross + c
        raise _Stop

    device = _device(model)
    with torch.no_grad(), _hooks({first: mod}, hook):
        for i, batch in enumerate(batches):
            batch = batch.to(device)
            state["i"], state["mask"] = i, batch.mask
            _call(model, batch)
    return acc.sum_outer / acc.n, cross / acc.n, acc.n


def iter_batches(x: torch.Tensor, batch_size: int) -> Iterator[Batch]:
    """Batches of the rows of a tensor ``x`` (N, ...), in order."""
    for i in range(0, x.shape[0], batch_size):
        yield Batch((x[i : i + batch_size],))
