"""Synthetic tasks of the bottleneck family (docs/results.md CPU recipes), float64.

- :func:`bottleneck_teacher`: x ~ N(0, I_d), y = h(g(x)) with random ReLU nets g: d → k and
  h: k → d_out (Rank_BN ≤ k), outputs standardized per coordinate.
- :func:`trig_curve`: a random closed curve of degree ``degree`` in R^dim and noisy samples.
- :func:`radial_task`: x ∈ R^4, f*(x) = h(‖x_{1:2}‖, ‖x_{3:4}‖) with random Fourier features h
  (invariant under SO(2)×SO(2), Rank_BN ≤ 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rankscope.experiments.bottleneck._common import random_relu_net

__all__ = ["Curve", "Task", "bottleneck_teacher", "radial_task", "trig_curve"]


@dataclass(frozen=True)
class Task:
    x: torch.Tensor  # (N, d) training inputs
    y: torch.Tensor  # (N, d_out)
    x_test: torch.Tensor
    y_test: torch.Tensor
    latent: torch.Tensor | None = None  # (N, k) the invariants (radial task)
    latent_test: torch.Tensor | None = None


def bottleneck_teacher(
    g: torch.Generator, *, d_in: int, d_out: int, k: int, hidden: int, n: int, n_test: int = 0
) -> Task:
    """y = h(g(x)), g = ReLU net [d_in, hidden, k], h = [k, hidden, d_out]; y standardized
    with the training mean and std (so the mean squared output per coordinate is 1)."""
    gnet = random_relu_net([d_in, hidden, k], g)
    hnet = random_relu_net([k, hidden, d_out], g)
    x = torch.randn(n + n_test, d_in, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = hnet(gnet(x))
    mu, sd = y[:n].mean(0), y[:n].std(0).clamp_min(1e-12)
    y = (y - mu) / sd
    return Task(x[:n], y[:n], x[n:], y[n:])


@dataclass(frozen=True)
class Curve:
    dense: torch.Tensor  # (m, dim) clean curve samples
    clean: torch.Tensor  # (n, dim) clean points of the noisy samples
    noisy: torch.Tensor  # (n, dim)


def trig_curve(
    g: torch.Generator, *, dim: int, degree: int, n: int, noise: float, n_dense: int
) -> Curve:
    """c(t) = Σ_{j≤degree} (a_j cos jt + b_j sin jt)/j, a_j, b_j ~ N(0, I_dim), scaled to unit
    RMS norm; ``n`` points at uniform t plus N(0, noise²) per coordinate; ``n_dense`` clean
    samples on an even grid (the reference for nearest-neighbour distances)."""
    coef = torch.randn(2, degree, dim, generator=g, dtype=torch.float64)
    coef = coef / torch.arange(1, degree + 1, dtype=torch.float64)[None, :, None]

    def curve(t: torch.Tensor) -> torch.Tensor:
        j = torch.arange(1, degree + 1, dtype=torch.float64)
        return torch.cos(t[:, None] * j) @ coef[0] + torch.sin(t[:, None] * j) @ coef[1]

    grid = torch.linspace(0, 2 * math.pi, n_dense + 1, dtype=torch.float64)[:-1]
    dense = curve(grid)
    scale = dense.pow(2).sum(1).mean().sqrt()
    t = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    clean = curve(t) / scale
    noisy = clean + noise * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return Curve(dense / scale, clean, noisy)


def radial_task(g: torch.Generator, *, d_out: int, n_features: int, n: int, n_test: int) -> Task:
    """x ~ N(0, I_4), r = (‖x_{1:2}‖, ‖x_{3:4}‖), y = W_out·cos(Ω r + b)/√n_features with
    Ω ~ N(0, I), b ~ U[0, 2π), W_out ~ N(0, 1); y standardized on the training split."""
    x = torch.randn(n + n_test, 4, generator=g, dtype=torch.float64)
    r = torch.stack([x[:, :2].norm(dim=1), x[:, 2:].norm(dim=1)], 1)
    omega = torch.randn(2, n_features, generator=g, dtype=torch.float64)
    b = torch.rand(n_features, generator=g, dtype=torch.float64) * 2 * math.pi
    w_out = torch.randn(n_features, d_out, generator=g, dtype=torch.float64)
    y = torch.cos(r @ omega + b) @ w_out / math.sqrt(n_features)
    mu, sd = y[:n].mean(0), y[:n].std(0).clamp_min(1e-12)
    y = (y - mu) / sd
    return Task(x[:n], y[:n], x[n:], y[n:], r[:n], r[n:])
