"""Jacobians against finite differences; conv spectra against the explicit circulant (§10, §19)."""

from __future__ import annotations

import pytest
import torch
from _metrics_helpers import gen
from torch.testing import assert_close

from rankscope.metrics import (
    activation_frequency_energy,
    conv_flatten,
    conv_frequency_blocks,
    conv_operator_singular_values,
    conv_operator_spectrum,
    frequency_channel_covariance,
    frequency_mass,
    frequency_rank,
    jacobian_rank,
    jacobian_sketch,
    jacobians,
    linear_cnn_blocks,
    numerical_rank,
    pooled_kernel_spectrum,
    singular_values,
    total_frequency_rank,
)

F64 = torch.float64


def _mlp(d_in=5, width=7, d_out=3, seed=0):
    net = torch.nn.Sequential(
        torch.nn.Linear(d_in, width), torch.nn.Tanh(), torch.nn.Linear(width, d_out)
    ).double()
    g = gen(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=F64) / p.shape[-1] ** 0.5)
    return net


def _finite_difference(f, x, h=1e-6):
    cols = []
    for j in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, j] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return torch.stack(cols, dim=-1)  # (B, d_out, d_in)


@pytest.mark.parametrize("method", ["rows", "vmap", "auto"])
@pytest.mark.parametrize(("d_in", "d_out"), [(5, 3), (3, 6)])
def test_jacobians_match_finite_differences(method, d_in, d_out):
    net = _mlp(d_in=d_in, d_out=d_out)
    x = torch.randn(9, d_in, generator=gen(1), dtype=F64)
    with torch.no_grad():
        ref = _finite_difference(net, x)
    got = jacobians(net, x, method=method, chunk_size=4)
    assert got.shape == (9, d_out, d_in) and not got.requires_grad
    assert_close(got, ref, rtol=1e-7, atol=1e-8)
    assert all(p.grad is None for p in net.parameters())


def test_jacobian_of_a_linear_map_and_empty_batch():
    a = torch.randn(4, 6, generator=gen(2), dtype=F64)
    x = torch.randn(3, 6, generator=gen(3), dtype=F64)
    jac = jacobians(lambda v: v @ a.T, x)
    assert_close(jac, a.expand(3, 4, 6))
    assert jacobians(lambda v: v @ a.T, x[:0]).shape == (0, 4, 6)


def test_jacobian_rank_of_a_bottleneck_and_relu_units():
    # f(x) = B relu(A x): rank J ≤ 2 through a width-2 bottleneck, and it drops where units die
    g = gen(4)
    a = torch.randn(2, 6, generator=g, dtype=F64)
    b = torch.randn(5, 2, generator=g, dtype=F64)
    f = lambda v: torch.relu(v @ a.T) @ b.T  # noqa: E731
    x = torch.randn(200, 6, generator=g, dtype=F64)
    out = jacobian_rank(f, x, chunk_size=64)
    active = ((x @ a.T) > 0).sum(1)
    assert torch.equal(out.ranks, active)
    assert out.max == 2 and out.histogram.tolist() == torch.bincount(active, minlength=6).tolist()
    assert out.median == float(torch.quantile(active.double(), 0.5))


def test_jacobian_rank_feng_is_coarser():
    scale = torch.tensor([1.0, 1e-5, 1e-10], dtype=F64)
    f = lambda v: v * scale  # noqa: E731  J = diag(scale): ranks 3 (torch) and 2 (feng: 1e-10 < 1e-8)
    x = torch.ones(2, 3, dtype=F64)
    assert jacobian_rank(f, x).max == 3
    assert jacobian_rank(f, x, "feng").max == 2


def test_jacobian_sketch_is_j_times_omega_and_recovers_rank():
    net = _mlp(d_in=8, width=3, d_out=6)  # rank ≤ 3
    x = torch.randn(5, 8, generator=gen(5), dtype=F64)
    y = jacobian_sketch(net, x, 5, generator=gen(6), chunk_size=2)
    omega = torch.randn(8, 5, generator=gen(6), dtype=F64)
    assert_close(y, jacobians(net, x) @ omega)
    ranks = numerical_rank(singular_values(y), shape=(6, 8))
    assert ranks.tolist() == [3] * 5


def test_jacobian_bad_input():
    net = _mlp()
    with pytest.raises(ValueError, match=r"shape \(B, d_in\), got \(5,\)"):
        jacobians(net, torch.ones(5, dtype=F64))
    with pytest.raises(
        ValueError, match=r"f must map \(B, d_in\) = \(1, 5\) to \(B, d_out\), got \(\)"
    ):
        jacobians(lambda v: v.sum(), torch.ones(2, 5, dtype=F64))
    with pytest.raises(ValueError, match="unknown method 'jacfwd'"):
        jacobians(net, torch.ones(2, 5, dtype=F64), method="jacfwd")
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1, got 0"):
        jacobians(net, torch.ones(2, 5, dtype=F64), chunk_size=0)
    with pytest.raises(ValueError, match="NaN/Inf"):
        jacobian_rank(net, torch.full((2, 5), float("nan"), dtype=F64))


# ---- convolutions -----------------------------------------------------------------------


def _circulant_1d(w: torch.Tensor, d: int) -> torch.Tensor:
    """The operator of torch's circular conv1d (cross-correlation) as a (C_out·d, C_in·d) matrix."""
    c_out, c_in, k = w.shape
    eye = torch.eye(c_in * d, dtype=F64).reshape(c_in * d, c_in, d)
    pad = torch.nn.functional.pad(eye, (0, k - 1), mode="circular")
    return torch.nn.functional.conv1d(pad, w).reshape(c_in * d, c_out * d).T


def _circulant_2d(w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    _, c_in, kh, kw = w.shape
    n_in = c_in * size[0] * size[1]
    eye = torch.eye(n_in, dtype=F64).reshape(n_in, c_in, *size)
    pad = torch.nn.functional.pad(eye, (0, kw - 1, 0, kh - 1), mode="circular")
    return torch.nn.functional.conv2d(pad, w).reshape(n_in, -1).T


def test_1d_operator_spectrum_equals_circulant_svd():
    w = torch.randn(3, 2, 3, generator=gen(7), dtype=F64)
    m = _circulant_1d(w, 6)
    x = torch.randn(1, 2, 6, generator=gen(8), dtype=F64)  # the matrix really is torch's conv
    conv = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (0, 2), mode="circular"), w)
    assert_close(conv.reshape(-1), m @ x.reshape(-1))
    assert_close(conv_operator_singular_values(w, 6), singular_values(m)[: 6 * 2])


@pytest.mark.parametrize("size", [(4, 5), (3, 3)])
def test_2d_operator_spectrum_equals_circulant_svd(size):
    w = torch.randn(2, 3, 3, 2, generator=gen(9), dtype=F64)
    spec = conv_operator_spectrum(w, size)
    assert spec.shape == (*size, 2)
    assert_close(conv_operator_singular_values(w, size), singular_values(_circulant_2d(w, size)))


def test_parseval_mass_pooled_and_flatten():
    w = torch.randn(4, 3, 3, 3, generator=gen(10), dtype=F64)
    blocks = conv_frequency_blocks(w, (5, 6))
    assert_close((w**2).sum(), (blocks.abs() ** 2).sum() / 30)
    mass = frequency_mass(w, (5, 6))
    assert_close(mass.sum(), torch.tensor(1.0, dtype=F64))
    const = torch.zeros(2, 2, 3, 3, dtype=F64)
    const[:, :, 1, 1] = torch.eye(2)  # identity kernel: flat frequency mass
    assert_close(frequency_mass(const, (4, 4)), torch.full((4, 4), 1 / 16, dtype=F64))
    slices = w.permute(2, 3, 0, 1).reshape(9, 4, 3)
    assert_close(
        pooled_kernel_spectrum(w), singular_values(slices).flatten().sort(descending=True).values
    )
    assert conv_flatten(w).shape == (4, 27)


def test_frequency_rank_and_conjugate_counting():
    w = torch.zeros(2, 2, 3, dtype=F64)
    w[0, 0, 0] = 1.0  # rank 1 in every frequency
    w[1, 1, :] = torch.tensor([1.0, 1.0, 1.0])  # rank 1 at m = 0 only... nonzero off d/3 zeros
    spec = conv_operator_spectrum(w, 6)
    ranks = frequency_rank(spec, 0.1)
    assert ranks.shape == (6,)
    # (1 + e^{-iθ} + e^{-2iθ}) vanishes at m = 2, 4 (θ = 2πm/6)
    assert ranks.tolist() == [2, 2, 1, 2, 1, 2]
    assert int(total_frequency_rank(spec, 0.1)) == 10
    # pairs {1,5}, {2,4} counted once, self-conjugate m = 0, 3 once: 2 + 2 + 1 + 2 = 7
    assert int(total_frequency_rank(spec, 0.1, count_conjugate=1)) == 7


def test_linear_cnn_blocks_multiply_per_frequency():
    w1 = torch.randn(3, 2, 3, generator=gen(11), dtype=F64)
    w2 = torch.randn(2, 3, 1, generator=gen(12), dtype=F64)
    prod = linear_cnn_blocks([w1, w2], 5)
    assert_close(prod, conv_frequency_blocks(w2, 5) @ conv_frequency_blocks(w1, 5))
    m = _circulant_1d(w2, 5) @ _circulant_1d(w1, 5)
    assert_close(singular_values(prod).flatten().sort(descending=True).values, singular_values(m))


def test_activation_frequency_statistics():
    z = torch.randn(4, 3, 5, 5, generator=gen(13), dtype=F64)
    energy, frac = activation_frequency_energy(z)
    assert_close(energy.sum(), 25 * (z**2).sum())  # Parseval with the unnormalized FFT
    assert_close(frac, 25 * (z.mean((2, 3)) ** 2).sum() / (z**2).sum())
    cov = frequency_channel_covariance(z)
    assert cov.shape == (5, 5, 3, 3)
    assert_close(cov[0, 0].real, 25**2 * z.mean((2, 3)).T @ z.mean((2, 3)))
    assert_close(cov, cov.conj().mT)


def test_conv_bad_input():
    with pytest.raises(ValueError, match=r"\(C_out, C_in, k\) or \(C_out, C_in, k_h, k_w\)"):
        conv_operator_spectrum(torch.ones(2, 2, 2, 2, 2), 4)
    with pytest.raises(ValueError, match=r"kernel spatial shape is \(3,\)"):
        conv_operator_spectrum(torch.ones(2, 2, 3), 2)
    with pytest.raises(ValueError, match=r"kernel spatial shape is \(3, 3\)"):
        conv_operator_spectrum(torch.ones(2, 2, 3, 3), 5)
    with pytest.raises(ValueError, match="count_conjugate must be 1 or 2"):
        total_frequency_rank(torch.ones(4, 2), count_conjugate=3)
