"""Circular CNNs, layer-wise NTKs, Matérn GPs, AccNets, exponents vs independent references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.experiments.spectral.data import (
    compositional_data,
    matern_kernel,
    matern_kernel_tabulated,
    rank_one_frequency_target,
    rms_distances,
    sample_gp,
)
from rankscope.metrics import (
    conv_frequency_blocks,
    conv_operator_singular_values,
    conv_operator_spectrum,
    frequency_mass,
    gegenbauer_eigenvalues,
    layer_shares,
    layerwise_ntk_eigenvalues,
    layerwise_ntk_grams,
    linear_cnn_blocks,
    relu_ntk_layer_kernels,
    scaling_exponent,
    singular_values,
    spatially_constant_fraction,
    stacked_frequency_mass,
    stacked_frequency_spectra,
)
from rankscope.models.accnet import AccNet, AccNetEnsemble
from rankscope.models.circular_cnn import CircularCNN, circular_conv, circular_operator

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dense_conv_1d(w: np.ndarray, d: int) -> np.ndarray:
    """y[c, t] = Σ_{c′,u} W[c, c′, u] x[c′, (t − u) mod d] as a (C_out·d, C_in·d) matrix (loops)."""
    c_out, c_in, k = w.shape
    m = np.zeros((c_out * d, c_in * d))
    for c in range(c_out):
        for t in range(d):
            for ci in range(c_in):
                for u in range(k):
                    m[c * d + t, ci * d + (t - u) % d] += w[c, ci, u]
    return m


def _dense_conv_2d(w: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    c_out, c_in, k1, k2 = w.shape
    d1, d2 = size
    m = np.zeros((c_out * d1 * d2, c_in * d1 * d2))
    for c in range(c_out):
        for t1 in range(d1):
            for t2 in range(d2):
                for ci in range(c_in):
                    for u1 in range(k1):
                        for u2 in range(k2):
                            row = (c * d1 + t1) * d2 + t2
                            col = (ci * d1 + (t1 - u1) % d1) * d2 + (t2 - u2) % d2
                            m[row, col] += w[c, ci, u1, u2]
    return m


# ---- circular CNNs ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fft", "dense"])
@pytest.mark.parametrize("k", [3, 7])
def test_circular_conv_1d_is_the_dense_circulant_and_its_spectrum_the_union(k, method):
    w = torch.randn(3, 2, k, generator=gen(0), dtype=F64)
    x = torch.randn(4, 2, 7, generator=gen(1), dtype=F64)
    dense = torch.from_numpy(_dense_conv_1d(w.numpy(), 7))
    assert_close(circular_conv(x, w, method=method).reshape(4, -1), x.reshape(4, -1) @ dense.T)
    assert_close(conv_operator_singular_values(w, 7), singular_values(dense)[: 2 * 7])


@pytest.mark.parametrize("method", ["fft", "dense"])
def test_circular_conv_2d_small_kernel_matches_dense_and_spectrum(method):
    w = torch.randn(2, 3, 3, 2, generator=gen(2), dtype=F64)
    x = torch.randn(2, 3, 4, 5, generator=gen(3), dtype=F64)
    dense = torch.from_numpy(_dense_conv_2d(w.numpy(), (4, 5)))
    assert_close(circular_conv(x, w, method=method).reshape(2, -1), x.reshape(2, -1) @ dense.T)
    assert_close(circular_operator(w, (4, 5)), dense)
    assert_close(conv_operator_singular_values(w, (4, 5)), singular_values(dense))


def test_model_layer_operator_and_parseval():
    net = CircularCNN([2, 3, 2], 6, activation="identity", generator=gen(4), dtype=F64)
    w = net.weights[0].detach()
    # the layer's operator, column by column from basis inputs
    eye = torch.eye(2 * 6, dtype=F64).reshape(12, 2, 6)
    op = circular_conv(eye, w).reshape(12, -1).T
    assert_close(singular_values(op), conv_operator_singular_values(w, 6))
    blocks = conv_frequency_blocks(w, 6)
    assert_close((w**2).sum(), (blocks.abs() ** 2).sum() / 6)


def test_linear_cnn_acts_blockwise_in_fourier():
    net = CircularCNN([2, 3, 3, 2], 8, activation="identity", generator=gen(5), dtype=F64)
    x = torch.randn(5, 2, 8, generator=gen(6), dtype=F64)
    y = net(x)
    a = linear_cnn_blocks([w.detach() for w in net.weights], 8)  # (8, 2, 2)
    xf, yf = torch.fft.fft(x, dim=-1), torch.fft.fft(y, dim=-1)
    assert_close(yf.permute(2, 0, 1), (a @ xf.permute(2, 1, 0)).permute(0, 2, 1))


def test_stacked_spectra_and_mass_equal_per_layer():
    ws = torch.randn(3, 4, 4, 5, generator=gen(7), dtype=F64)
    spec = stacked_frequency_spectra(ws, 9)
    mass = stacked_frequency_mass(ws, 9)
    for l in range(3):
        assert_close(spec[l], conv_operator_spectrum(ws[l], 9))
        assert_close(mass[l], frequency_mass(ws[l], 9))
    ws2 = torch.randn(2, 3, 2, 2, 2, generator=gen(8), dtype=F64)
    assert stacked_frequency_spectra(ws2, (3, 4)).shape == (2, 3, 4, 2)
    assert_close(stacked_frequency_mass(ws2, (3, 4)).sum((-2, -1)), torch.ones(2, dtype=F64))


def test_spatially_constant_fraction_is_mean_energy():
    z = torch.randn(6, 3, 5, 4, generator=gen(9), dtype=F64)
    mean = z.mean((-2, -1))
    assert_close(spatially_constant_fraction(z), 20 * (mean**2).sum() / (z**2).sum())
    const = torch.ones(2, 3, 7, dtype=F64) * torch.randn(2, 3, 1, generator=gen(10), dtype=F64)
    assert_close(spatially_constant_fraction(const), torch.tensor(1.0, dtype=F64))


def test_kernel_larger_than_signal_is_refused():
    with pytest.raises(ValueError, match=r"kernel_size \(20,\).*signal \(16,\)"):
        CircularCNN([1, 2], 16, kernel_size=20)
    with pytest.raises(ValueError, match=r"kernel size \(9,\) is larger than the signal \(8,\)"):
        circular_conv(torch.zeros(1, 1, 8), torch.zeros(1, 1, 9))
    with pytest.raises(ValueError, match="kernel size"):
        stacked_frequency_spectra(torch.zeros(2, 1, 1, 9), 8)


def test_rank_one_target_blocks():
    kernel, blocks = rank_one_frequency_target(16, 4, (0, 3), (2.0, 1.5), np.random.default_rng(0))
    got = conv_frequency_blocks(torch.from_numpy(kernel), 16)
    assert_close(got, torch.from_numpy(blocks))
    s = singular_values(got)
    kept = {0, 3, 13}
    for m in range(16):
        want = 1 if m in kept else 0
        assert int((s[m] > 1e-9).sum()) == want
    assert_close(s[3, 0], torch.tensor(1.5, dtype=F64))


# ---- layer-wise NTK ---------------------------------------------------------------------

REFERENCE = {  # docs/results.md, d = 10, L = 5: μ_k/μ_1 for k = 2, 3, 4, 6, 8 (as printed)
    1: ("0.207", "0.0316", "0.0075", "6.0e-4", "8.2e-5"),
    2: ("0.147", "0.0227", "0.0047", "3.6e-4", "4.8e-5"),
    3: ("0.128", "0.0174", "0.0035", "2.5e-4", "3.3e-5"),
    4: ("0.116", "0.0138", "0.0027", "1.7e-4", "2.1e-5"),
    5: ("0.105", "0.0101", "0.0017", "8e-5", "7e-6"),
}


def _last_unit(printed: str) -> float:
    mant, _, exp = printed.lower().partition("e")
    decimals = len(mant.partition(".")[2])
    return 10.0 ** (-decimals + (int(exp) if exp else 0))


def test_reference_table_to_two_significant_digits():
    """|got − table| <= half a unit of the 2nd significant digit + half a unit of the table's
    own last printed digit (the table is itself rounded: 0.00265 was printed 0.0027)."""
    mu = layerwise_ntk_eigenvalues(10, 5, [1, 2, 3, 4, 6, 8])
    ratios = mu[:, 1:] / mu[:, :1]
    for l, row in REFERENCE.items():
        for got, printed in zip(ratios[l - 1], row):
            want = float(printed)
            unit2 = 10.0 ** (math.floor(math.log10(want)) - 1)
            assert abs(got - want) <= 0.5 * unit2 + 0.5 * _last_unit(printed), (l, got, printed)
    assert np.all(np.diff(ratios, axis=0) < 0)  # non-increasing in ℓ (strictly, here)


@pytest.mark.parametrize("d", [3, 10, 50])
def test_quadrature_on_exponential_kernel_with_bessel_coefficients(d):
    """e^{zt} = Γ(λ)(z/2)^{−λ} Σ_k (k + λ) I_{k+λ}(z) C_k^λ(t): μ_k = a_k·h_k/C_k^λ(1)."""
    from scipy.special import eval_gegenbauer, gamma, gammaln, iv

    lam, z = (d - 2) / 2, 1.3
    ks = [0, 1, 2, 5]
    mu = gegenbauer_eigenvalues(lambda t: np.exp(z * t), d, ks)
    for k, m in zip(ks, mu):
        a_k = gamma(lam) * (z / 2) ** (-lam) * (k + lam) * iv(k + lam, z)
        log_h = (math.log(math.pi) + (1 - 2 * lam) * math.log(2) + gammaln(k + 2 * lam)
                 - gammaln(k + 1) - math.log(k + lam) - 2 * gammaln(lam))  # fmt: skip
        want = a_k * math.exp(log_h) / eval_gegenbauer(k, lam, 1.0)
        assert m == pytest.approx(want, rel=1e-10)


def test_layer_kernels_are_one_at_t_equal_one_and_sum_is_ntk_recursion():
    t = np.linspace(-1, 1, 11)
    th = relu_ntk_layer_kernels(t, 3)
    assert_close(torch.from_numpy(th[:, -1]), torch.ones(3, dtype=F64))
    # standard recursion Θ^(1) = Σ^(0), Θ^(k+1) = Θ^(k)·Σ̇^(k) + Σ^(k)
    k1 = (np.sqrt(1 - t * t) + t * (np.pi - np.arccos(t))) / np.pi
    s1, s2 = k1, (np.sqrt(1 - k1**2) + k1 * (np.pi - np.arccos(k1))) / np.pi
    theta = t
    theta = theta * (np.pi - np.arccos(t)) / np.pi + s1
    theta = theta * (np.pi - np.arccos(s1)) / np.pi + s2
    assert np.allclose(th.sum(0), theta)


def _tiny_net(widths, seed):
    g = gen(seed)
    return [torch.randn(b, a, generator=g, dtype=F64) for a, b in itertools.pairwise(widths)]


@pytest.mark.parametrize("param", ["ntk", "standard"])
def test_finite_width_grams_equal_explicit_jacobian_gram(param):
    ws = _tiny_net([4, 6, 5, 1], 11)
    x = torch.randn(7, 4, generator=gen(12), dtype=F64)
    x = x / x.norm(dim=1, keepdim=True)
    scales = [1.0] + [1 / math.sqrt(w.shape[1]) for w in ws[1:]]

    def f(params, xi):
        h = xi
        for l, (w, c) in enumerate(zip(params, scales)):
            z = c * (w @ h) if param == "ntk" else w @ h
            h = math.sqrt(2) * torch.relu(z) if l < len(params) - 1 else z
        return h[0]

    # "standard": the same function, parametrized by V_ℓ = c_ℓ W_ℓ
    params = ws if param == "ntk" else [c * w for w, c in zip(ws, scales)]
    jac = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0))(params, x)
    grams = layerwise_ntk_grams(ws, x, parametrization=param)
    for l, j in enumerate(jac):
        j = j.reshape(7, -1)
        assert_close(grams[l], j @ j.T)


def test_wide_net_grams_approach_the_analytic_kernels():
    g = gen(13)
    n, width, depth = 6, 4000, 3
    x = torch.randn(n, 5, generator=g, dtype=F64)
    x = x / x.norm(dim=1, keepdim=True)
    dims = [5, width, width, 1]
    ws = [torch.randn(b, a, generator=g, dtype=F64) for a, b in itertools.pairwise(dims)]
    grams = layerwise_ntk_grams(ws, x)
    want = relu_ntk_layer_kernels(torch.clamp(x @ x.T, -1, 1).numpy(), depth)
    assert np.abs(grams.numpy() - want).max() < 0.15


def test_layer_shares_sum_to_one_and_check_shapes():
    grams = torch.stack([torch.eye(3, dtype=F64), 2 * torch.eye(3, dtype=F64)])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=F64)
    assert_close(layer_shares(grams, y), torch.tensor([[1 / 3, 1 / 3], [2 / 3, 2 / 3]], dtype=F64))
    with pytest.raises(ValueError, match="rows"):
        layer_shares(grams, torch.ones(4, dtype=F64))


# ---- Matérn GPs and compositional data --------------------------------------------------


def test_matern_matches_closed_forms_and_scikit_learn():
    from sklearn.gaussian_process.kernels import Matern

    r = np.linspace(0, 3, 31)
    assert np.allclose(matern_kernel(r, 0.5), np.exp(-r))
    z = math.sqrt(3) * r
    assert np.allclose(matern_kernel(r, 1.5), (1 + z) * np.exp(-z))
    z = math.sqrt(5) * r
    assert np.allclose(matern_kernel(r, 2.5), (1 + z + z * z / 3) * np.exp(-z))
    x = np.random.default_rng(0).standard_normal((12, 3))
    for nu in (1.0, 3.7, 8.0):
        want = Matern(length_scale=math.sqrt(3), nu=nu)(x)  # RMS distance = ‖·‖/√3
        assert np.allclose(matern_kernel(rms_distances(x), nu), want, atol=1e-12)


@pytest.mark.parametrize("nu", [0.5, 1.0, 8.0])
def test_tabulated_matern_is_within_2e9_of_direct(nu):
    r = np.random.default_rng(4).uniform(0, 6, (1 << 18) + 1)
    r[:3] = (0.0, 1e-9, 6.0)
    assert np.abs(matern_kernel_tabulated(r, nu) - matern_kernel(r, nu)).max() < 2e-9


@pytest.mark.parametrize("nu", [0, -1.5, float("nan")])
def test_bad_nu_is_refused(nu):
    with pytest.raises(ValueError, match="nu must be a finite number > 0"):
        matern_kernel(np.ones(2), nu)
    with pytest.raises(ValueError, match="nu"):
        compositional_data(10, nu, 1.0, np.random.default_rng(0))


def test_non_positive_definite_after_jitter_is_refused():
    x = np.linspace(0, 1, 300)[:, None]  # smooth kernel on dense points: singular in float64
    with pytest.raises(ValueError, match=r"nu=10.0.*jitter=0.*smallest eigenvalue"):
        sample_gp(x, 10.0, 1, np.random.default_rng(0), jitter=0.0)


def test_gp_sample_covariance_is_the_kernel():
    x = np.random.default_rng(1).standard_normal((4, 2))
    y = sample_gp(x, 1.0, 40000, np.random.default_rng(2), jitter=0.0)
    want = matern_kernel(rms_distances(x), 1.0)
    assert np.abs(np.cov(y, bias=True) - want).max() < 0.03


def test_compositional_data_shapes():
    data = compositional_data(50, 2.0, 1.0, np.random.default_rng(3))
    assert data.x.shape == (50, 15) and data.z.shape == (50, 3) and data.y.shape == (50, 20)


# ---- AccNets and exponents --------------------------------------------------------------


def test_accnet_ensemble_members_equal_single_nets():
    gens = [gen(20), gen(21)]
    ens = AccNetEnsemble(5, 7, 2, 3, 3, generators=gens)
    x = torch.randn(4, 5, generator=gen(22))
    out = ens(x)
    for e, s in enumerate((20, 21)):
        single = AccNet(5, 7, 2, 3, 3, generator=gen(s))
        assert_close(out[e], single(x))
        assert_close(ens.member(e)(x), single(x))
    assert [tuple(w.shape) for w in ens.weights] == [(2, 7, 5), (2, 2, 7), (2, 7, 2),
                                                     (2, 2, 7), (2, 7, 2), (2, 3, 7)]  # fmt: skip


def test_accnet_narrow_relu_switch():
    x = torch.randn(8, 3, generator=gen(23))
    lin = AccNet(3, 5, 2, 1, 2, narrow_relu=False, generator=gen(24))
    w, b = lin.weights, lin.biases
    h = torch.relu(x @ w[0].T + b[0]) @ w[1].T + b[1]  # no σ on the narrow output
    want = torch.relu(h @ w[2].T + b[2]) @ w[3].T + b[3]
    assert_close(lin(x), want)
    relu = AccNet(3, 5, 2, 1, 2, generator=gen(24))
    want = torch.relu(torch.relu(h) @ w[2].T + b[2]) @ w[3].T + b[3]
    assert_close(relu(x), want)


def test_scaling_exponent_recovers_a_power_law_and_refuses_bad_input():
    n = np.array([100, 300, 1000, 3000.0])
    fit = scaling_exponent(n, 5.0 * n**-0.37)
    assert fit.exponent == pytest.approx(0.37) and fit.r2 == pytest.approx(1.0)
    assert fit.intercept == pytest.approx(math.log(5.0))
    with pytest.raises(ValueError, match="> 0"):
        scaling_exponent([1, 2], [0.5, 0.0])
    with pytest.raises(ValueError, match="two distinct"):
        scaling_exponent([5, 5], [1.0, 2.0])
