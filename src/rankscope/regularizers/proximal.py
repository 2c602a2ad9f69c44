"""Proximal step of the nuclear norm: singular-value soft-thresholding (true low rank).

prox_{τ‖·‖_*}(W) = U·max(Σ − τ, 0)·Vᵀ is the minimiser of ½‖X − W‖_F² + τ‖X‖_*; after a
gradient step of size η on the data loss, applying it with τ = η·λ is one step of proximal
gradient descent on loss + λ‖W‖_*. Unlike a smoothed penalty it sets singular values exactly
to zero, so the weights are exactly low rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rankscope.regularizers.penalties import layer_weights

__all__ = ["ProximalNuclear", "prox_nuclear"]


def prox_nuclear(w: torch.Tensor, tau: float) -> tuple[torch.Tensor, int]:
    """(U·max(Σ − τ, 0)·Vᵀ, its rank) for a (m, n, ...) weight (conv kernels as (m, n·k))."""
    if not isinstance(tau, int | float) or not tau >= 0:
        raise ValueError(f"threshold tau must be a number >= 0, got {tau!r}")
    mat = w.reshape(w.shape[0], -1)
    u, s, vh = torch.linalg.svd(mat.to(torch.float64), full_matrices=False)
    s = (s - tau).clamp_min(0.0)
    rank = int((s > 0).sum())
    out = (u[:, :rank] * s[:rank]) @ vh[:rank]
    return out.to(w.dtype).reshape(w.shape), rank


class ProximalNuclear:
    """Soft-threshold the chosen layers' singular values by τ = lr·strength, in place.

    Call ``prox.step(model)`` after each ``optimizer.step()``; it returns {layer: rank}. As a
    :func:`rankscope.train.train` callback (``prox(state)``, returns None) it runs at the
    logging steps, so pass ``log_at=1`` for a step every iteration.
    """

    def __init__(
        self, strength: float, lr: float, *, layers: str | Sequence[str] | None = None
    ) -> None:
        if not strength >= 0 or not lr > 0:
            raise ValueError(f"need strength >= 0 and lr > 0, got {strength!r}, {lr!r}")
        self.tau, self.layers = float(strength) * float(lr), layers
        self.ranks: dict[str, int] = {}

    def __call__(self, state) -> None:
        self.step(state.model)

    @torch.no_grad()
    def step(self, model: nn.Module) -> dict[str, int]:
        """Soft-threshold every chosen layer of ``model`` once; {layer name: new rank}."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"expected an nn.Module or a TrainState, got {type(model).__name__}")
        for name, w in layer_weights(model, self.layers):
            new, rank = prox_nuclear(w, self.tau)
            w.copy_(new)
            self.ranks[name] = rank
        return dict(self.ranks)
