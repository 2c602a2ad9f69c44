"""Fully connected ReLU autoencoders R^d → R^d with biases (2209.15055, `depth-rank` (b)).

A depth-L autoencoder is the :class:`~rankscope.models.mlp.MLP` with dims
[d, w, …, w, d] (L weight matrices). Trained with an explicit L2 penalty λ‖θ‖², a deep one
finds a low-rank middle representation and denoises; the bottleneck sits in the middle layer,
:func:`bottleneck_layer`.
"""

from __future__ import annotations

import torch

from rankscope.models.mlp import MLP

__all__ = ["autoencoder", "bottleneck_layer"]


def autoencoder(
    dim: int,
    width: int,
    depth: int,
    *,
    bias: bool = True,
    init: str | float = "he",
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float64,
) -> MLP:
    """ReLU MLP [dim, width × (depth − 1), dim] (``depth`` weight matrices, ``depth`` >= 1).

    >>> net = autoencoder(10, 16, 4, generator=torch.Generator().manual_seed(0))
    >>> net.dims
    [10, 16, 16, 16, 10]
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"autoencoder depth must be an int >= 1, got {depth!r}")
    dims = [dim, *([width] * (depth - 1)), dim]
    return MLP(dims, "relu", bias, init=init, generator=generator, dtype=dtype)


def bottleneck_layer(depth: int) -> int:
    """The middle hidden layer ⌈L/2⌉ (1-based index of h_ℓ) of a depth-L autoencoder, L >= 2.

    >>> bottleneck_layer(8), bottleneck_layer(2)
    (4, 1)
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ValueError(f"an autoencoder needs depth >= 2 for a hidden layer, got {depth!r}")
    return (depth + 1) // 2
