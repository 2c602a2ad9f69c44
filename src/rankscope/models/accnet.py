"""Accordion networks (AccNets, definitions §21), single and as a stacked ensemble.

An AccNet of L blocks alternates wide and narrow layers:
d_in → [d_full → d_mid] × (L − 1) → d_full → d_out, i.e. f = f_L∘⋯∘f_1 with
f_ℓ(z) = W_ℓ σ(V_ℓ z + b_ℓ) + c_ℓ. ``narrow_relu=True`` (default) also applies σ to the narrow
outputs of the inner blocks, as the official code (shc443/CoveringNumber_GB, both ``Net`` and
``AccordionNet``) does; ``False`` gives the linear narrow layers of the paper's formula.
Init: PyTorch's ``nn.Linear`` default, U(±1/√fan_in) for weights and biases, drawn from the
generator weight then bias, layer by layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["AccNet", "AccNetEnsemble", "accnet_dims"]


def accnet_dims(d_in: int, d_full: int, d_mid: int, d_out: int, blocks: int) -> list[int]:
    """[d_in, d_full, d_mid, …, d_full, d_out] for ``blocks`` accordion blocks.

    >>> accnet_dims(15, 300, 30, 20, 3)
    [15, 300, 30, 300, 30, 300, 20]
    """
    sizes = {"d_in": d_in, "d_full": d_full, "d_mid": d_mid, "d_out": d_out, "blocks": blocks}
    for k, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be an int >= 1, got {v!r}")
    return [d_in] + [d_full, d_mid] * (blocks - 1) + [d_full, d_out]


def _uniform(shape, bound: float, gen, dtype) -> torch.Tensor:
    return (torch.rand(shape, generator=gen, dtype=dtype) * 2 - 1) * bound


def _init(dims: Sequence[int], gen: torch.Generator | None, dtype) -> list[tuple]:
    out = []
    for n_in, n_out in itertools.pairwise(dims):
        bound = 1.0 / math.sqrt(n_in)
        w = _uniform((n_out, n_in), bound, gen, dtype)
        b = _uniform((n_out,), bound, gen, dtype)
        out.append((w, b))
    return out


def _activate(layer: int, depth: int, narrow_relu: bool) -> bool:
    """σ after layer ``layer`` (0-based)? Wide layers (even index) always; narrow ones if asked."""
    if layer == depth - 1:
        return False
    return layer % 2 == 0 or narrow_relu


class AccNet(nn.Module):
    """One AccNet; ``forward`` maps (N, d_in) -> (N, d_out). See the module docstring."""

    def __init__(
        self,
        d_in: int,
        d_full: int,
        d_mid: int,
        d_out: int,
        blocks: int,
        *,
        narrow_relu: bool = True,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dims = accnet_dims(d_in, d_full, d_mid, d_out, blocks)
        self.narrow_relu = bool(narrow_relu)
        wb = _init(self.dims, generator, dtype)
        self.weights = nn.ParameterList(nn.Parameter(w) for w, _ in wb)
        self.biases = nn.ParameterList(nn.Parameter(b) for _, b in wb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        depth = len(self.weights)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w.T + b
            if _activate(l, depth, self.narrow_relu):
                h = torch.relu(h)
        return h


class AccNetEnsemble(nn.Module):
    """E same-shaped AccNets stacked: weights (E, n_l, n_{l−1}), biases (E, n_l).

    Member e starts exactly where ``AccNet(..., generator=generators[e])`` starts. ``forward``
    takes a shared input (N, d_in) or one per member (E, N, d_in) and returns (E, N, d_out).
    Trains with :func:`rankscope.train.train` (a stacked ensemble: ``size`` and every parameter
    with leading dimension E).
    """

    def __init__(
        self,
        d_in: int,
        d_full: int,
        d_mid: int,
        d_out: int,
        blocks: int,
        *,
        generators: Sequence[torch.Generator],
        narrow_relu: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        gens = list(generators)
        if not gens or not all(isinstance(g, torch.Generator) for g in gens):
            raise TypeError("generators must be a non-empty list of torch.Generator")
        self.dims = accnet_dims(d_in, d_full, d_mid, d_out, blocks)
        self.narrow_relu = bool(narrow_relu)
        members = [_init(self.dims, g, dtype) for g in gens]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([m[l][0] for m in members])) for l in range(len(self.dims) - 1)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([m[l][1] for m in members])) for l in range(len(self.dims) - 1)
        )

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if x.ndim == 3 else x.expand(self.size, *x.shape)
        depth = len(self.weights)
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b[:, None, :], h, w.mT)
            if _activate(l, depth, self.narrow_relu):
                h = torch.relu(h)
        return h

    def member(self, e: int) -> AccNet:
        """A standalone copy of member e."""
        d = self.dims
        net = AccNet(d[0], d[1], d[2] if len(d) > 3 else d[1], d[-1], (len(d) - 1) // 2,
                     narrow_relu=self.narrow_relu, generator=torch.Generator(),
                     dtype=self.weights[0].dtype)  # fmt: skip
        with torch.no_grad():
            for w, we in zip(net.weights, self.weights):
                w.copy_(we[e])
            for b, be in zip(net.biases, self.biases):
                b.copy_(be[e])
        return net
