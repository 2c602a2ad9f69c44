"""Per-frequency spectra of circular convolutions, and conv weight reshapes (definitions §0, §19).

A conv kernel W (C_out, C_in, k) or (C_out, C_in, k_h, k_w), zero-padded to the input size and
Fourier-transformed over its spatial axes, gives one block Ŵ(m) ∈ C^{C_out×C_in} per frequency
m; the circular-convolution operator is block-diagonal in that basis, so its singular values
are the union over m of s_i(Ŵ(m)). PyTorch convs compute cross-correlation, which conjugates
Ŵ and leaves every singular value unchanged; strides and zero padding break the structure.
"""

from __future__ import annotations

import math

import torch

from rankscope.metrics._validate import check_matrix
from rankscope.metrics.spectra import singular_values

__all__ = [
    "activation_frequency_energy",
    "conv_flatten",
    "conv_frequency_blocks",
    "conv_operator_singular_values",
    "conv_operator_spectrum",
    "frequency_channel_covariance",
    "frequency_mass",
    "frequency_rank",
    "linear_cnn_blocks",
    "pooled_kernel_spectrum",
    "spatially_constant_fraction",
    "stacked_frequency_mass",
    "stacked_frequency_spectra",
    "total_frequency_rank",
]


def _check_kernel(weight) -> torch.Tensor:
    w = check_matrix(weight, name="conv weight", min_dim=3)
    if w.ndim not in (3, 4):
        raise ValueError(
            f"conv weight must be (C_out, C_in, k) or (C_out, C_in, k_h, k_w), got {tuple(w.shape)}"
        )
    return w


def _sizes(w: torch.Tensor, input_size) -> tuple[int, ...]:
    sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    kernel = tuple(w.shape[2:])
    if len(sizes) != len(kernel) or any(d < k for d, k in zip(sizes, kernel)):
        raise ValueError(
            f"input_size {input_size!r} must give one size >= the kernel size per spatial axis; "
            f"kernel spatial shape is {kernel}"
        )
    return sizes


def conv_frequency_blocks(weight, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """Ŵ(m) = Σ_u W[:, :, u]·e^{−2πi⟨m, u/d⟩}: complex (*freq, C_out, C_in), freq = input_size.

    Unnormalized FFT of the kernel zero-padded to ``input_size`` (d or (d1, d2)); complex128.
    """
    w = _check_kernel(weight)
    sizes = _sizes(w, input_size)
    dims = tuple(range(2, w.ndim))
    blocks = torch.fft.fftn(w.to(torch.float64), s=sizes, dim=dims)  # (C_out, C_in, *freq)
    return blocks.permute(*range(2, w.ndim), 0, 1)


def conv_operator_spectrum(weight, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """Per-frequency singular values s_i(Ŵ(m)): (*freq, min(C_out, C_in)), float64."""
    return singular_values(conv_frequency_blocks(weight, input_size))


def conv_operator_singular_values(weight, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """All singular values of the circular-conv operator, descending: the union over m.

    Length prod(input_size)·min(C_out, C_in), the spectrum of the (C_out·D)×(C_in·D) operator.
    """
    return conv_operator_spectrum(weight, input_size).flatten().sort(descending=True).values


def frequency_rank(spectrum: torch.Tensor, rtol: float = 0.1) -> torch.Tensor:
    """r_m = #{i : s_i(Ŵ(m)) > rtol·max_{m′} s_1(Ŵ(m′))}, int64 of shape (*freq,) (§19).

    ``spectrum`` is :func:`conv_operator_spectrum`'s output (*freq, r).
    """
    if not isinstance(spectrum, torch.Tensor) or spectrum.ndim < 2:
        got = tuple(spectrum.shape) if isinstance(spectrum, torch.Tensor) else type(spectrum)
        raise ValueError(f"spectrum must be a tensor (*freq, r), got {got}")
    top = spectrum.max() if spectrum.numel() else spectrum.new_zeros(())
    return (spectrum > rtol * top).sum(-1)


def _conjugate_canonical(freq: tuple[int, ...]) -> torch.Tensor:
    """Mask (*freq,) keeping one member of each pair {m, −m mod d} (self-conjugate m kept)."""
    idx = torch.arange(math.prod(freq)).reshape(freq)
    neg = idx
    for axis, d in enumerate(freq):
        neg = torch.index_select(neg, axis, (-torch.arange(d)) % d)
    return idx <= neg


def total_frequency_rank(
    spectrum: torch.Tensor, rtol: float = 0.1, *, count_conjugate: int = 2
) -> torch.Tensor:
    """Σ_m r_m over the frequency grid (CBN rank of a product of blocks, definitions §19).

    ``count_conjugate=2`` (default) counts both members of each conjugate pair (m, −m);
    ``1`` counts a pair once (self-conjugate frequencies, e.g. m = 0, once either way).
    """
    if count_conjugate not in (1, 2):
        raise ValueError(f"count_conjugate must be 1 or 2, got {count_conjugate!r}")
    r = frequency_rank(spectrum, rtol)
    if count_conjugate == 2:
        return r.sum()
    return r[_conjugate_canonical(tuple(r.shape)).to(r.device)].sum()


def linear_cnn_blocks(weights, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """Â(m) = Ŵ_L(m)⋯Ŵ_1(m) for a linear circular CNN, weights listed first layer first."""
    weights = list(weights)
    if not weights:
        raise ValueError("linear_cnn_blocks needs at least one conv weight")
    out = conv_frequency_blocks(weights[0], input_size)
    for w in weights[1:]:
        out = conv_frequency_blocks(w, input_size) @ out
    return out


def frequency_mass(weight, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """F(m) = ‖Ŵ(m)‖_F² / Σ_m′ ‖Ŵ(m′)‖_F², shape (*freq,), sums to 1 (0 for a zero kernel)."""
    energy = conv_frequency_blocks(weight, input_size).abs().pow(2).sum((-2, -1))
    total = energy.sum()
    return energy / total if total > 0 else torch.zeros_like(energy)


def pooled_kernel_spectrum(weight) -> torch.Tensor:
    """Singular values of the prod(k) slices W[:, :, u] (C_out×C_in), pooled and sorted (§0)."""
    w = _check_kernel(weight)
    slices = w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)  # (k_h·k_w, C_out, C_in)
    return singular_values(slices).flatten().sort(descending=True).values


def conv_flatten(weight) -> torch.Tensor:
    """The ``flatten`` view: C_out × (C_in·prod(k)) (definitions §0)."""
    w = _check_kernel(weight)
    return w.reshape(w.shape[0], math.prod(w.shape[1:]))


def _check_activations(z) -> torch.Tensor:
    z = check_matrix(z, name="activations z", min_dim=3)
    if z.ndim not in (3, 4):
        raise ValueError(f"activations must be (B, C, d) or (B, C, d1, d2), got {tuple(z.shape)}")
    return z.to(torch.float64)


def activation_frequency_energy(z) -> tuple[torch.Tensor, torch.Tensor]:
    """E(m) = Σ_{b,c} |Ẑ_{b,c}(m)|² (shape (*freq,)) and the spatially-constant fraction E(0)/ΣE."""
    z = _check_activations(z)
    energy = torch.fft.fftn(z, dim=tuple(range(2, z.ndim))).abs().pow(2).sum((0, 1))
    total = energy.sum()
    frac = energy.flatten()[0] / total if total > 0 else energy.new_zeros(())
    return energy, frac


def frequency_channel_covariance(z) -> torch.Tensor:
    """Σ_b Ẑ_b(m) Ẑ_b(m)^* per frequency: complex (*freq, C, C) (definitions §5, §19)."""
    z = _check_activations(z)
    zf = torch.fft.fftn(z, dim=tuple(range(2, z.ndim))).movedim(0, -1).movedim(0, -2)
    return zf @ zf.conj().mT  # (*freq, C, B) @ (*freq, B, C)


def _stacked_blocks(weights, input_size) -> torch.Tensor:
    """Ŵ_ℓ(m) for a stack (*batch, C_out, C_in, *kernel) -> (*batch, *freq, C_out, C_in)."""
    sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    if len(sizes) not in (1, 2):
        raise ValueError(f"input_size must be d or (d1, d2), got {input_size!r}")
    w = check_matrix(weights, name="stacked conv weights", min_dim=2 + len(sizes))
    nd, nb = len(sizes), w.ndim - 2 - len(sizes)
    kernel = tuple(w.shape[-nd:])
    if any(k > d for k, d in zip(kernel, sizes)):
        raise ValueError(
            f"kernel size {kernel} is larger than the signal {sizes}; "
            "each kernel axis must be <= input_size's"
        )
    dims = tuple(range(w.ndim - nd, w.ndim))
    blocks = torch.fft.fftn(w.to(torch.float64), s=sizes, dim=dims)
    order = [*range(nb), *dims, nb, nb + 1]
    return blocks.permute(*order)


def stacked_frequency_spectra(weights, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """Per-frequency channel spectra of many same-shaped kernels at once (batched SVD).

    ``weights`` (*batch, C_out, C_in, *kernel) — e.g. the middle layers of a CNN stacked, or
    an ensemble's (E, L, …) — gives (*batch, *freq, min(C_out, C_in)), float64: the FFT over
    the spatial axes, then one SVD per (batch, frequency) block. The number of spatial axes
    is ``len(input_size)``.
    """
    return singular_values(_stacked_blocks(weights, input_size))


def stacked_frequency_mass(weights, input_size: int | tuple[int, ...]) -> torch.Tensor:
    """F(m) of each kernel in a stack: (*batch, *freq), each slice summing to 1 (0 if W = 0)."""
    sizes = (input_size,) if isinstance(input_size, int) else tuple(input_size)
    energy = _stacked_blocks(weights, input_size).abs().pow(2).sum((-2, -1))
    dims = tuple(range(energy.ndim - len(sizes), energy.ndim))
    total = energy.sum(dims, keepdim=True)
    return torch.where(total > 0, energy / torch.where(total > 0, total, 1.0), 0.0)


def spatially_constant_fraction(z) -> torch.Tensor:
    """E(0)/Σ_m E(m) of activations (B, C, d) or (B, C, d1, d2) (definitions §19), float64.

    Equals ‖mean over positions‖²·D / ‖z‖² by Parseval (D = number of positions).
    """
    return activation_frequency_energy(z)[1]
