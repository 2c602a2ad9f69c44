"""Rank notions as functions of a spectrum (definitions §1-§4, §6-§9).

Every function takes singular values ``s`` of shape (..., k), sorted descending (what
:func:`rankscope.metrics.singular_values` returns) and reduces the last dimension, so one SVD
serves every metric and every batch dimension is kept.
"""

from __future__ import annotations

import math

import torch

from rankscope.metrics._validate import check_spectrum

__all__ = [
    "RANK_POLICIES",
    "effective_rank",
    "numerical_rank",
    "rank_threshold",
    "stable_rank",
]

RANK_POLICIES = (
    "torch",
    "numpy",
    "relative",
    "absolute",
    "galanti",
    "mixed_dynamics",
    "accnet",
    "feng",
    "weightwatcher",
    "dlrt",
)


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def rank_threshold(
    s: torch.Tensor,
    policy: str = "torch",
    *,
    shape: tuple[int, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    eps_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The threshold t (shape (...,)) such that the rank counts ``s_i > t``.

    Policies (definitions §1): ``torch``/``numpy`` (rtol = max(m,n)·eps when no atol is
    given, else atol), ``relative`` (rtol·s1, rtol required), ``absolute`` (atol required),
    ``galanti`` (1e-3·‖W‖_F), ``mixed_dynamics`` (s1/5), ``accnet`` (max(0.1, 0.1·s1)),
    ``feng`` (s1·sqrt(n·eps), the rank of JᵀJ), ``weightwatcher`` (s1·max(m,n)·eps).
    ``dlrt`` is not a threshold policy; use :func:`numerical_rank`.
    """
    s = check_spectrum(s)
    if policy not in RANK_POLICIES:
        raise ValueError(f"unknown tolerance policy {policy!r}; expected one of {RANK_POLICIES}")
    eps = _eps(eps_dtype or s.dtype)
    s1 = s[..., 0] if s.shape[-1] else torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)

    def need_shape() -> tuple[int, int]:
        if shape is None:
            raise ValueError(f"policy {policy!r} needs shape=(m, n) of the matrix (uses max(m, n)·eps)")
        return shape

    if policy in ("torch", "numpy"):
        if atol is not None and atol > 0 and rtol is None:
            rt = 0.0
        elif rtol is not None:
            rt = rtol
        else:
            rt = max(need_shape()) * eps
        return torch.clamp(s1 * rt, min=atol or 0.0)
    if policy == "relative":
        if rtol is None:
            raise ValueError("policy 'relative' needs rtol= (e.g. 1e-2: count s_i > 1e-2·s_1)")
        return s1 * rtol
    if policy == "absolute":
        if atol is None:
            raise ValueError("policy 'absolute' needs atol= (count s_i > atol)")
        return torch.full_like(s1, atol)
    if policy == "galanti":
        return torch.linalg.vector_norm(s, dim=-1) * (atol if atol is not None else 1e-3)
    if policy == "mixed_dynamics":
        return s1 / 5
    if policy == "accnet":
        return torch.clamp(s1 * 0.1, min=0.1)
    if policy == "feng":
        n = max(need_shape()) if rtol is None else None
        factor = rtol if rtol is not None else math.sqrt(n * eps)
        return s1 * factor
    if policy == "weightwatcher":
        return s1 * max(need_shape()) * eps
    raise ValueError("policy 'dlrt' has no single threshold; call numerical_rank(s, 'dlrt', rtol=θ)")


def numerical_rank(
    s: torch.Tensor,
    policy: str = "torch",
    *,
    shape: tuple[int, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    eps_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Number of singular values strictly above the policy's threshold (int64, shape (...,)).

    >>> numerical_rank(torch.tensor([1.0, 0.5, 1e-9]), "relative", rtol=1e-3)
    tensor(2)
    """
    s = check_spectrum(s)
    if policy == "dlrt":
        theta = 0.1 if rtol is None else rtol
        sq = s**2
        tail = torch.flip(torch.cumsum(torch.flip(sq, [-1]), -1), [-1])  # tail[r] = Σ_{j>=r} s_j²
        total = sq.sum(-1, keepdim=True)
        keep = tail >= (theta**2) * total  # a position stays while the tail from it is not small
        r = keep.sum(-1)
        return torch.clamp(r, min=min(2, s.shape[-1])).to(torch.int64)
    t = rank_threshold(s, policy, shape=shape, rtol=rtol, atol=atol, eps_dtype=eps_dtype)
    return (s > t.unsqueeze(-1)).sum(-1).to(torch.int64)


def stable_rank(s: torch.Tensor) -> torch.Tensor:
    """‖W‖_F² / ‖W‖_2² = Σ s_i² / s_1², in [1, rank]; 0 for the zero matrix (definitions §2)."""
    s = check_spectrum(s)
    if s.shape[-1] == 0:
        return torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
    s1 = s[..., 0]
    num = (s**2).sum(-1)
    return torch.where(s1 > 0, num / torch.where(s1 > 0, s1**2, 1.0), torch.zeros_like(num))


def effective_rank(s: torch.Tensor, *, zero_tol: float = 0.0) -> torch.Tensor:
    """Roy–Vetterli effective rank exp(H(s/Σs)), no ε (definitions §3); 0 for the zero matrix.

    ``zero_tol`` drops s_i <= zero_tol·s_1 before normalizing (default: exact zeros only).

    >>> effective_rank(torch.tensor([1.0, 1.0, 0.0]))
    tensor(2.)
    """
    s = check_spectrum(s)
    if s.shape[-1] == 0:
        return torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
    keep = s > zero_tol * s[..., :1]
    s = torch.where(keep, s, torch.zeros_like(s))
    total = s.sum(-1, keepdim=True)
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    ent = -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), 0.0).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(ent), torch.zeros_like(ent))
