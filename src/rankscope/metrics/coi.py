"""Cost of Identity of a representation, stable (K + γI)⁻¹ form (definitions §12).

COI(A) = min{‖W‖_F² : W σ(A) = A} = Tr[A K⁺ Aᵀ] with K = σ(A)ᵀσ(A), A ∈ R^{w×N} and σ(A)
the ReLU of A with a row of ones appended (``bias_row=True``). The stable form replaces K⁺
by (K + γI)⁻¹ with γ = γ0·‖σ(A)‖_op², computed with Cholesky solves, never a pseudo-inverse.
"""

from __future__ import annotations

import torch

from rankscope.metrics._validate import check_matrix

__all__ = ["cost_of_identity"]

_METHODS = ("auto", "samples", "features")


def _features(a: torch.Tensor, bias_row: bool) -> torch.Tensor:
    """σ(A) in sample-major layout: (..., N, w[+1]), the ReLU plus a column of ones."""
    f = torch.relu(a)
    if bias_row:
        f = torch.cat([f, torch.ones_like(a[..., :1])], dim=-1)
    return f


def cost_of_identity(
    a: torch.Tensor,
    *,
    gamma0: float = 1e-3,
    bias_row: bool = True,
    method: str = "auto",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """COI_γ(A) = Tr[A (K + γI_N)⁻¹ Aᵀ], γ = γ0·‖σ(A)‖_op² (definitions §12). Shape (...,).

    ``a`` is the representation in PyTorch layout (..., N, w): one row per sample, i.e. Aᵀ
    of the formula. ``method``: ``samples`` factors the N×N matrix K + γI; ``features``
    factors the (w+1)×(w+1) matrix S Sᵀ + γI via Woodbury,
    (SᵀS + γI)⁻¹ = (I − Sᵀ(SSᵀ + γI)⁻¹S)/γ; ``auto`` picks the smaller. Both are Cholesky
    solves in ``dtype`` (float64). Properties: COI ≥ ‖A‖_*²/‖A‖_F² for γ → 0, and COI = rank A
    for non-negative A without bias. 0 for A = 0.

    >>> a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])  # N=3 samples, w=2, A >= 0
    >>> round(float(cost_of_identity(a, bias_row=False, gamma0=1e-9)), 6)
    2.0
    """
    a = check_matrix(a, name="representation a").to(dtype)
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {_METHODS}")
    if not gamma0 > 0:
        raise ValueError(f"gamma0 must be > 0 (the stable form needs γ > 0), got {gamma0!r}")
    f = _features(a, bias_row)  # (..., N, p)
    n, p = f.shape[-2:]
    if n == 0:
        return a.new_zeros(a.shape[:-2])
    gram_small = f.mT @ f if p <= n else f @ f.mT  # shares its top eigenvalue with K
    op2 = torch.linalg.eigvalsh(gram_small)[..., -1]
    gamma = (gamma0 * op2).clamp_min(torch.finfo(dtype).tiny)[..., None, None]
    if method == "samples" or (method == "auto" and n <= p):
        k = f @ f.mT + gamma * torch.eye(n, dtype=dtype, device=a.device)
        chol = torch.linalg.cholesky(k)
        y = torch.linalg.solve_triangular(chol, a, upper=False)  # L⁻¹Aᵀ, (..., N, w)
        return (y**2).sum((-2, -1))
    m = f.mT @ f + gamma * torch.eye(p, dtype=dtype, device=a.device)  # S Sᵀ + γI, (p, p)
    chol = torch.linalg.cholesky(m)
    sa = torch.linalg.solve_triangular(chol, f.mT @ a, upper=False)  # L⁻¹ S Aᵀ, (..., p, w)
    return ((a**2).sum((-2, -1)) - (sa**2).sum((-2, -1))) / gamma[..., 0, 0]
