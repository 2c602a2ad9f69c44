"""Shared helpers for the metrics tests: seeded generators and planted spectra."""

from __future__ import annotations

import torch


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def orthogonal(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def planted(s, m: int, n: int, g: torch.Generator) -> torch.Tensor:
    """U diag(s) Vᵀ with Haar-random U (m×m), V (n×n); s padded with zeros to min(m, n)."""
    s = torch.as_tensor(s, dtype=torch.float64)
    k = min(m, n)
    full = torch.zeros(k, dtype=torch.float64)
    full[: s.numel()] = s
    return orthogonal(m, g)[:, :k] @ torch.diag(full) @ orthogonal(n, g)[:, :k].T
