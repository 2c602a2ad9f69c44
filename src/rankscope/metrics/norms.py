"""Norms and distances as functions of a spectrum (definitions §6-§8).

Every function takes singular values ``s`` of shape (..., k), sorted descending (what
:func:`rankscope.metrics.singular_values` returns), and reduces the last dimension.
"""

from __future__ import annotations

import torch

from rankscope.metrics._validate import check_spectrum
from rankscope.metrics.ranks import drop_small, numerical_rank

__all__ = [
    "distance_to_rank",
    "frobenius_norm",
    "log_pdet",
    "nuclear_norm",
    "operator_norm",
    "schatten_norm",
    "schatten_power",
    "smoothed_schatten_power",
]

_DISTANCE_NORMS = ("fro", "op", "relative")


def _check_p(p: float) -> float:
    if not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0:
        raise ValueError(f"Schatten exponent p must be a number > 0, got {p!r}")
    return float(p)


def nuclear_norm(s: torch.Tensor) -> torch.Tensor:
    """‖W‖_* = Σ s_i (Schatten-1, definitions §6). Shape (...,)."""
    return check_spectrum(s).sum(-1)


def frobenius_norm(s: torch.Tensor) -> torch.Tensor:
    """‖W‖_F = (Σ s_i²)^{1/2} (Schatten-2, definitions §6). Shape (...,)."""
    return torch.linalg.vector_norm(check_spectrum(s), dim=-1)


def operator_norm(s: torch.Tensor) -> torch.Tensor:
    """‖W‖_2 = s_1 (0 for an empty spectrum). Shape (...,)."""
    s = check_spectrum(s)
    if s.shape[-1] == 0:
        return s.new_zeros(s.shape[:-1])
    return s[..., 0]


def schatten_power(
    s: torch.Tensor,
    p: float,
    *,
    zero_tol: float | None = None,
    shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Power form Σ_i s_i^p = ‖W‖_{S_p}^p over the s_i above a tolerance (definitions §6).

    Numerically zero singular values inflate Σ s^p for small p (s = 1e-8, p = 1/2 adds 1e-4),
    so values ``s_i <= zero_tol·s_1`` are dropped first. ``zero_tol=None`` (default) uses the
    ``torch`` preset, max(m, n)·eps(s.dtype), with (m, n) = ``shape`` or k = s.shape[-1];
    ``zero_tol=0`` keeps everything but exact zeros. Dropped entries get zero gradient.

    >>> schatten_power(torch.tensor([4.0, 1.0, 0.0]), 0.5)
    tensor(3.)
    """
    p = _check_p(p)
    s = drop_small(check_spectrum(s), zero_tol, shape)
    keep = s > 0
    return torch.where(keep, torch.where(keep, s, 1.0) ** p, 0.0).sum(-1)


def schatten_norm(
    s: torch.Tensor,
    p: float,
    *,
    zero_tol: float | None = None,
    shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """‖W‖_{S_p} = (Σ_i s_i^p)^{1/p}, a quasi-norm for p < 1 (definitions §6).

    p = 1 is the nuclear norm, p = 2 Frobenius; deep linear nets use p = 2/L. ``zero_tol`` as
    in :func:`schatten_power`.

    >>> schatten_norm(torch.tensor([3.0, 4.0]), 2)
    tensor(5.)
    """
    p = _check_p(p)
    return schatten_power(s, p, zero_tol=zero_tol, shape=shape) ** (1.0 / p)


def smoothed_schatten_power(s: torch.Tensor, p: float, *, delta: float = 1e-3) -> torch.Tensor:
    """Smooth penalty Σ_i (s_i² + δ²)^{p/2}, finite-gradient at s = 0 (definitions §6).

    s^p has an infinite derivative at 0 for p < 1; this form is differentiable everywhere and
    tends to Σ s_i^p as δ -> 0 (each zero s_i contributes δ^p).
    """
    p = _check_p(p)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    s = check_spectrum(s)
    return ((s**2 + delta**2) ** (p / 2)).sum(-1)


def log_pdet(
    s: torch.Tensor,
    policy: str = "torch",
    *,
    shape: tuple[int, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> torch.Tensor:
    """log|A|_+ = Σ_{i≤r} log s_i with r the numerical rank under ``policy`` (definitions §8).

    Returned in log form to avoid overflow/underflow; 0 for the zero matrix (empty product).
    For a square full-rank matrix it equals log|det A|. ``shape`` defaults to (k, k).

    >>> log_pdet(torch.tensor([2.0, 0.5, 0.0]), shape=(3, 3))
    tensor(0.)
    """
    s = check_spectrum(s)
    shape = shape or (s.shape[-1], s.shape[-1])
    r = numerical_rank(s, policy, shape=shape, rtol=rtol, atol=atol)
    idx = torch.arange(s.shape[-1], device=s.device)
    keep = idx < r.unsqueeze(-1)
    return torch.where(keep, torch.log(torch.where(keep, s, 1.0)), 0.0).sum(-1)


def distance_to_rank(s: torch.Tensor, k: int, *, norm: str = "fro") -> torch.Tensor:
    """Distance from W to the matrices of rank ≤ k, by Eckart–Young (definitions §7).

    ``norm='fro'``: (Σ_{i>k} s_i²)^{1/2}; ``'op'``: s_{k+1} (0 if k ≥ min(m, n));
    ``'relative'``: the Frobenius tail over ‖W‖_F (0 for the zero matrix).

    >>> distance_to_rank(torch.tensor([3.0, 4.0, 0.0]).sort(descending=True).values, 1)
    tensor(3.)
    """
    s = check_spectrum(s)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"target rank k must be an int >= 0, got {k!r}")
    if norm not in _DISTANCE_NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {_DISTANCE_NORMS}")
    tail = s[..., k:]
    if norm == "op":
        return tail[..., 0] if tail.shape[-1] else s.new_zeros(s.shape[:-1])
    d = torch.linalg.vector_norm(tail, dim=-1)
    if norm == "fro":
        return d
    total = torch.linalg.vector_norm(s, dim=-1)
    return torch.where(total > 0, d / torch.where(total > 0, total, 1.0), 0.0)
