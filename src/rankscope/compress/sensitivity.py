"""Layer sensitivities measured on the calibration set, for the global rank allocation.

The model's output error is modelled as additive over layers, E ≈ Σ_l w_l·ε_l², where ε_l² is
layer l's relative (whitened) truncation error. w_l is measured: layer l alone is truncated
at a probe rank (the uniform allocation's), the model is run on probe batches, and
w_l = E_l / ε_l² with E_l = Σ‖f̂(x) − f(x)‖² / Σ‖f(x)‖² the relative error of the model's
output (its first tensor output, ``last_hidden_state`` or ``logits``; token rows masked).
The weight is swapped in place and restored, so nothing else changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rankscope.compress.calibrate import Batch
from rankscope.compress.factorize import Whitener, truncate

__all__ = ["model_output", "output_error", "sensitivities"]


def model_output(res) -> torch.Tensor:
    """The primary output tensor of a forward call (tensor, HF output, tuple)."""
    if isinstance(res, torch.Tensor):
        return res
    for key in ("last_hidden_state", "logits"):
        val = getattr(res, key, None)
        if isinstance(val, torch.Tensor):
            return val
    if isinstance(res, tuple | list) and res and isinstance(res[0], torch.Tensor):
        return res[0]
    raise TypeError(f"cannot find an output tensor in {type(res).__name__}")


@torch.no_grad()
def _outputs(model: nn.Module, batches: Sequence[Batch]) -> list[torch.Tensor]:
    out = []
    for b in batches:
        y = model_output(model(*b.args, **b.kwargs)).to(torch.float64)
        if b.mask is not None and tuple(y.shape[:-1]) == tuple(b.mask.shape):
            y = y[b.mask.to(torch.bool)]
        out.append(y)
    return out


def output_error(ref: list[torch.Tensor], new: list[torch.Tensor]) -> float:
    num = sum(float(((a - b) ** 2).sum()) for a, b in zip(ref, new, strict=True))
    den = sum(float((a**2).sum()) for a in ref)
    return num / den if den > 0 else 0.0


@torch.no_grad()
def sensitivities(
    model: nn.Module,
    layers: dict[str, nn.Module],
    ranks: dict[str, int | None],
    whites: dict[str, Whitener | None],
    batches: Sequence[Batch],
) -> dict[str, float]:
    """w_l per layer (1.0 where the probe rank keeps the layer dense or loses nothing)."""
    ref = _outputs(model, batches)
    out = {}
    for name, mod in layers.items():
        r = ranks[name]
        w = mod.weight
        mat = w.detach().reshape(w.shape[0], -1)
        if r is None:
            out[name] = 1.0
            continue
        f = truncate(mat, r, whites[name])
        eps2 = 1.0 - f.energy_kept
        if eps2 <= 0:
            out[name] = 1.0
            continue
        saved = w.detach().clone()
        w.copy_((f.a @ f.b).to(w.dtype).reshape(w.shape))
        try:
            err = output_error(ref, _outputs(model, batches))
        finally:
            w.copy_(saved)
        out[name] = max(err / eps2, 1e-12)
    return out
