"""Representation cost of a linear map and its depth expansion (definitions §6, §9).

For a linear map A (no bias) the depth-L representation cost is exact:
R(A; L) = min{Σ_ℓ ‖W_ℓ‖_F² : W_L⋯W_1 = A} = L·Σ_i s_i^{2/L}, and expanding
s^{2/L} = exp((2/L) log s) over the nonzero s_i gives R = L·R0 + R1 + R2/L + O(L^{-2}).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rankscope.metrics._validate import check_spectrum
from rankscope.metrics.norms import schatten_power
from rankscope.metrics.ranks import drop_small

__all__ = ["DepthExpansion", "depth_expansion", "linear_representation_cost"]


def _check_depth(depth: int | float) -> float:
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not depth > 0:
        raise ValueError(f"depth L must be a number > 0, got {depth!r}")
    return float(depth)


def linear_representation_cost(
    s: torch.Tensor,
    depth: int | float,
    *,
    zero_tol: float | None = None,
    shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """R(A; L) = L·Σ_i s_i^{2/L} = L·‖A‖_{S_{2/L}}^{2/L} (definitions §6, §9). Shape (...,).

    Numerically zero s_i are dropped first (``zero_tol``, as in
    :func:`rankscope.metrics.schatten_power`; default the ``torch`` preset).

    >>> linear_representation_cost(torch.tensor([4.0, 1.0]), 4)
    tensor(12.)
    """
    depth = _check_depth(depth)
    return depth * schatten_power(s, 2.0 / depth, zero_tol=zero_tol, shape=shape)


@dataclass(frozen=True)
class DepthExpansion:
    """R0 = Rank A, R1 = 2·Σ log s_i = 2·log|A|_+, R2 = 2·Σ (log s_i)², each of shape (...,)."""

    r0: torch.Tensor
    r1: torch.Tensor
    r2: torch.Tensor

    def cost(self, depth: int | float) -> torch.Tensor:
        """The truncated expansion L·R0 + R1 + R2/L (error O(L^{-2}))."""
        depth = _check_depth(depth)
        return depth * self.r0 + self.r1 + self.r2 / depth


def depth_expansion(
    s: torch.Tensor, *, zero_tol: float | None = None, shape: tuple[int, int] | None = None
) -> DepthExpansion:
    """R0, R1, R2 of a linear map over its nonzero singular values (definitions §9).

    "Nonzero" means above ``zero_tol``·s_1 (default: the ``torch`` preset, as
    :func:`linear_representation_cost` uses), so R0 is the ``torch``-preset rank.

    >>> e = depth_expansion(torch.tensor([1.0, 1.0, 0.0]))
    >>> (int(e.r0), float(e.r1), float(e.r2))
    (2, 0.0, 0.0)
    """
    s = drop_small(check_spectrum(s), zero_tol, shape)
    keep = s > 0
    logs = torch.where(keep, torch.log(torch.where(keep, s, 1.0)), 0.0)
    r0 = keep.sum(-1).to(s.dtype)
    return DepthExpansion(r0=r0, r1=2 * logs.sum(-1), r2=2 * (logs**2).sum(-1))
