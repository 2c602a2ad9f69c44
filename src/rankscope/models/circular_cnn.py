"""Circular CNNs (1-D and 2-D): exact circular convolutions (definitions §19).

Layer ℓ is the circular *convolution* y[c, t] = Σ_{c′, u} W[c, c′, u]·x[c′, t − u mod d] (+ b_c):
its kernel W (C_out, C_in, k) or (C_out, C_in, k_1, k_2) is zero-padded to the signal size, so
the DFT block-diagonalises it exactly: ŷ(m) = Ŵ(m)·x̂(m) with Ŵ(m) =
:func:`rankscope.metrics.conv_frequency_blocks` of the same weight. A linear net therefore
maps x̂(m) to Ŵ_L(m)⋯Ŵ_1(m)·x̂(m) (:func:`rankscope.metrics.linear_cnn_blocks`).

Kernels of size k < d sit at offsets u = 0 … k−1; torch's ``padding_mode='circular'`` centres
them instead, a circular shift that multiplies Ŵ(m) by a phase and leaves every singular
value and every frequency mass unchanged. Cross-correlation (torch's convs) conjugates Ŵ.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from rankscope.models.mlp import activation_fn

__all__ = ["CircularCNN", "circular_conv", "circular_operator"]


def _spatial(size) -> tuple[int, ...]:
    sizes = (size,) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(sizes) not in (1, 2) or any(s < 1 for s in sizes):
        raise ValueError(f"spatial size must be d or (d1, d2) with positive sizes, got {size!r}")
    return sizes


@functools.lru_cache(maxsize=64)
def _shift_basis(sizes: tuple[int, ...], kernel: tuple[int, ...]) -> torch.Tensor:
    """E (prod(kernel), D·D) in float64: E[u, t·D + s] = 1 iff t − s ≡ u (mod d) on every
    axis (t, s flattened positions, u a kernel offset). W_flat @ E is the operator."""
    grids = [torch.arange(d) for d in sizes]
    pos = torch.stack(torch.meshgrid(*grids, indexing="ij"), -1).reshape(-1, len(sizes))
    diff = (pos[:, None, :] - pos[None, :, :]) % torch.tensor(sizes)  # (D, D, nd)
    inside = (diff < torch.tensor(kernel)).all(-1)
    flat = torch.zeros(diff.shape[:2], dtype=torch.long)
    for axis, k in enumerate(kernel):
        flat = flat * k + diff[..., axis].clamp(max=k - 1)
    n = math.prod(sizes)
    basis = torch.zeros(math.prod(kernel), n * n, dtype=torch.float64)
    cols = torch.arange(n * n)[inside.flatten()]
    basis[flat.flatten()[inside.flatten()], cols] = 1.0
    return basis


def circular_operator(weight: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """The dense (C_out·D, C_in·D) matrix of the circular convolution (D = prod(sizes)).

    Entry [(o, t), (i, s)] = W[o, i, t − s mod d] (0 outside the kernel's support); one
    matmul of the flattened kernel with a fixed 0/1 basis, so autograd is a matmul too.
    """
    c_out, c_in = weight.shape[:2]
    kernel = tuple(weight.shape[2:])
    n = math.prod(sizes)
    basis = _shift_basis(tuple(sizes), kernel).to(dtype=weight.dtype, device=weight.device)
    op = weight.reshape(c_out * c_in, -1) @ basis  # (C_out·C_in, D·D)
    return op.reshape(c_out, c_in, n, n).permute(0, 2, 1, 3).reshape(c_out * n, c_in * n)


def circular_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    method: str = "auto",
) -> torch.Tensor:
    """Circular convolution of x (B, C_in, *spatial) with weight (C_out, C_in, *kernel).

    ``method="fft"``: irfftn(Ŵ(m)·x̂(m)); ``"dense"``: one matmul with
    :func:`circular_operator` (real arithmetic, faster for small signals); ``"auto"`` picks
    dense when the signal has <= 256 positions. The kernel is zero-padded to the signal size
    and must not be larger than it on any axis.
    """
    nd = weight.ndim - 2
    sizes = tuple(x.shape[-nd:])
    if x.ndim != nd + 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"input must be (B, {weight.shape[1]}, *spatial) for weight {tuple(weight.shape)}, "
            f"got {tuple(x.shape)}"
        )
    if any(k > d for k, d in zip(weight.shape[2:], sizes)):
        raise ValueError(
            f"kernel size {tuple(weight.shape[2:])} is larger than the signal {sizes}; "
            "each kernel axis must be <= the signal's"
        )
    if method not in ("auto", "fft", "dense"):
        raise ValueError(f"method must be 'auto', 'fft' or 'dense', got {method!r}")
    if method == "dense" or (method == "auto" and math.prod(sizes) <= 256):
        op = circular_operator(weight, sizes)
        y = (x.reshape(x.shape[0], -1) @ op.T).reshape(x.shape[0], weight.shape[0], *sizes)
    else:
        dims = tuple(range(-nd, 0))
        xf = torch.fft.rfftn(x, dim=dims)  # (B, C_in, *freq)
        wf = torch.fft.rfftn(weight, s=sizes, dim=dims)  # (C_out, C_in, *freq)
        letters = "fg"[:nd]
        yf = torch.einsum(f"oi{letters},bi{letters}->bo{letters}", wf, xf)
        y = torch.fft.irfftn(yf, s=sizes, dim=dims)
    if bias is not None:
        y = y + bias.view(1, -1, *([1] * nd))
    return y


class CircularCNN(nn.Module):
    """A stack of circular convolutions with an activation between them.

    ``channels = [C_0, C_1, …, C_L]`` (C_0 input channels); ``spatial`` is d or (d1, d2);
    ``kernel_size=None`` gives full-size kernels (k = d), an int or pair gives small kernels.
    ``activation`` ("relu", "identity", … of :data:`rankscope.models.mlp.ACTIVATIONS`) acts
    after every layer but the last. ``readout``: ``"map"`` returns the last layer's output
    (B, C_L, *spatial); ``"sum"`` sums it over positions, (B, C_L); ``"mean"`` averages.
    Init: N(0, (init_gain²)/(C_in·prod(k))) weights from ``generator``, zero biases.
    :attr:`weights` lists the kernels first layer first (as ``DeepLinear.weights``).
    """

    def __init__(
        self,
        channels: Sequence[int],
        spatial: int | Sequence[int],
        *,
        kernel_size: int | Sequence[int] | None = None,
        activation: str = "relu",
        bias: bool = False,
        readout: str = "map",
        init_gain: float = math.sqrt(2.0),
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        if len(chans) < 2 or any(c < 1 for c in chans):
            raise ValueError(f"channels must list >= 2 positive sizes [C_0, …], got {channels}")
        self.spatial = _spatial(spatial)
        if kernel_size is None:
            kernel = self.spatial
        else:
            kernel = _spatial(kernel_size)
            if len(kernel) == 1 and len(self.spatial) == 2:
                kernel = kernel * 2
            if len(kernel) != len(self.spatial):
                raise ValueError(f"kernel_size {kernel_size!r} does not match spatial {spatial!r}")
        if any(k > d for k, d in zip(kernel, self.spatial)):
            raise ValueError(
                f"kernel_size {kernel} is larger than the signal {self.spatial}; "
                "each kernel axis must be <= the signal's"
            )
        if readout not in ("map", "sum", "mean"):
            raise ValueError(f"readout must be 'map', 'sum' or 'mean', got {readout!r}")
        self.kernel_size, self.readout = kernel, readout
        self.activation = activation
        self._act = activation_fn(activation)
        fan = math.prod(kernel)
        ws = []
        for c_in, c_out in itertools.pairwise(chans):
            w = torch.randn((c_out, c_in, *kernel), generator=generator, dtype=dtype)
            ws.append(nn.Parameter(w * (float(init_gain) / math.sqrt(c_in * fan))))
        self.weights = nn.ParameterList(ws)
        self.biases = (
            nn.ParameterList(nn.Parameter(torch.zeros(c, dtype=dtype)) for c in chans[1:])
            if bias
            else None
        )
        self.channels = chans

    @property
    def depth(self) -> int:
        return len(self.weights)

    def _check_input(self, x: torch.Tensor) -> None:
        want = (self.channels[0], *self.spatial)
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            shape = ", ".join(map(str, want))
            raise ValueError(f"input must be (B, {shape}), got {tuple(x.shape)}")

    def forward_with_hidden(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(output, [z_1 … z_L]): the pre-activations of every layer, (B, C_ℓ, *spatial)."""
        self._check_input(x)
        zs, h = [], x
        for l, w in enumerate(self.weights):
            b = None if self.biases is None else self.biases[l]
            z = circular_conv(h, w, b)
            zs.append(z)
            h = self._act(z) if l < self.depth - 1 else z
        return self._read(h), zs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(x)[0]

    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activations h_1 … h_{L−1} and the last pre-activation z_L, detached."""
        with torch.no_grad():
            _, zs = self.forward_with_hidden(x)
        return [self._act(z) for z in zs[:-1]] + [zs[-1]]

    def _read(self, h: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, h.ndim))
        if self.readout == "sum":
            return h.sum(dims)
        if self.readout == "mean":
            return h.mean(dims)
        return h
