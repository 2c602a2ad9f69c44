"""Covariance accumulator, representation ranks, conv reshapes and the cost of identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _metrics_helpers import gen, planted
from torch.testing import assert_close

from rankscope.metrics import (
    CovarianceAccumulator,
    conv_samples,
    cost_of_identity,
    effective_rank,
    numerical_rank,
    representation_metrics,
    representation_rank,
    singular_values,
    stable_rank,
)

F64 = torch.float64


def _data(n=200, d=6, seed=0, mean=50.0):
    x = torch.randn(n, d, generator=gen(seed), dtype=F64) @ torch.randn(
        d, d, generator=gen(seed + 1), dtype=F64
    )
    return x + mean  # a large mean stresses the centring


def test_streaming_equals_one_shot_including_merge():
    x = _data()
    one = CovarianceAccumulator().update(x)
    parts = [CovarianceAccumulator(6) for _ in range(3)]
    for i, chunk in enumerate(torch.split(x, [1, 0, 37, 62, 100])):
        parts[i % 3].update(chunk)
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(CovarianceAccumulator())
    xc = x - x.mean(0)
    for acc in (one, merged):
        assert acc.n == 200
        assert_close(acc.mean, x.mean(0), rtol=1e-13, atol=1e-12)
        assert_close(acc.covariance(), xc.T @ xc / 200, rtol=1e-11, atol=1e-11)
        assert_close(acc.covariance(centre=False), x.T @ x / 200, rtol=1e-12, atol=0)
        assert_close(acc.sum, x.sum(0), rtol=1e-12, atol=1e-9)
        assert_close(acc.sum_outer, x.T @ x, rtol=1e-12, atol=0)
    ref = np.cov(x.numpy().T, bias=True)
    assert_close(one.covariance(), torch.from_numpy(ref), rtol=1e-11, atol=1e-11)


def test_float32_batches_accumulate_in_float64():
    x = _data(mean=0.0)
    acc = CovarianceAccumulator().update(x.float())
    assert acc.covariance().dtype == F64
    ref = x.float().double()
    assert_close(acc.covariance(), torch.cov(ref.T, correction=0), rtol=1e-12, atol=1e-12)


def test_spectrum_is_eigenvalues_and_singular_values_are_sqrt_n_lambda():
    x = _data(n=50, d=4, mean=3.0)
    acc = CovarianceAccumulator().update(x)
    s = singular_values(x - x.mean(0))
    assert_close(acc.spectrum(), s**2 / 50, rtol=1e-10, atol=1e-12)
    assert_close(acc.singular_values(), s, rtol=1e-10, atol=1e-10)


def test_representation_rank_tolerances_on_lambda_and_on_s():
    g = gen(3)
    h = planted(torch.tensor([10.0, 1.0, 0.05]), 100, 8, g) + 7.0  # centred rank 3 plus a mean
    acc = CovarianceAccumulator().update(h)
    hc = h - h.mean(0)
    assert int(representation_rank(acc)) == 3 == int(torch.linalg.matrix_rank(hc))
    assert int(representation_rank(acc, centre=False)) == 4  # the mean direction
    s = singular_values(hc)
    for tau in (0.2, 0.01):  # relative τ acts on s (= τ² on λ)
        assert int(representation_rank(acc, "relative", rtol=tau)) == int(
            numerical_rank(s, "relative", rtol=tau)
        )
    m = representation_metrics(acc, policy="relative", rtol=1e-3)
    assert m["numerical_rank"] == 3 and m["detectable_rank"] == 8 and m["n_samples"] == 100
    assert abs(m["stable_rank"] - float(stable_rank(s))) < 1e-9
    assert abs(m["effective_rank"] - float(effective_rank(s))) < 1e-6  # zeros are ~1e-8·s1
    assert m["variance_dimension"] == 1 and m["saturation"] == 1 / 8


def test_accumulator_errors_name_the_shapes():
    acc = CovarianceAccumulator(4)
    with pytest.raises(ValueError, match="batch has 5 features, this accumulator holds dim=4"):
        acc.update(torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"shape \(B, d\), got \(2, 2, 2\)"):
        acc.update(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="NaN/Inf"):
        acc.update(torch.tensor([[1.0, 2.0, float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="empty"):
        acc.covariance()
    with pytest.raises(TypeError, match="got int"):
        acc.merge(3)
    with pytest.raises(TypeError, match="takes a CovarianceAccumulator, got Tensor"):
        representation_rank(torch.ones(3, 2))


def test_conv_samples_modes():
    z = torch.arange(2 * 3 * 2 * 2, dtype=F64).reshape(2, 3, 2, 2)
    ch = conv_samples(z)
    assert ch.shape == (8, 3)
    assert_close(ch[1], z[0, :, 0, 1])  # sample (b=0, position (0, 1)) holds its 3 channels
    assert conv_samples(z, "flatten").shape == (2, 12)
    with pytest.raises(ValueError, match="unknown conv_mode 'pixel'"):
        conv_samples(z, "pixel")
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\), got \(2, 3\)"):
        conv_samples(z[:, :, 0, 0])


# ---- cost of identity -----------------------------------------------------------------------


def _coi_pinv(a: torch.Tensor, bias_row: bool) -> float:
    """Tr[A K⁺ Aᵀ] with a pseudo-inverse, in the formula's (w, N) layout."""
    at = a.T  # (w, N)
    s = torch.relu(at)
    if bias_row:
        s = torch.cat([s, torch.ones(1, at.shape[1], dtype=at.dtype)])
    k = s.T @ s
    return float(torch.trace(at @ torch.linalg.pinv(k, hermitian=True) @ at.T))


def test_coi_equals_rank_for_nonnegative_a_without_bias():
    a = torch.relu(torch.randn(40, 5, generator=gen(4), dtype=F64)) @ torch.diag(
        torch.tensor([1.0, 2, 0, 3, 1], dtype=F64)
    )
    got = cost_of_identity(a, bias_row=False, gamma0=1e-10)
    assert_close(got, torch.tensor(4.0, dtype=F64), atol=1e-4, rtol=0)


def test_coi_closed_form_pinv_form_and_lower_bound():
    """A = [p, −p, q, 2q] with p, q ≥ 0: σ(A) = [p, 0, q, 2q] and the cheapest W has cost
    1 (p) + 1 (−p) + 1/5 (q = (q + 2·2q)/5) + 4/5 (2q) = 3."""
    g = gen(5)
    p, q = torch.rand(2, 20, 1, generator=g, dtype=F64)
    a = torch.cat([p, -p, q, 2 * q], dim=1)  # (N=20, w=4)
    coi = cost_of_identity(a, bias_row=False, gamma0=1e-10)
    assert_close(coi, torch.tensor(3.0, dtype=F64), rtol=1e-5, atol=0)
    for bias in (False, True):
        exact = _coi_pinv(a, bias)
        approx = float(cost_of_identity(a, bias_row=bias, gamma0=1e-10))
        stable = float(cost_of_identity(a, bias_row=bias))
        assert abs(approx - exact) < 1e-5 * exact
        assert stable <= approx + 1e-9  # adding γI only lowers the trace
    s = singular_values(a)
    assert 3.0 >= float(s.sum() ** 2 / (s**2).sum()) >= float((s**2).sum() / s[0] ** 2)


def test_coi_methods_agree_and_batch():
    a = torch.randn(3, 12, 5, generator=gen(6), dtype=F64)
    by_samples = cost_of_identity(a, method="samples")
    by_features = cost_of_identity(a, method="features")
    assert_close(by_samples, by_features, rtol=1e-8, atol=0)
    assert by_samples.shape == (3,)
    with pytest.raises(ValueError, match="gamma0 must be > 0"):
        cost_of_identity(a, gamma0=0.0)
