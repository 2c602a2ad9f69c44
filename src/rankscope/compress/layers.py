"""Factorised replacements for Linear and Conv1d/Conv2d layers, and their parameter counts.

A layer with weight W viewed as an (m, n) matrix (m outputs; n = inputs, or in_channels·k for
a convolution with kernel k) is replaced by the product of two factors A (m, r) and B (r, n):

- :class:`LowRankLinear`: ``second(first(x))`` with ``first = Linear(n, r, bias=False)``
  (weight B) and ``second = Linear(r, m)`` (weight A, the original bias);
- :class:`LowRankConv`: a k×k convolution from in_channels to r channels (same stride,
  padding, dilation; weight B reshaped to (r, in_channels, *k)) followed by a 1×1 convolution
  from r to out_channels (weight A, the original bias).

The factorised layer has r(m + n) weights instead of mn, so it saves parameters only when
r < mn/(m + n) (:func:`breakeven_rank`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "FACTORISABLE",
    "LowRankConv",
    "LowRankLinear",
    "breakeven_rank",
    "factorised_module",
    "layer_matrix",
    "skip_reason",
]

FACTORISABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d)


class LowRankLinear(nn.Module):
    """y = A(Bx) + b as two Linear layers: ``first`` (r, n) without bias, ``second`` (m, r)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        bias: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False, dtype=dtype, device=device)
        self.second = nn.Linear(rank, out_features, bias=bias, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


class LowRankConv(nn.Module):
    """A k×k convolution to ``rank`` channels, then a 1×1 convolution to ``out_channels``."""

    def __init__(
        self,
        dims: int,
        in_channels: int,
        out_channels: int,
        rank: int,
        kernel_size: tuple[int, ...],
        *,
        stride: tuple[int, ...] = (1,),
        padding: tuple[int, ...] | str = (0,),
        dilation: tuple[int, ...] = (1,),
        bias: bool = True,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims!r}")
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.dims, self.rank = dims, rank
        self.first = conv(
            in_channels,
            rank,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=False,
            dtype=dtype,
            device=device,
        )
        self.second = conv(rank, out_channels, 1, bias=bias, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))


def layer_matrix(module: nn.Module) -> torch.Tensor:
    """The weight of a Linear/Conv layer as an (m, n) matrix (a view, no copy)."""
    w = module.weight
    return w.reshape(w.shape[0], -1)


def skip_reason(module: nn.Module) -> str | None:
    """Why ``module`` cannot be factorised here (None when it can)."""
    if not isinstance(module, FACTORISABLE):
        return f"{type(module).__name__} is not one of Linear, Conv1d, Conv2d"
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if module.padding_mode != "zeros":
            return f"padding_mode={module.padding_mode!r} (only 'zeros' is supported)"
        if isinstance(module.padding, str) and module.padding != "valid":
            return f"padding={module.padding!r} (int, tuple or 'valid' are supported)"
        if module.transposed:
            return "transposed convolution"
    if type(module) not in FACTORISABLE:
        return f"{type(module).__name__} subclasses {type(module).__mro__[1].__name__}"
    return None


def breakeven_rank(m: int, n: int) -> float:
    """mn/(m + n): a rank-r factorisation of an (m, n) weight saves parameters iff r < this.

    >>> breakeven_rank(384, 1536)
    307.2
    """
    return m * n / (m + n)


def factorised_module(module: nn.Module, a: torch.Tensor, b: torch.Tensor) -> nn.Module:
    """The factorised replacement of ``module`` with weight ≈ A (m, r) · B (r, n).

    The new layer has ``module``'s dtype and device and keeps its bias.
    """
    w = module.weight
    rank = a.shape[1]
    has_bias = module.bias is not None
    kw = {"dtype": w.dtype, "device": w.device}
    if isinstance(module, nn.Linear):
        new = LowRankLinear(module.in_features, module.out_features, rank, bias=has_bias, **kw)
    else:
        dims = 1 if isinstance(module, nn.Conv1d) else 2
        new = LowRankConv(
            dims,
            module.in_channels,
            module.out_channels,
            rank,
            tuple(module.kernel_size),
            stride=tuple(module.stride),
            padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
            dilation=tuple(module.dilation),
            bias=has_bias,
            **kw,
        )
    with torch.no_grad():
        new.first.weight.copy_(b.reshape(new.first.weight.shape))
        new.second.weight.copy_(a.reshape(new.second.weight.shape))
        if has_bias:
            new.second.bias.copy_(module.bias)
    return new


def low_rank_params(m: int, n: int, rank: int) -> int:
    """Weights of a rank-``rank`` factorisation: r(m + n), or mn when kept dense (rank None)."""
    return rank * (m + n) if rank is not None else m * n


def kernel_numel(module: nn.Module) -> int:
    return math.prod(module.weight.shape[2:]) if module.weight.ndim > 2 else 1
