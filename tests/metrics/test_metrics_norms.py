"""Norms, Schatten, log-pdet, distance to rank K, depth expansion, RankMe (§4, §6-§9)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _metrics_helpers import gen, planted
from torch.testing import assert_close

from rankscope.metrics import (
    RANKME_VARIANTS,
    depth_expansion,
    distance_to_rank,
    frobenius_norm,
    linear_representation_cost,
    log_pdet,
    nuclear_norm,
    operator_norm,
    rankme,
    rankme_all,
    rankme_from_spectrum,
    schatten_norm,
    schatten_power,
    singular_values,
    smoothed_schatten_power,
)

F64 = torch.float64


def test_norms_match_torch_linalg():
    x = torch.randn(2, 6, 4, generator=gen(0), dtype=F64)
    s = singular_values(x)
    assert_close(nuclear_norm(s), torch.linalg.matrix_norm(x, "nuc"))
    assert_close(frobenius_norm(s), torch.linalg.matrix_norm(x, "fro"))
    assert_close(operator_norm(s), torch.linalg.matrix_norm(x, 2))
    assert_close(schatten_norm(s, 1), nuclear_norm(s))
    assert_close(schatten_norm(s, 2), frobenius_norm(s))


def test_schatten_on_planted_spectrum_and_zero_tol():
    s_true = torch.tensor([4.0, 1.0, 0.25], dtype=F64)
    s = singular_values(planted(s_true, 7, 5, gen(1)))  # two numerical zeros ~1e-16
    assert_close(schatten_power(s, 0.5, shape=(7, 5)), torch.tensor(3.5, dtype=F64))
    assert_close(schatten_norm(s, 0.5, shape=(7, 5)), torch.tensor(12.25, dtype=F64))
    # without the tolerance the numerical zeros add roughly sqrt(1e-16) each
    noisy = torch.tensor([4.0, 1.0, 0.25, 1e-8, 1e-8], dtype=F64)
    assert_close(schatten_power(noisy, 0.5, zero_tol=0.0), torch.tensor(3.5002, dtype=F64))
    assert_close(schatten_power(noisy, 0.5, zero_tol=1e-6), torch.tensor(3.5, dtype=F64))
    # p -> 0: Σ s^p -> rank
    assert_close(
        schatten_power(s, 1e-6, shape=(7, 5)), torch.tensor(3.0, dtype=F64), rtol=1e-5, atol=0
    )


def test_schatten_quasi_norm_breaks_triangle_inequality():
    a = torch.diag(torch.tensor([1.0, 0.0], dtype=F64))
    b = torch.diag(torch.tensor([0.0, 1.0], dtype=F64))
    sp = lambda x: schatten_norm(singular_values(x), 0.5, shape=(2, 2))  # noqa: E731
    assert sp(a + b) > sp(a) + sp(b)  # 4 > 2


def test_smoothed_penalty_limits_and_gradient_at_zero():
    s = torch.tensor([2.0, 0.0], dtype=F64, requires_grad=True)
    val = smoothed_schatten_power(s, 0.5, delta=1e-8)
    assert_close(val, torch.tensor(math.sqrt(2.0) + 1e-4, dtype=F64))
    (g,) = torch.autograd.grad(smoothed_schatten_power(s, 0.5, delta=1e-3), s)
    assert torch.isfinite(g).all() and g[1] == 0


def test_log_pdet_matches_slogdet_and_drops_zeros():
    x = torch.randn(5, 5, generator=gen(2), dtype=F64)
    assert_close(log_pdet(singular_values(x)), torch.linalg.slogdet(x).logabsdet)
    s_true = torch.tensor([1e150, 1e140, 1e-3], dtype=F64)  # the product overflows float64
    s = singular_values(planted(s_true, 4, 4, gen(3)))
    want = math.log(1e150) + math.log(1e140)  # 1e-3 is below 4·eps·1e150
    assert_close(log_pdet(s, shape=(4, 4)), torch.tensor(want, dtype=F64))
    both = log_pdet(s_true, "relative", rtol=1e-200)  # the exact spectrum, nothing dropped
    assert_close(both, torch.tensor(want + math.log(1e-3), dtype=F64))
    assert log_pdet(torch.zeros(3, dtype=F64), shape=(3, 3)) == 0


def test_distance_to_rank_is_eckart_young():
    x = torch.randn(6, 4, generator=gen(4), dtype=F64)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    for k in range(5):
        best = (u[:, :k] * s[:k]) @ vh[:k]
        assert_close(distance_to_rank(s, k), torch.linalg.matrix_norm(x - best))
        assert_close(
            distance_to_rank(s, k, norm="op"),
            torch.linalg.matrix_norm(x - best, 2),
            atol=1e-12,
            rtol=1e-9,
        )
        rel = torch.linalg.matrix_norm(x - best) / torch.linalg.matrix_norm(x)
        assert_close(distance_to_rank(s, k, norm="relative"), rel)
    with pytest.raises(ValueError, match="unknown norm 'nuc'"):
        distance_to_rank(s, 1, norm="nuc")
    with pytest.raises(ValueError, match="got -1"):
        distance_to_rank(s, -1)


def test_linear_cost_is_min_over_balanced_factorizations():
    """L·Σ s^{2/L} equals Σ‖W_ℓ‖_F² of the balanced factorization W_ℓ = U S^{1/L} ... Vᵀ."""
    a = planted(torch.tensor([3.0, 0.5], dtype=F64), 4, 3, gen(5))
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    depth = 3
    root = torch.diag(s ** (1 / depth))
    ws = [root @ vh, root, u @ root]  # product = U S Vᵀ
    assert_close(ws[2] @ ws[1] @ ws[0], a)
    cost = sum((w**2).sum() for w in ws)
    assert_close(linear_representation_cost(singular_values(a), depth, shape=(4, 3)), cost)


def test_depth_expansion_residual_shrinks_like_inverse_square():
    s = singular_values(planted(torch.tensor([5.0, 2.0, 0.3], dtype=F64), 5, 4, gen(6)))
    e = depth_expansion(s, shape=(5, 4))
    assert int(e.r0) == 3
    assert_close(e.r1, torch.tensor(2 * math.log(5.0 * 2.0 * 0.3), dtype=F64))
    depths = [32, 64, 128, 256, 512]
    resid = torch.stack(
        [(linear_representation_cost(s, L, shape=(5, 4)) - e.cost(L)).abs() for L in depths]
    )
    slopes = torch.diff(resid.log()) / torch.diff(torch.tensor(depths, dtype=F64).log())
    assert_close(slopes, torch.full_like(slopes, -2.0), atol=0.05, rtol=0)


# ---- RankMe ---------------------------------------------------------------------------------


def _reference_rankme(z: np.ndarray, eps: float) -> float:
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_rankme_matches_a_numpy_reference():
    z = torch.randn(40, 6, generator=gen(7), dtype=F64) + 3.0
    for variant, eps in (("rankme", 1e-7), ("rankme_spt", 1e-5)):
        assert math.isclose(
            float(rankme(z, variant)), _reference_rankme(z.numpy(), eps), rel_tol=1e-12
        )
    zc = (z - z.mean(0)).numpy()
    lam = np.linalg.svd(zc, compute_uv=False) ** 2
    p = lam / lam.sum() + 1e-7
    assert math.isclose(
        float(rankme(z, "rankme_cov")), float(np.exp(-(p * np.log(p)).sum())), rel_tol=1e-12
    )


def test_rankme_variants_differ_as_documented():
    z = torch.randn(50, 8, generator=gen(8), dtype=F64) + 5.0  # a large mean
    out = rankme_all(z)
    assert set(out) == set(RANKME_VARIANTS)
    assert out["rankme"] < out["rankme_cov"]  # the mean direction dominates the uncentred one
    assert out["rankme_spt"] > out["rankme"]  # a larger ε biases upward
    assert 0 <= out["rankme_normalized"] <= 1 and 0 <= out["ww_entropy"] <= 1
    flat = torch.ones(4, dtype=F64)
    assert_close(rankme_from_spectrum(flat, "rankme_normalized"), torch.tensor(1.0, dtype=F64))
    assert_close(
        rankme_from_spectrum(flat, "ww_entropy", shape=(4, 4)), torch.tensor(1.0, dtype=F64)
    )
    with pytest.raises(ValueError, match="unknown RankMe variant 'rankmee'"):
        rankme(z, "rankmee")


def test_rankme_max_samples_caps_rows():
    z = torch.randn(30, 5, generator=gen(9), dtype=F64)
    assert_close(rankme(z, max_samples=10), rankme(z[:10]))
