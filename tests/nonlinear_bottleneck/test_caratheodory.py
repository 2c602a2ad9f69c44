"""Carathéodory pruning: planted cones, redundant generators, exactness of the pruned net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankscope.metrics import min_norm_cost
from rankscope.sparsify import caratheodory_reduce, cone_generators, prune_layer


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _check_conic(v, res):
    assert bool((res.a >= 0).all())
    torch.testing.assert_close(v @ res.a, v.sum(1), atol=1e-10, rtol=1e-10)
    sub = v[:, res.support].numpy()
    assert np.linalg.matrix_rank(sub) == res.support.numel()  # independent active set


def test_redundant_generators_of_a_cone():
    # the cone in R^3 spanned by e1, e2, e3; every other generator is a positive mix of them
    basis = torch.eye(3, dtype=torch.float64)
    mix = torch.rand(3, 12, generator=_g(), dtype=torch.float64)
    v = torch.cat([basis, mix, 2.0 * basis[:, :1]], 1)  # 16 generators, one duplicate
    res = caratheodory_reduce(v)
    _check_conic(v, res)
    assert res.support.numel() <= 3
    assert res.iterations >= 13


def test_planted_duplicates_collapse_to_one():
    u = torch.randn(5, 1, generator=_g(1), dtype=torch.float64)
    v = torch.cat([u, u, 3 * u, 0.5 * u], 1)
    res = caratheodory_reduce(v)
    assert res.support.numel() == 1
    torch.testing.assert_close(v @ res.a, v.sum(1))


def test_independent_generators_are_kept():
    v = torch.randn(6, 4, generator=_g(2), dtype=torch.float64)
    res = caratheodory_reduce(v)
    assert res.support.tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(res.a, torch.ones(4, dtype=torch.float64))


def test_cone_generators_layout():
    z = torch.tensor([[1.0, -2.0], [3.0, 1.0]], dtype=torch.float64)  # N=2 points, 2 neurons
    v = cone_generators(z)
    assert v.shape == (6, 2)  # N(N+1) = 6
    # neuron 0: z = (1, 3): triu(zzᵀ) = (1, 3, 9), σ(z) = z
    assert v[:, 0].tolist() == [1.0, 3.0, 9.0, 1.0, 3.0, 9.0]
    # neuron 1: z = (-2, 1): triu(zzᵀ) = (4, -2, 1); σ(z) = (0, 1): (0, 0, 1)
    assert v[:, 1].tolist() == [4.0, -2.0, 1.0, 0.0, 0.0, 1.0]


def _layer_net(n_pts, width, seed):
    g = _g(seed)
    x = torch.randn(n_pts, 3, generator=g, dtype=torch.float64)
    w1 = torch.randn(width, 3, generator=g, dtype=torch.float64)
    b1 = torch.randn(width, generator=g, dtype=torch.float64)
    w2 = torch.randn(2, width, generator=g, dtype=torch.float64)
    b2 = torch.randn(2, generator=g, dtype=torch.float64)
    return x, w1, b1, w2, b2


def test_prune_layer_keeps_grams_and_function():
    n_pts, width = 4, 60  # N(N+1) = 20 < 60
    x, w1, b1, w2, b2 = _layer_net(n_pts, width, 3)
    out = prune_layer(x, w1, b1, w2, b2, dead_tol=None)  # dead neurons change K_ℓ: keep them
    assert out.weight.shape[0] <= n_pts * (n_pts + 1)
    assert out.cone_residual < 1e-10 and out.fit_residual < 1e-9
    z = x @ w1.mT + b1
    z2 = x @ out.weight.mT + out.bias
    torch.testing.assert_close(z2 @ z2.mT, z @ z.mT, atol=1e-8, rtol=1e-10)
    s, s2 = torch.relu(z), torch.relu(z2)
    torch.testing.assert_close(s2 @ s2.mT, s @ s.mT, atol=1e-8, rtol=1e-10)
    f = s @ w2.mT + b2
    f2 = s2 @ out.next_weight.mT + out.next_bias
    torch.testing.assert_close(f2, f, atol=1e-9, rtol=1e-9)
    # the min-norm cost of the next layer is a function of K^σ only: unchanged
    assert float(min_norm_cost(f2, z2)) == pytest.approx(float(min_norm_cost(f, z)), rel=1e-7)


def test_prune_layer_planted_duplicates_and_dead():
    x, w1, b1, w2, b2 = _layer_net(6, 3, 4)
    w1 = torch.cat([w1.repeat(10, 1), torch.zeros(2, 3, dtype=torch.float64)])
    b1 = torch.cat([b1.repeat(10), -torch.ones(2, dtype=torch.float64)])  # 2 dead neurons
    w2 = torch.randn(2, 32, generator=_g(5), dtype=torch.float64)
    out = prune_layer(x, w1, b1, w2, b2)
    assert out.n_dead == 2
    assert out.weight.shape[0] == 3  # one copy of each distinct neuron survives
    assert out.fit_residual < 1e-9


def test_non_homogeneous_activation_is_refused():
    x, w1, b1, w2, b2 = _layer_net(3, 5, 6)
    with pytest.raises(ValueError, match=r"homogeneous.*'tanh'"):
        prune_layer(x, w1, b1, w2, b2, activation="tanh")
    with pytest.raises(ValueError, match="homogeneous"):
        cone_generators(x, activation="gelu")
