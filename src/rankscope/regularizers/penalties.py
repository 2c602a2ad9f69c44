"""Differentiable Schatten-p penalties of weight matrices (definitions §6).

``schatten_penalty(W, p, eps)`` = Σ_i (s_i² + ε²)^{p/2} over the min(m, n) singular values of
W (:func:`rankscope.metrics.smoothed_schatten_power`). The smoothing keeps the gradient finite
at s = 0, where s^p has an infinite slope for p < 1 and a kink for p = 1: the gradient is
Σ_i p·s_i(s_i² + ε²)^{p/2−1}·u_i v_iᵀ, which vanishes at s_i = 0 and tends to that of Σ s_i^p
as ε → 0 (each zero s_i adds ε^p to the value). Default ε = 1e-3, in the units of W's
singular values; choose ε well below the singular values that should survive.

Conv kernels (out, in, *k) are penalised as (out, in·k) matrices. The singular values come
from ``torch.linalg.svdvals``, whose backward needs no 1/(s_i² − s_j²) terms and is stable
under repeated singular values.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from rankscope.metrics import linear_representation_cost, smoothed_schatten_power

__all__ = [
    "DEFAULT_EPS",
    "RankPenalty",
    "depth_penalty",
    "factor_penalty",
    "factor_penalty_floor",
    "layer_weights",
    "nuclear_penalty",
    "schatten_penalty",
]

DEFAULT_EPS = 1e-3


def _matrix(w: torch.Tensor) -> torch.Tensor:
    if not isinstance(w, torch.Tensor) or w.ndim < 2:
        got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise ValueError(f"a rank penalty needs a weight with >= 2 dims (m, n, ...), got {got}")
    return w.reshape(w.shape[0], -1)


def schatten_penalty(w: torch.Tensor, p: float, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Σ_i (s_i² + ε²)^{p/2}: the smoothed ‖W‖_{S_p}^p, differentiable everywhere (0-d).

    >>> w = torch.diag(torch.tensor([3.0, 4.0]))
    >>> round(float(schatten_penalty(w, 1.0, eps=1e-6)), 6)
    7.0
    """
    if not isinstance(p, int | float) or isinstance(p, bool) or not p > 0:
        raise ValueError(f"Schatten p must be a number > 0, got {p!r}")
    s = torch.linalg.svdvals(_matrix(w))
    return smoothed_schatten_power(s, float(p), delta=eps)


def nuclear_penalty(w: torch.Tensor, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Smoothed nuclear norm Σ_i (s_i² + ε²)^{1/2} (p = 1)."""
    return schatten_penalty(w, 1.0, eps=eps)


def depth_penalty(w: torch.Tensor, depth: int, *, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """L·Σ_i (s_i² + ε²)^{1/L}: the smoothed depth-L representation cost of W (p = 2/L)."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    return depth * schatten_penalty(w, 2.0 / depth, eps=eps)


def factor_penalty(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ_l ‖W_l‖_F² of the factors W_1, …, W_L of A = W_L⋯W_1 (weight decay on a deep net).

    Its minimum over all factorisations of A is :func:`factor_penalty_floor` (A, L).
    """
    if not factors:
        raise ValueError("factor_penalty needs at least one factor, got none")
    return sum((f * f).sum() for f in factors)


def factor_penalty_floor(a: torch.Tensor, depth: int) -> torch.Tensor:
    """min Σ_l ‖W_l‖_F² over W_L⋯W_1 = A: L·Σ_i s_i^{2/L} (definitions §6, §9)."""
    return linear_representation_cost(torch.linalg.svdvals(_matrix(a)), depth, zero_tol=0)


def layer_weights(
    model: nn.Module,
    layers: str | Sequence[str] | None = None,
    *,
    types: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d),
) -> list[tuple[str, torch.Tensor]]:
    """(name, weight) of ``model``'s Linear/Conv layers whose names match a glob in ``layers``.

    ``None`` takes every such layer. A pattern that matches nothing raises ValueError.
    """
    pats = [layers] if isinstance(layers, str) else list(layers or [])
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, types)]
    names = [n for n, _ in found]
    for pat in pats:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            raise ValueError(f"layer pattern {pat!r} matches no layer; layers: {names}")
    return [
        (n, m.weight) for n, m in found if not pats or any(fnmatch.fnmatchcase(n, p) for p in pats)
    ]


class RankPenalty:
    """``penalty(model)`` = strength · Σ over chosen layers of the smoothed Schatten-p power.

    Use inside a loss: ``loss_fn = lambda m, b: ce(m(b[0]), b[1]) + penalty(m)``.
    """

    def __init__(
        self,
        strength: float,
        *,
        p: float = 1.0,
        eps: float = DEFAULT_EPS,
        layers: str | Sequence[str] | None = None,
    ) -> None:
        if not isinstance(strength, int | float) or not strength >= 0:
            raise ValueError(f"strength must be a number >= 0, got {strength!r}")
        self.strength, self.p, self.eps, self.layers = float(strength), float(p), eps, layers

    def __call__(self, model: nn.Module) -> torch.Tensor:
        ws: Iterable[tuple[str, torch.Tensor]] = layer_weights(model, self.layers)
        total = sum(schatten_penalty(w, self.p, eps=self.eps) for _, w in ws)
        return self.strength * total
