"""Shared pieces of the deep-linear-network experiments (docs/results.md, shared notation):
planted targets, observation masks, init scales and log-spaced logging steps. Training goes
through :func:`rankscope.train.train` (autograd; the engine's benchmark found no ≥ 2× gain for
a closed-form DLN backward on these shapes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rankscope.models.linear import init_deep_linear

__all__ = [
    "log_spaced_steps",
    "observation_mask",
    "planted_matrix",
    "random_orthogonal",
    "scaled_init",
]


def random_orthogonal(n: int, *, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random n×n orthogonal matrix (QR of a Gaussian with the sign fix), float64."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))[None, :]


def planted_matrix(
    dim: int, values: Sequence[float], *, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A* = U diag(values) Vᵀ (dim×dim) with random orthogonal U, V; returns (A*, U, V)."""
    k = len(values)
    if k > dim:
        raise ValueError(f"cannot plant {k} singular values in a {dim}x{dim} matrix")
    u = random_orthogonal(dim, generator=generator)
    v = random_orthogonal(dim, generator=generator)
    s = torch.tensor(values, dtype=torch.float64)
    return u[:, :k] @ torch.diag(s) @ v[:, :k].T, u, v


def observation_mask(dim: int, fraction: float, *, generator: torch.Generator) -> torch.Tensor:
    """A dim×dim bool mask with exactly round(fraction·dim²) observed entries, uniformly."""
    if not 0 < fraction <= 1:
        raise ValueError(f"observed fraction must be in (0, 1], got {fraction!r}")
    n_obs = round(fraction * dim * dim)
    mask = torch.zeros(dim * dim, dtype=torch.bool)
    mask[torch.randperm(dim * dim, generator=generator)[:n_obs]] = True
    return mask.reshape(dim, dim)


def scaled_init(
    dims: Sequence[int], sigmas: Sequence[float], *, generator: torch.Generator
) -> list[torch.Tensor]:
    """Factors (E, n_ℓ, n_{ℓ−1}) for E = len(sigmas) init scales, float64.

    One standard-normal draw is scaled by each σ (common random numbers), so members differ
    only in scale and a sweep over σ² is not blurred by init noise.
    """
    base = init_deep_linear(dims, 1.0, generator=generator, dtype=torch.float64)
    sig = torch.tensor(list(sigmas), dtype=torch.float64)[:, None, None]  # (E, 1, 1)
    return [sig * w[None] for w in base]


def log_spaced_steps(n_max: int, n_points: int) -> set[int]:
    """About ``n_points`` integer steps in [0, n_max], spaced evenly in log(1 + step)."""
    grid = np.unique(np.round(np.geomspace(1, n_max + 1, n_points)).astype(np.int64) - 1)
    return {int(k) for k in grid}
