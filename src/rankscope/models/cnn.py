"""A small CNN (3×3 convs, stride-2 down-sampling, global average pooling, linear head).

Used by the locality experiment (docs/results.md, IGC-1). Global average pooling on top of a
small receptive field makes f additively separable across distant patches, so the receptive
field is reported and must be checked against the input before blaming a regularizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SmallCNN", "receptive_field"]


def receptive_field(kernel_sizes: Sequence[int], strides: Sequence[int]) -> int:
    """Receptive field (pixels, per axis) of stacked convs: 1 + Σ_l (k_l − 1)·Π_{i<l} s_i.

    >>> receptive_field([3, 3, 3], [2, 2, 2])
    15
    """
    rf, jump = 1, 1
    for k, s in zip(kernel_sizes, strides, strict=True):
        rf += (int(k) - 1) * jump
        jump *= int(s)
    return rf


def _uniform_(t: torch.Tensor, bound: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * 2 * bound - bound)


class SmallCNN(nn.Module):
    """conv3×3(stride s_l, padding 1) → ReLU per layer, then global average pooling and a head.

    Input (B, in_channels, H, W) → (B, out_dim). Init: torch's default U(±1/√fan_in), drawn
    from ``generator``. ``receptive_field`` is the per-axis receptive field of the last layer.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        out_dim: int = 1,
        *,
        strides: Sequence[int] | None = None,
        kernel_size: int = 3,
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        strides = [2] * len(channels) if strides is None else [int(s) for s in strides]
        if not channels or len(strides) != len(channels):
            raise ValueError(f"need one stride per conv layer, got {channels} and {strides}")
        layers = []
        for c_in, c_out, s in zip([in_channels, *channels[:-1]], channels, strides):
            conv = nn.utils.skip_init(
                nn.Conv2d, c_in, c_out, kernel_size, stride=s, padding=kernel_size // 2, dtype=dtype
            )
            bound = 1 / math.sqrt(c_in * kernel_size**2)
            _uniform_(conv.weight, bound, generator)
            _uniform_(conv.bias, bound, generator)
            layers.append(conv)
        self.convs = nn.ModuleList(layers)
        self.head = nn.utils.skip_init(nn.Linear, channels[-1], out_dim, dtype=dtype)
        _uniform_(self.head.weight, 1 / math.sqrt(channels[-1]), generator)
        _uniform_(self.head.bias, 1 / math.sqrt(channels[-1]), generator)
        self.receptive_field = receptive_field([kernel_size] * len(channels), strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = torch.relu(conv(h))
        return self.head(h.mean(dim=(-2, -1)))
