"""Tensor notions of rank: matricizations, CP decompositions, separation rank, interaction.

Definitions §15 (CP), §16 (matricization), §17 (separation rank). Functions take dense tensors
(any order) and keep the input's device; randomized estimators take ``generator=``. A dense
tensor is only ever built through :func:`check_dense_size`, which refuses orders whose size
would exhaust memory before allocating anything.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from rankscope.metrics.ranks import effective_rank, numerical_rank
from rankscope.metrics.spectra import singular_values

__all__ = [
    "DENSE_MAX_ENTRIES",
    "CPFit",
    "CPRankEstimate",
    "SeparationGrid",
    "check_dense_size",
    "cp_als",
    "cp_component_norms",
    "cp_rank_estimate",
    "cp_to_tensor",
    "igc_penalty",
    "interaction_gradient_cosine",
    "learned_cp_rank",
    "matricization_effective_rank",
    "matricization_rank",
    "matricize",
    "separation_rank_lower_bound",
]

DENSE_MAX_ENTRIES = 1 << 26  # 67M entries: 512 MiB in float64


def check_dense_size(shape: Sequence[int], max_entries: int = DENSE_MAX_ENTRIES) -> int:
    """Number of entries of a dense tensor of ``shape``; raises before allocating if too large.

    >>> check_dense_size([2] * 64)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: a dense tensor of order 64 with dims (2, 2, 2, ...) has 2^64.0 entries, ...
    """
    dims = [int(d) for d in shape]
    total = math.prod(dims)
    if total > max_entries:
        shown = ", ".join(str(d) for d in dims[:3]) + (", ..." if len(dims) > 3 else "")
        raise ValueError(
            f"a dense tensor of order {len(dims)} with dims ({shown}) has "
            f"2^{math.log2(total):.1f} entries, over the limit of 2^{math.log2(max_entries):.1f} "
            "(max_entries); use index-wise evaluation instead"
        )
    return total


def _check_modes(order: int, modes: Sequence[int]) -> list[int]:
    rows = sorted({int(m) for m in modes})
    if len(rows) != len(list(modes)) or any(m < 0 or m >= order for m in rows):
        raise ValueError(f"row modes {list(modes)} must be distinct ints in [0, {order - 1}]")
    return rows


def matricize(tensor: torch.Tensor, row_modes: Sequence[int]) -> torch.Tensor:
    """[[𝒲]]_I: permute to (I sorted, Iᶜ sorted) and reshape in C order (definitions §16).

    Shape (Π_{n∈I} d_n, Π_{n∉I} d_n); an empty I or Iᶜ gives a single row or column.
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    rows = _check_modes(tensor.ndim, row_modes)
    cols = [m for m in range(tensor.ndim) if m not in rows]
    n_rows = math.prod(tensor.shape[m] for m in rows)
    return tensor.permute(*rows, *cols).reshape(n_rows, -1)


def matricization_rank(
    tensor: torch.Tensor, row_modes: Sequence[int], *, policy: str = "torch", **tol
) -> int:
    """rank [[𝒲]]_I under a numerical-rank policy of definitions §1 (float64 SVD)."""
    m = matricize(tensor, row_modes)
    return int(numerical_rank(singular_values(m), policy, shape=tuple(m.shape), **tol))


def matricization_effective_rank(tensor: torch.Tensor, row_modes: Sequence[int]) -> float:
    """erank([[𝒲]]_I), the continuous hierarchical-rank proxy (definitions §3, §16)."""
    return float(effective_rank(singular_values(matricize(tensor, row_modes))))


def _letters(order: int) -> str:
    if order > 25:
        raise ValueError(f"einsum path supports order <= 25, got {order}")
    return string.ascii_letters[:order]


def cp_to_tensor(factors: Sequence[torch.Tensor], *, max_entries: int = DENSE_MAX_ENTRIES):
    """Σ_r w_r^1 ⊗ … ⊗ w_r^N from factors of shape (d_n, R) (definitions §15)."""
    shape = [f.shape[0] for f in factors]
    ranks = {f.shape[1] for f in factors}
    if len(ranks) != 1 or any(f.ndim != 2 for f in factors):
        raise ValueError(
            f"factors must be (d_n, R) with one R, got {[tuple(f.shape) for f in factors]}"
        )
    check_dense_size(shape, max_entries)
    idx = _letters(len(factors))
    return torch.einsum(",".join(c + "z" for c in idx) + "->" + idx, *factors)


def cp_component_norms(factors: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖𝒲_r‖ = Π_n ‖w_r^n‖ (R,), summed in the log domain so long products do not overflow."""
    logs = sum(torch.log(torch.linalg.vector_norm(f, dim=0)) for f in factors)
    return torch.exp(logs)


def learned_cp_rank(norms: torch.Tensor, rtol: float = 1e-2) -> int:
    """#{r : ‖𝒲_r‖ > rtol · max_r ‖𝒲_r‖}, the tensor specs' "learned rank" (definitions §15)."""
    if norms.numel() == 0 or float(norms.max()) == 0.0:
        return 0
    return int((norms > rtol * norms.max()).sum())


@dataclass(frozen=True)
class CPFit:
    """One CP-ALS run: factors (d_n, R), final reconstruction MSE, iterations used."""

    factors: list[torch.Tensor]
    mse: float
    iterations: int


def _mttkrp(tensor: torch.Tensor, factors: list[torch.Tensor], mode: int) -> torch.Tensor:
    idx = _letters(tensor.ndim)
    ops = [f for n, f in enumerate(factors) if n != mode]
    spec = idx + "," + ",".join(c + "z" for n, c in enumerate(idx) if n != mode)
    return torch.einsum(spec + "->" + idx[mode] + "z", tensor, *ops)


def cp_als(
    tensor: torch.Tensor,
    rank: int,
    *,
    max_iter: int = 1000,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
) -> CPFit:
    """CP-ALS in float64 from a standard-normal init; stops once MSE < ``tol`` or it stalls.

    Each sweep solves A_n = T_(n)(⊙_{m≠n} A_m)(∗_{m≠n} A_mᵀA_m)⁺ for every mode n.
    """
    t = tensor.detach().to(torch.float64)
    if t.ndim < 2:
        raise ValueError(f"CP-ALS needs a tensor of order >= 2, got shape {tuple(t.shape)}")
    cpu = [torch.randn(d, rank, generator=generator, dtype=torch.float64) for d in t.shape]
    factors = [f.to(t.device) for f in cpu]
    mse, prev, it = math.inf, math.inf, 0
    while it < max_iter:
        it += 1
        for n in range(t.ndim):
            gram = torch.ones(rank, rank, dtype=t.dtype, device=t.device)
            for m, f in enumerate(factors):
                if m != n:
                    gram = gram * (f.T @ f)
            factors[n] = _mttkrp(t, factors, n) @ torch.linalg.pinv(gram, hermitian=True)
        mse = float(((cp_to_tensor(factors) - t) ** 2).mean())
        if mse < tol or (math.isfinite(prev) and abs(prev - mse) <= 1e-12 * prev):
            break
        prev = mse
    return CPFit(factors=factors, mse=mse, iterations=it)


@dataclass(frozen=True)
class CPRankEstimate:
    """The smallest successful rank and every trial (definitions §15).

    ``errors``: best MSE per tried rank. ``trials``: (rank, restart, mse, iterations) per ALS
    run. ``failures``: tried ranks where no restart reached ``tol``. ``exhausted``: True when
    even the maximal rank failed (the estimate is then that rank, unverified).
    """

    rank: int
    errors: dict[int, float]
    trials: list[tuple[int, int, float, int]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    exhausted: bool = False


def cp_rank_estimate(
    tensor: torch.Tensor,
    *,
    tol: float = 1e-6,
    n_restarts: int = 3,
    max_iter: int = 1000,
    max_rank: int | None = None,
    generator: torch.Generator | None = None,
) -> CPRankEstimate:
    """Smallest r whose CP-ALS reaches MSE < ``tol`` in one of ``n_restarts`` runs.

    Binary search over r ∈ [1, Π d_n / max d_n] (``find_cp_rank`` in
    ``noamrazin/imp_reg_dl_not_norms``); assumes success is monotone in r. A tensor with
    mean square < ``tol`` has estimate 0.
    """
    t = tensor.detach().to(torch.float64)
    hi = max_rank or math.prod(t.shape) // max(t.shape)
    if n_restarts < 1 or hi < 1:
        raise ValueError(f"need n_restarts >= 1 and max_rank >= 1, got {n_restarts}, {hi}")
    if float((t**2).mean()) < tol:
        return CPRankEstimate(rank=0, errors={0: float((t**2).mean())})
    errors: dict[int, float] = {}
    trials: list[tuple[int, int, float, int]] = []

    def success(r: int) -> bool:
        for k in range(n_restarts):
            fit = cp_als(t, r, max_iter=max_iter, tol=tol, generator=generator)
            trials.append((r, k, fit.mse, fit.iterations))
            errors[r] = min(errors.get(r, math.inf), fit.mse)
            if fit.mse < tol:
                return True
        return False

    lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if success(mid):
            hi = mid
        else:
            lo = mid + 1
    if lo not in errors:  # only the maximal rank can be reached untested
        success(lo)
    exhausted = errors[lo] >= tol
    failures = sorted(r for r, e in errors.items() if e >= tol)
    return CPRankEstimate(lo, dict(sorted(errors.items())), trials, failures, exhausted)


@dataclass(frozen=True)
class SeparationGrid:
    """rank(G) of the template grid G_pq = f(a_p, b_q) and G's singular values (§17)."""

    rank: int
    singular_values: torch.Tensor


def separation_rank_lower_bound(
    f: Callable[[torch.Tensor], torch.Tensor],
    subset: Sequence[int],
    templates_in: torch.Tensor,
    templates_out: torch.Tensor,
    *,
    rtol: float = 1e-10,
) -> SeparationGrid:
    """rank(G) ≤ sep(f; I) with G_pq = f(x_I = a_p, x_Iᶜ = b_q) (definitions §17).

    Variables sit on dim 1 of f's input: ``templates_in`` is (P, |I|, ...) and
    ``templates_out`` is (Q, |Iᶜ|, ...); f maps (B, |I| + |Iᶜ|, ...) to (B,). The rank counts
    singular values above ``rtol``·s_1 in float64. Saturates for deep or dense models (§17).
    """
    p, q = templates_in.shape[0], templates_out.shape[0]
    n_in, n_out = templates_in.shape[1], templates_out.shape[1]
    inside = _check_modes(n_in + n_out, subset)
    if len(inside) != n_in:
        raise ValueError(f"subset has {len(inside)} variables but templates_in has {n_in}")
    outside = [i for i in range(n_in + n_out) if i not in inside]
    x = templates_in.new_zeros((p, q, n_in + n_out, *templates_in.shape[2:]))
    x[:, :, inside] = templates_in[:, None]
    x[:, :, outside] = templates_out[None, :]
    with torch.no_grad():
        g = f(x.reshape(p * q, *x.shape[2:])).reshape(p, q)
    s = singular_values(g)
    return SeparationGrid(int(numerical_rank(s, "relative", rtol=rtol)), s)


def interaction_gradient_cosine(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    patch_i: torch.Tensor,
    patch_j: torch.Tensor,
    *,
    eps: float = 1e-12,
    create_graph: bool = False,
) -> torch.Tensor:
    """R_IGC = mean_b |cos(∇_{x_I} f(x_b), ∇_{x_I} f(x̃_b))| (``InputGradChangeRegularization``).

    x̃_b is x_b with patch J replaced by patch J of the next example (x_{b+1}, the last taking
    the first's). ``f`` maps (B, ...) to (B,) per example (e.g. the true-class logit; x and x̃
    go through f as one batch of 2B, so f must not mix examples); ``patch_i`` and
    ``patch_j`` are boolean masks broadcastable to x.shape[1:]. R = 1 when f is separable in
    (I, J) (additively or with separation rank 1); ε is added to each gradient norm.
    """
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(
            f"x must be a batch (B >= 2, ...) for the roll-by-one pairing, got {tuple(x.shape)}"
        )
    mask_i = torch.broadcast_to(patch_i.to(torch.bool), x.shape[1:])
    mask_j = torch.broadcast_to(patch_j.to(torch.bool), x.shape[1:])
    if bool((mask_i & mask_j).any()):
        raise ValueError("patch_i and patch_j overlap; they must be disjoint patches")
    base = x.detach()
    shuffled = torch.where(mask_j, torch.roll(base, shifts=-1, dims=0), base)
    both = torch.cat([base, shuffled]).requires_grad_(True)  # one pass for x and x̃ (2B, ...)
    (g,) = torch.autograd.grad(f(both).reshape(-1).sum(), both, create_graph=create_graph)
    a, b = g[: len(base)][:, mask_i], g[len(base) :][:, mask_i]  # (B, |I|) each
    cos = (a * b).sum(1) / ((a.norm(dim=1) + eps) * (b.norm(dim=1) + eps))
    return cos.abs().mean()


def igc_penalty(f, x, patch_i, patch_j, *, eps: float = 1e-12) -> torch.Tensor:
    """R_IGC as a differentiable penalty (double backpropagation, ``create_graph=True``)."""
    return interaction_gradient_cosine(f, x, patch_i, patch_j, eps=eps, create_graph=True)
