"""Rank notions as functions of a spectrum (definitions §1-§3, §5).

Every function takes singular values ``s`` of shape (..., k), sorted descending (what
:func:`rankscope.metrics.singular_values` returns) and reduces the last dimension, so one SVD
serves every metric and every batch dimension is kept.
"""

from __future__ import annotations

import difflib
import math
import numbers

import torch

from rankscope.metrics._validate import check_spectrum
from rankscope.metrics.rank_presets import RANK_PRESETS

__all__ = [
    "GENERIC_RANK_POLICIES",
    "RANK_POLICIES",
    "drop_small",
    "effective_rank",
    "numerical_rank",
    "participation_ratio",
    "rank_threshold",
    "resolve_rank_policy",
    "stable_rank",
    "variance_dimension",
]

#: The rules themselves; paper presets (:data:`RANK_PRESETS`) are named settings of these.
GENERIC_RANK_POLICIES = (
    "torch",
    "numpy",
    "relative",
    "absolute",
    "frobenius",
    "gram",
    "tail_energy",
)

#: Every name ``numerical_rank`` accepts: the generic policies, then the paper presets.
RANK_POLICIES = GENERIC_RANK_POLICIES + tuple(RANK_PRESETS)


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


def _s1(s: torch.Tensor) -> torch.Tensor:
    return s[..., 0] if s.shape[-1] else s.new_zeros(s.shape[:-1])


def _need_shape(policy: str, shape: tuple[int, int] | None) -> tuple[int, int]:
    if shape is None:
        raise ValueError(
            f"policy {policy!r} needs shape=(m, n) of the matrix (it uses max(m, n)·eps)"
        )
    ok = isinstance(shape, tuple | list | torch.Size) and len(shape) == 2
    if not ok or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValueError(f"shape must be the matrix shape (m, n) of two ints, got {shape!r}")
    return shape


def _check_tol(name: str, value: float | None) -> float | None:
    """A tolerance must be a finite number >= 0: a negative or NaN one silently gives a wrong
    rank (NaN compares false, so every s_i would be dropped)."""
    if value is None:
        return None
    try:
        ok = not isinstance(value, str | bytes | bool) and math.isfinite(value) and value >= 0
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of many values
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def resolve_rank_policy(
    policy: str, *, rtol: float | None = None, atol: float | None = None, min_rank: int = 0
) -> tuple[str, float | None, float | None, int]:
    """(generic policy, rtol, atol, min_rank) a policy name stands for.

    A generic name comes back unchanged; a paper preset (:data:`RANK_PRESETS`) gives its
    generic policy and tolerances, where a value the caller passes (not ``None``; ``min_rank``
    > 0) replaces the preset's. An unknown name raises, with the closest names.

    >>> resolve_rank_policy("galanti")
    ('frobenius', None, 0.001, 0)
    """
    if policy in GENERIC_RANK_POLICIES:
        return policy, rtol, atol, min_rank
    preset = RANK_PRESETS.get(policy) if isinstance(policy, str) else None
    if preset is None:
        close = difflib.get_close_matches(str(policy), RANK_POLICIES, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown tolerance policy {policy!r}{hint} Generic policies: "
            f"{', '.join(GENERIC_RANK_POLICIES)}; paper presets: {', '.join(RANK_PRESETS)}"
        )
    return (
        preset.policy,
        preset.rtol if rtol is None else rtol,
        preset.atol if atol is None else atol,
        min_rank or preset.min_rank,
    )


def rank_threshold(
    s: torch.Tensor,
    policy: str = "torch",
    *,
    shape: tuple[int, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    eps_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The threshold t (shape (...,)) such that the rank counts ``s_i > t`` (definitions §1).

    Generic policies:

    - ``torch`` (default) / ``numpy``: max(atol, rtol·s_1); rtol defaults to max(m, n)·eps when
      atol is absent or 0, and to 0 when atol > 0. ``numpy`` refuses atol and rtol together,
      and its atol (numpy's ``tol``) is used as given, so atol=0 counts every s_i > 0.
    - ``relative``: rtol·s_1 (rtol required). ``absolute``: atol (required).
    - ``frobenius``: the rank of W/‖W‖_F at absolute tolerance atol, i.e. atol·‖W‖_F
      (atol required).
    - ``gram``: the ``torch`` default on the Gram matrix AᵀA (n×n, n = shape[1]), whose
      eigenvalues are s²: s_1·sqrt(rtol·n·eps), rtol a factor on that default (default 1).
    - ``tail_energy`` has no single threshold; use :func:`numerical_rank`.

    A paper preset (:data:`rankscope.metrics.RANK_PRESETS`: ``galanti``, ``mixed_dynamics``,
    ``accnet``, ``feng``, ``weightwatcher``, ``dlrt``) runs its generic policy with its
    tolerances; see :func:`resolve_rank_policy`. eps is that of ``eps_dtype`` (default
    ``s.dtype``: the dtype the SVD ran in).
    """
    s = check_spectrum(s)
    generic, rtol, atol, _ = resolve_rank_policy(policy, rtol=rtol, atol=atol)
    return _threshold(s, policy, generic, shape=shape, rtol=rtol, atol=atol, eps_dtype=eps_dtype)


def _threshold(
    s: torch.Tensor,
    name: str,
    policy: str,
    *,
    shape: tuple[int, int] | None,
    rtol: float | None,
    atol: float | None,
    eps_dtype: torch.dtype | None,
) -> torch.Tensor:
    """The threshold of generic ``policy`` (``name``: what the caller asked for, for errors)."""
    rtol, atol = _check_tol("rtol", rtol), _check_tol("atol", atol)
    eps = _eps(eps_dtype or s.dtype)
    s1 = _s1(s)
    if policy == "numpy" and atol is not None and rtol is not None:
        raise ValueError("policy 'numpy' takes atol (numpy's tol) or rtol, not both")
    if policy in ("torch", "numpy"):
        # numpy's tol is absolute whenever given (tol=0 counts every s_i > 0); torch falls back
        # to its default rtol when atol is absent or 0
        given = atol is not None and (atol > 0 or policy == "numpy")
        if rtol is None:
            rtol = 0.0 if given else max(_need_shape(name, shape)) * eps
        return torch.clamp(s1 * rtol, min=atol or 0.0)
    if policy == "relative":
        if rtol is None:
            raise ValueError("policy 'relative' needs rtol= (e.g. 1e-2: count s_i > 1e-2·s_1)")
        return s1 * rtol
    if policy == "absolute":
        if atol is None:
            raise ValueError("policy 'absolute' needs atol= (count s_i > atol)")
        return torch.full_like(s1, atol)
    if policy == "frobenius":
        if atol is None:
            raise ValueError("policy 'frobenius' needs atol= (count s_i > atol·‖W‖_F)")
        return torch.linalg.vector_norm(s, dim=-1) * atol
    if policy == "gram":
        soft = 1.0 if rtol is None else rtol
        return s1 * math.sqrt(soft * _need_shape(name, shape)[1] * eps)
    raise ValueError(
        f"policy {name!r} ({policy}) has no single threshold; "
        f"call numerical_rank(s, {name!r}, rtol=θ)"
    )


def _tail_energy_rank(s: torch.Tensor, theta: float) -> torch.Tensor:
    sq = s**2
    tail = torch.flip(torch.cumsum(torch.flip(sq, [-1]), -1), [-1])  # tail[r] = Σ_{j>=r} s_j²
    total = sq.sum(-1, keepdim=True)
    r = (tail >= (theta**2) * total).sum(-1)  # smallest r whose dropped tail is < θ‖s‖
    return torch.where(total.squeeze(-1) > 0, r, 0).to(torch.int64)


def numerical_rank(
    s: torch.Tensor,
    policy: str = "torch",
    *,
    shape: tuple[int, int] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    eps_dtype: torch.dtype | None = None,
    min_rank: int = 0,
) -> torch.Tensor:
    """Number of singular values strictly above the policy's threshold (int64, shape (...,)).

    See :func:`rank_threshold` for the policies and presets. ``tail_energy`` keeps the smallest
    r whose dropped tail (Σ_{j>r} s_j²)^{1/2} is < θ·‖s‖_2, θ = ``rtol`` (required).
    ``min_rank`` raises the rank of a non-zero matrix to at least min(min_rank, k) (the
    ``dlrt`` preset keeps 2); the zero matrix has rank 0 under every policy.

    >>> numerical_rank(torch.tensor([1.0, 0.5, 1e-9]), "relative", rtol=1e-3)
    tensor(2)
    """
    s = check_spectrum(s)
    if isinstance(min_rank, bool) or not isinstance(min_rank, numbers.Integral) or min_rank < 0:
        raise ValueError(f"min_rank must be an int >= 0, got {min_rank!r}")
    name = policy
    policy, rtol, atol, min_rank = resolve_rank_policy(
        policy, rtol=rtol, atol=atol, min_rank=int(min_rank)
    )
    if policy == "tail_energy":
        if rtol is None:
            raise ValueError(f"policy {name!r} needs rtol= (θ: keep the tail below θ·‖s‖)")
        r = _tail_energy_rank(s, _check_tol("rtol (θ)", rtol))
    else:
        t = _threshold(s, name, policy, shape=shape, rtol=rtol, atol=atol, eps_dtype=eps_dtype)
        r = (s > t.unsqueeze(-1)).sum(-1).to(torch.int64)
    if min_rank:
        r = torch.where(_s1(s) > 0, torch.clamp(r, min=min(min_rank, s.shape[-1])), r)
    return r


def drop_small(
    s: torch.Tensor, zero_tol: float | None = None, shape: tuple[int, int] | None = None
) -> torch.Tensor:
    """``s`` with the entries ``s_i <= zero_tol·s_1`` set to 0 (exact zeros stay zero).

    ``zero_tol=None`` is the ``torch`` preset: max(m, n)·eps(s.dtype), with (m, n) = ``shape``
    or (k, k) for a spectrum of length k.
    """
    s = check_spectrum(s)
    if zero_tol is None:
        zero_tol = max(shape or (s.shape[-1], 1)) * _eps(s.dtype)
    zero_tol = _check_tol("zero_tol", zero_tol)
    keep = s > zero_tol * _s1(s).unsqueeze(-1)
    return torch.where(keep, s, torch.zeros_like(s))


def stable_rank(s: torch.Tensor) -> torch.Tensor:
    """‖W‖_F² / ‖W‖_2² = Σ s_i² / s_1², in [1, rank]; 0 for the zero matrix (definitions §2).

    >>> stable_rank(torch.tensor([2.0, 2.0, 0.0]))
    tensor(2.)
    """
    s = check_spectrum(s)
    s1 = _s1(s)
    safe = torch.where(s1 > 0, s1, 1.0).unsqueeze(-1)
    return torch.where(s1 > 0, ((s / safe) ** 2).sum(-1), 0.0)


def participation_ratio(s: torch.Tensor) -> torch.Tensor:
    """(Σ s_i²)² / Σ s_i⁴ = (Σλ)²/Σλ² for λ = s², in [1, rank]; 0 for the zero matrix.

    Computed on s/s_1, so float32 inputs neither overflow nor underflow.

    >>> participation_ratio(torch.tensor([1.0, 1.0, 1.0, 0.0]))
    tensor(3.)
    """
    s = check_spectrum(s)
    s1 = _s1(s)
    lam = (s / torch.where(s1 > 0, s1, 1.0).unsqueeze(-1)) ** 2
    return torch.where(s1 > 0, lam.sum(-1) ** 2 / lam.pow(2).sum(-1).clamp_min(1e-300), 0.0)


def effective_rank(s: torch.Tensor, *, zero_tol: float = 0.0) -> torch.Tensor:
    """Roy–Vetterli effective rank exp(H(s/Σs)), no ε (definitions §3); 0 for the zero matrix.

    ``zero_tol`` drops s_i <= zero_tol·s_1 before normalizing (default: exact zeros only).

    >>> effective_rank(torch.tensor([1.0, 1.0, 0.0]))
    tensor(2.)
    """
    s = drop_small(s, zero_tol)
    total = s.sum(-1, keepdim=True)
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    ent = -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), 0.0).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(ent), torch.zeros_like(ent))


def variance_dimension(
    s: torch.Tensor, threshold: float = 0.99, *, delve_quirk: bool = False
) -> torch.Tensor:
    """Smallest k with Σ_{i≤k} s_i² / Σ_i s_i² ≥ threshold (delve ``idim``, definitions §5).

    ``s`` are singular values of the centred data; the eigenvalues λ_i = s_i²/N of the
    covariance give the same fractions. ``delve_quirk=True`` reproduces delve: it counts the
    directions strictly below the threshold and adds one only when that count is 0 or the
    cumulative fraction stops more than 0.02 short. Int64, shape (...,); 0 for zero input.
    Saturation is this value divided by the layer width.

    >>> variance_dimension(torch.tensor([3.0, 2.0, 1.0, 0.01]), 0.9)
    tensor(2)
    """
    s = check_spectrum(s)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    sq = s.to(torch.float64) ** 2
    total = sq.sum(-1, keepdim=True)
    frac = sq.cumsum(-1) / torch.where(total > 0, total, 1.0)
    below = (frac < threshold).sum(-1)
    nonzero = (s > 0).sum(-1)
    if delve_quirk:
        last = torch.gather(frac, -1, (below - 1).clamp_min(0).unsqueeze(-1)).squeeze(-1)
        k = torch.where((below == 0) | (threshold - last > 0.02), below + 1, below)
    else:
        k = below + 1
    k = torch.minimum(k, nonzero)
    return torch.where(total.squeeze(-1) > 0, k, 0).to(torch.int64)
