"""Input checks shared by the metrics: clear errors naming what was received."""

from __future__ import annotations

import torch


def as_tensor(x, *, name: str = "input") -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return torch.from_numpy(x)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _all_finite(x: torch.Tensor) -> bool:
    """Any NaN/Inf makes the sum non-finite, so a finite sum (one fast reduction) proves the
    tensor finite; only a non-finite sum (NaN/Inf, or overflow) needs the elementwise test,
    which allocates a mask as large as ``x`` (18x slower on a 4096² matrix)."""
    if x.numel() == 0 or bool(torch.isfinite(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def check_matrix(x, *, name: str = "input", min_dim: int = 2) -> torch.Tensor:
    """Return ``x`` as a tensor with at least ``min_dim`` dims and only finite values."""
    x = as_tensor(x, name=name)
    if x.ndim < min_dim:
        want = "(..., m, n)" if min_dim == 2 else f"at least {min_dim} dimensions"
        raise ValueError(f"{name} must have shape {want}, got shape {tuple(x.shape)}")
    if (x.is_complex() or x.is_floating_point()) and not _all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} of shape {tuple(x.shape)} contains {bad} NaN/Inf value(s)")
    return x


def check_spectrum(s, *, name: str = "spectrum") -> torch.Tensor:
    """A spectrum: (..., k) non-negative and finite, returned sorted descending.

    ``singular_values`` already returns descending values; ascending rows (eigenvalues from
    ``eigvalsh``) and a single unsorted vector are sorted here, since every metric of a
    spectrum depends on the multiset of values only. A batch whose rows are neither
    non-increasing nor non-decreasing is almost surely a matrix passed by mistake
    (``stable_rank(torch.rand(64, 32))``) and raises.
    """
    s = as_tensor(s, name=name)
    if s.ndim < 1:
        raise ValueError(f"{name} must have at least 1 dimension (..., k), got a scalar")
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} of shape {tuple(s.shape)} contains NaN/Inf")
    if s.numel() and bool((s < 0).any()):
        raise ValueError(
            f"{name} of shape {tuple(s.shape)} has negative entries; pass singular values"
        )
    if s.shape[-1] > 1:
        rises = s[..., 1:] > s[..., :-1]
        if bool(rises.any()):
            falls = (s[..., 1:] < s[..., :-1]).any(-1)
            if s.ndim >= 2 and bool((rises.any(-1) & falls).any()):
                raise ValueError(
                    f"{name} of shape {tuple(s.shape)} is not sorted along its last axis "
                    "(a spectrum is non-increasing, or non-decreasing as from eigvalsh): this "
                    "looks like a matrix; pass singular_values(x)"
                )
            s = torch.sort(s, dim=-1, descending=True).values
    return s
