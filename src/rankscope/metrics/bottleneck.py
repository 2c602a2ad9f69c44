"""Bottleneck-structure metrics of deep L2-regularized networks (definitions §8-13).

Layouts follow PyTorch (definitions §0): a representation arrives as (..., N, w), one row per
sample, i.e. Aᵀ of the column formulas. σ̃(A) is the ReLU of A with a column of ones appended
(the bias row of the papers, ``bias_row=True``).

- :func:`kernel_norm_sq`: ‖M‖²_{K_A} = Tr[M (K + γI)⁻¹ Mᵀ], K = σ̃(A)ᵀσ̃(A) (stable form, §12);
  :func:`rankscope.metrics.cost_of_identity` is the case M = A.
- :func:`hamiltonian` H(A, B) and :func:`hamiltonian_terms` (kinetic, potential) (§13).
- :func:`min_norm_weights` / :func:`min_norm_cost` / :func:`activation_form`: the activation
  form of the L2 loss, C(Z_L) + λΣ_ℓ Tr[Z_ℓ (K^σ_{ℓ−1})⁺ Z_ℓᵀ] (2205.15809), with the
  pseudo-inverse cutoff an explicit relative ``rcond`` (default 1e-10, float64).
- :func:`middle_layers`, :func:`count_above`, :func:`weight_count_rank`, :func:`tail_energy`:
  bottleneck-rank proxies (§11); :func:`near_unit_count` (singular values near 1).
- :func:`jacobian_log_pdet`: log|Jf(x)|_+ per input (§8, §10), for the R⁽¹⁾ bound.
- :func:`fit_line`: least-squares slope of ‖θ‖² against L with standard errors (§11 (c)).
- :func:`nearest_distance`, :func:`negative_mass`: denoising distances and non-negativity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rankscope.metrics._validate import check_matrix
from rankscope.metrics.jacobians import jacobians
from rankscope.metrics.norms import log_pdet
from rankscope.metrics.spectra import singular_values

__all__ = [
    "LineFit",
    "activation_form",
    "count_above",
    "features",
    "fit_line",
    "hamiltonian",
    "hamiltonian_terms",
    "jacobian_log_pdet",
    "kernel_norm_sq",
    "middle_layers",
    "min_norm_cost",
    "min_norm_weights",
    "near_unit_count",
    "nearest_distance",
    "negative_mass",
    "tail_energy",
    "weight_count_rank",
]


def features(z: torch.Tensor, *, activation: bool = True, bias: bool = True) -> torch.Tensor:
    """σ̃(Z) in row layout (..., N, n[+1]): the ReLU of ``z`` (or ``z`` itself when
    ``activation=False``, the input layer) with a column of ones when ``bias``."""
    f = torch.relu(z) if activation else z
    if bias:
        f = torch.cat([f, torch.ones_like(z[..., :1])], dim=-1)
    return f


def _same_samples(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape[:-1] != b.shape[:-1]:
        raise ValueError(
            f"{names} must share their leading and sample dims (..., N, ·), got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def kernel_norm_sq(
    m: torch.Tensor,
    a: torch.Tensor,
    *,
    gamma0: float = 1e-3,
    bias_row: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """‖M‖²_{K_A,γ} = Tr[M (K + γI_N)⁻¹ Mᵀ], K = σ̃(A)ᵀσ̃(A), γ = γ0·‖σ̃(A)‖²_op. Shape (...,).

    ``m`` (..., N, k) and ``a`` (..., N, w) in row layout. A Cholesky solve of the N×N
    matrix K + γI, never a pseudo-inverse (definitions §12). With M = A this is the stable
    Cost of Identity. γ0 = 0 is refused (K is singular whenever N > w + 1).
    """
    m = check_matrix(m, name="m").to(dtype)
    a = check_matrix(a, name="representation a").to(dtype)
    _same_samples(m, a, "m and a")
    if not gamma0 > 0:
        raise ValueError(f"gamma0 must be > 0 (the stable form needs γ > 0), got {gamma0!r}")
    f = features(a, bias=bias_row)
    k = f @ f.mT  # (..., N, N)
    op2 = torch.linalg.eigvalsh(k)[..., -1]
    gamma = (gamma0 * op2).clamp_min(torch.finfo(dtype).tiny)[..., None, None]
    eye = torch.eye(k.shape[-1], dtype=dtype, device=k.device)
    chol = torch.linalg.cholesky(k + gamma * eye)
    y = torch.linalg.solve_triangular(chol, m, upper=False)
    return (y**2).sum((-2, -1))


def hamiltonian(
    a: torch.Tensor, b: torch.Tensor, leak: float, *, bias_row: bool = True
) -> torch.Tensor:
    """H(A, B) = (L̃/2)·‖B σ̃(A)ᵀ‖_F² − L̃·Tr[B Aᵀ] (definitions §13). Shape (...,).

    ``a`` and ``b`` (..., N, w) in row layout (B is the backward variable
    −(1/λ)·∂C/∂A); ``leak`` is the effective depth L̃. In row layout B σ̃(A)ᵀ is bᵀσ̃(a).

    >>> a = torch.tensor([[1.0], [-1.0]]); b = torch.tensor([[1.0], [0.0]])
    >>> float(hamiltonian(a, b, 2.0, bias_row=False))  # (2/2)·1² − 2·1
    -1.0
    """
    a = check_matrix(a, name="representation a").to(torch.float64)
    b = check_matrix(b, name="backward variable b").to(torch.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if not (isinstance(leak, int | float) and leak > 0 and math.isfinite(leak)):
        raise ValueError(f"leak L̃ must be a finite number > 0, got {leak!r}")
    bs = b.mT @ features(a, bias=bias_row)  # (..., w, w+1)
    return 0.5 * leak * (bs**2).sum((-2, -1)) - leak * (b * a).sum((-2, -1))


def hamiltonian_terms(
    a: torch.Tensor,
    da: torch.Tensor,
    leak: float,
    *,
    gamma0: float = 1e-3,
    bias_row: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(kinetic, potential) = ((1/(2L̃))‖∂_pA‖²_K, −(L̃/2)·COI(A)) in the stable γ form.

    Their sum is the Hamiltonian H_γ of definitions §13 when Im Aᵀ ⊂ Im σ̃(A)ᵀ. ``da`` is the
    derivative ∂_pA (for a discrete net, (A_ℓ − A_{ℓ−1})/ρ_ℓ), in the layout of ``a``.
    """
    kin = kernel_norm_sq(da, a, gamma0=gamma0, bias_row=bias_row) / (2 * leak)
    pot = -0.5 * leak * kernel_norm_sq(a, a, gamma0=gamma0, bias_row=bias_row)
    return kin, pot


def _check_rcond(rcond: float) -> float:
    if not (isinstance(rcond, int | float) and 0 < rcond < 1):
        raise ValueError(f"rcond must be a relative cutoff in (0, 1), got {rcond!r}")
    return float(rcond)


def min_norm_weights(
    z: torch.Tensor,
    prev: torch.Tensor,
    *,
    activation: bool = True,
    bias: bool = True,
    rcond: float = 1e-10,
) -> torch.Tensor:
    """W = Z σ̃(Z_prev)⁺: the least-norm weights (n, n_prev[+1]) with W σ̃(Z_prev) = Z.

    ``z`` (N, n) are the layer's pre-activations, ``prev`` (N, n_prev) the previous layer's
    pre-activations (``activation=True``) or the inputs X (``activation=False``). The last
    column is the bias when ``bias``. Pseudo-inverse in float64 with relative cutoff ``rcond``
    (singular values below rcond·s_1 are dropped; 2205.15809 pitfall, recorded by callers).
    """
    z = check_matrix(z, name="z").to(torch.float64)
    prev = check_matrix(prev, name="prev").to(torch.float64)
    _same_samples(z, prev, "z and prev")
    f = features(prev, activation=activation, bias=bias)  # (N, p)
    return (torch.linalg.pinv(f, rtol=_check_rcond(rcond)) @ z).mT


def min_norm_cost(
    z: torch.Tensor,
    prev: torch.Tensor,
    *,
    activation: bool = True,
    bias: bool = True,
    rcond: float = 1e-10,
) -> torch.Tensor:
    """Tr[Z (K^σ_prev)⁺ Zᵀ] = ‖Z σ̃(Z_prev)⁺‖_F²: the min-norm cost of one layer. Shape ()."""
    w = min_norm_weights(z, prev, activation=activation, bias=bias, rcond=rcond)
    return (w**2).sum()


def activation_form(
    inputs: torch.Tensor,
    zs: Sequence[torch.Tensor],
    data_cost: float | torch.Tensor,
    lam: float,
    *,
    bias: bool = True,
    rcond: float = 1e-10,
) -> torch.Tensor:
    """C(Z_L) + λ·Σ_ℓ Tr[Z_ℓ (K^σ_{ℓ−1})⁺ Z_ℓᵀ] (2205.15809; Z_0 = X enters without σ).

    ``inputs`` X (N, d); ``zs`` = [Z_1, …, Z_L] pre-activations (N, n_ℓ) (Z_L the outputs);
    ``data_cost`` = C(Z_L), computed by the caller with its own loss. At a critical point
    of C + λ‖θ‖² (biases counted in ‖θ‖² when ``bias``) this equals the loss; elsewhere it
    is a lower bound.
    """
    if not zs:
        raise ValueError("zs must hold at least one layer's pre-activations")
    total = torch.as_tensor(data_cost, dtype=torch.float64).clone()
    prev, act = inputs, False
    for z in zs:
        total = total + lam * min_norm_cost(z, prev, activation=act, bias=bias, rcond=rcond)
        prev, act = z, True
    return total


def middle_layers(depth: int, lo: float = 0.25, hi: float = 0.75) -> list[int]:
    """Middle layers ℓ ∈ [⌈lo·L⌉, ⌊hi·L⌋] (1-based; definitions §11), never empty for L ≥ 1.

    >>> middle_layers(8), middle_layers(3)
    ([2, 3, 4, 5, 6], [1, 2])
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"need 0 <= lo <= hi <= 1, got lo={lo!r}, hi={hi!r}")
    first, last = max(1, math.ceil(lo * depth)), max(1, math.floor(hi * depth))
    return list(range(first, max(first, last) + 1))


def count_above(s: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """#{i : s_i > τ·s_1} per spectrum (proxy (a) of definitions §11 for one layer)."""
    s = torch.as_tensor(s)
    if s.ndim < 1 or s.shape[-1] == 0:
        raise ValueError(f"spectrum must have shape (..., k) with k >= 1, got {tuple(s.shape)}")
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie in (0, 1), got {tau!r}")
    return (s > tau * s.amax(-1, keepdim=True)).sum(-1)


def weight_count_rank(spectra: Sequence[torch.Tensor], tau: float = 0.1, **middle) -> float:
    """Median over the middle layers of #{i : s_i(W_ℓ) > τ·s_1(W_ℓ)} (definitions §11 (a)).

    ``spectra[ℓ−1]`` is the spectrum of W_ℓ; ``middle`` goes to :func:`middle_layers`.
    """
    layers = middle_layers(len(spectra), **middle)
    counts = [float(count_above(spectra[l - 1], tau)) for l in layers]
    return float(np.median(counts))


def near_unit_count(s: torch.Tensor, tol: float = 0.5) -> torch.Tensor:
    """#{i : |s_i − 1| <= tol} per spectrum: the singular values "close to 1" of the
    bottleneck theorem (2305.19008: R⁽⁰⁾ values near 1, the rest O(L^{−1/2}) at balance).

    >>> int(near_unit_count(torch.tensor([1.1, 0.8, 0.05])))
    2
    """
    s = torch.as_tensor(s)
    if s.ndim < 1:
        raise ValueError(f"spectrum must have shape (..., k), got {tuple(s.shape)}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    return ((s - 1).abs() <= tol).sum(-1)


def tail_energy(s: torch.Tensor, k: int) -> torch.Tensor:
    """Σ_{i>k} s_i² (the squared Frobenius distance to rank k, definitions §7)."""
    s = torch.as_tensor(s)
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be an int >= 0, got {k!r}")
    return (torch.sort(s, dim=-1, descending=True).values[..., k:] ** 2).sum(-1)


def jacobian_log_pdet(
    f: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rank: int | None = None,
    *,
    policy: str = "torch",
    chunk_size: int = 128,
) -> torch.Tensor:
    """log|Jf(x_b)|_+ for every input row (B,) (definitions §8, §10), float64 spectra.

    With ``rank=k`` the product runs over the top k singular values (the R⁽⁰⁾ = k bound
    2 log|Jf(x)|_+ ≤ R⁽¹⁾ of 2305.19008 fixes k); otherwise over the numerical rank under
    ``policy``. Jacobians come from :func:`rankscope.metrics.jacobians` (chunked).
    """
    jac = jacobians(f, x, chunk_size=chunk_size).to(torch.float64)
    s = singular_values(jac)
    if rank is None:
        return log_pdet(s, policy, shape=tuple(jac.shape[-2:]))
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= s.shape[-1]:
        raise ValueError(f"rank must be an int in [1, {s.shape[-1]}], got {rank!r}")
    return torch.log(s[..., :rank]).sum(-1)


@dataclass(frozen=True)
class LineFit:
    """Least-squares y ≈ slope·x + intercept with standard errors (OLS, σ̂² = RSS/(n − 2))."""

    slope: float
    intercept: float
    slope_stderr: float
    intercept_stderr: float
    r2: float


def fit_line(x: Sequence[float], y: Sequence[float]) -> LineFit:
    """Fit ‖θ‖² ≈ a·L + b over depths (definitions §11 (c)); a ≈ R⁽⁰⁾. Needs ≥ 2 points
    (standard errors are NaN with exactly 2).

    >>> fit = fit_line([1, 2, 3], [2.0, 4.0, 6.0]); (fit.slope, fit.intercept, fit.slope_stderr)
    (2.0, 0.0, 0.0)
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape or xa.size < 2:
        raise ValueError(f"x and y must be 1-D of equal length >= 2, got {xa.shape}, {ya.shape}")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("x and y must be finite")
    xm = xa.mean()
    sxx = float(((xa - xm) ** 2).sum())
    if sxx == 0:
        raise ValueError(f"x must take at least two distinct values, got {xa.tolist()}")
    slope = float(((xa - xm) * (ya - ya.mean())).sum() / sxx)
    intercept = float(ya.mean() - slope * xm)
    resid = ya - (slope * xa + intercept)
    n = xa.size
    rss = float((resid**2).sum())
    tss = float(((ya - ya.mean()) ** 2).sum())
    if n > 2:
        s2 = rss / (n - 2)
        se_slope = math.sqrt(s2 / sxx)
        se_int = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
    else:
        se_slope = se_int = math.nan
    r2 = 1.0 - rss / tss if tss > 0 else 1.0
    return LineFit(slope, intercept, se_slope, se_int, r2)


def nearest_distance(points: torch.Tensor, reference: torch.Tensor, *, chunk: int = 1024):
    """min_j ‖p_i − r_j‖ for every row of ``points`` (n, d) against ``reference`` (m, d)."""
    points = check_matrix(points, name="points").to(torch.float64)
    reference = check_matrix(reference, name="reference").to(torch.float64)
    if points.ndim != 2 or reference.ndim != 2 or points.shape[1] != reference.shape[1]:
        raise ValueError(
            f"points (n, d) and reference (m, d) must share d, got {tuple(points.shape)} "
            f"and {tuple(reference.shape)}"
        )
    if reference.shape[0] == 0:
        raise ValueError("reference must hold at least one point")
    out = [
        torch.cdist(points[i : i + chunk], reference).amin(1)
        for i in range(0, points.shape[0], chunk)
    ]
    return torch.cat(out) if out else points.new_zeros(0)


def negative_mass(a: torch.Tensor) -> torch.Tensor:
    """Σ|min(a, 0)| / Σ|a| over the last two dims: the share of absolute mass that is
    negative (0 for a non-negative representation; 0 for a = 0). Shape (...,)."""
    a = check_matrix(a, name="representation a").to(torch.float64)
    total = a.abs().sum((-2, -1))
    neg = (-a).clamp_min(0).sum((-2, -1))
    return torch.where(total > 0, neg / torch.where(total > 0, total, 1.0), 0.0)
