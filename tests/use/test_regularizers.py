"""rankscope.regularizers: gradients vs finite differences, the factor-penalty floor, the
proximal nuclear step on matrix completion, and a rank penalty on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rankscope.metrics import numerical_rank, singular_values
from rankscope.regularizers import (
    ProximalNuclear,
    RankPenalty,
    depth_penalty,
    factor_penalty,
    factor_penalty_floor,
    nuclear_penalty,
    prox_nuclear,
    schatten_penalty,
)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("p", [1.0, 2.0 / 3.0, 0.5, 2.0])
def test_schatten_penalty_gradient_matches_finite_differences(p):
    w = torch.randn(5, 4, generator=_gen(0), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: schatten_penalty(x, p, eps=1e-2), (w,))


def test_gradient_is_finite_at_a_rank_deficient_matrix():
    u = torch.randn(6, 2, generator=_gen(1), dtype=torch.float64)
    w = (u @ u.T).requires_grad_(True)  # rank 2 of 6: four zero singular values
    assert torch.autograd.gradcheck(lambda x: schatten_penalty(x, 0.5, eps=1e-1), (w,))
    nuclear_penalty(w, eps=1e-3).backward()
    assert torch.isfinite(w.grad).all()


def test_values_against_numpy():
    w = torch.randn(7, 3, generator=_gen(2), dtype=torch.float64)
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    eps = 1e-3
    assert float(nuclear_penalty(w, eps=eps)) == pytest.approx(np.sqrt(s**2 + eps**2).sum())
    want = 3 * ((s**2 + eps**2) ** (1 / 3)).sum()
    assert float(depth_penalty(w, 3, eps=eps)) == pytest.approx(want)


def test_balanced_factors_attain_the_factor_penalty_floor():
    """Σ‖W_l‖² ≥ L Σ s^{2/L}, with equality for W_l = U Σ^{1/L} U'ᵀ-style balanced factors."""
    a = torch.randn(4, 4, generator=_gen(3), dtype=torch.float64)
    u, s, vh = torch.linalg.svd(a)
    depth = 3
    root = torch.diag(s ** (1 / depth))
    factors = [root @ vh, root, u @ root]  # W_3 W_2 W_1 = A
    torch.testing.assert_close(factors[2] @ factors[1] @ factors[0], a)
    floor = factor_penalty_floor(a, depth)
    assert float(factor_penalty(factors)) == pytest.approx(float(floor))
    other = [factors[0] * 2, factors[1], factors[2] / 2]  # same product, unbalanced
    assert float(factor_penalty(other)) > float(floor)


def test_prox_is_soft_thresholding():
    w = torch.randn(6, 5, generator=_gen(4), dtype=torch.float64)
    out, rank = prox_nuclear(w, 1.0)
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    np.testing.assert_allclose(
        np.linalg.svd(out.numpy(), compute_uv=False)[:rank], (s - 1.0)[:rank], atol=1e-10
    )
    assert rank == int((s > 1.0).sum())


def test_proximal_nuclear_step_recovers_a_planted_rank():
    """Matrix completion: 30×30 rank 2, 50% of entries seen; proximal gradient finds rank 2."""
    g = _gen(5)
    m = torch.randn(30, 2, generator=g, dtype=torch.float64) @ torch.randn(
        2, 30, generator=g, dtype=torch.float64
    )
    seen = torch.rand(30, 30, generator=g) < 0.5
    w = torch.zeros(30, 30, dtype=torch.float64)
    lr, lam = 1.0, 0.5
    for _ in range(400):
        grad = torch.where(seen, w - m, 0.0)  # ∇ ½‖P_Ω(W − M)‖²
        w, rank = prox_nuclear(w - lr * grad, lr * lam)
    assert rank == 2
    rel = float(torch.linalg.norm(w - m) / torch.linalg.norm(m))
    assert rel < 0.05


def test_proximal_nuclear_on_a_module_and_layer_patterns():
    model = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))
    prox = ProximalNuclear(strength=100.0, lr=1.0, layers="0")
    ranks = prox.step(model)
    assert ranks == {"0": 0}
    assert torch.count_nonzero(model[0].weight) == 0 and torch.count_nonzero(model[2].weight) > 0
    with pytest.raises(ValueError, match="matches no layer"):
        ProximalNuclear(1.0, 1.0, layers="enc*").step(model)


def test_bad_arguments():
    with pytest.raises(ValueError, match="Schatten p must be a number > 0"):
        schatten_penalty(torch.eye(3), 0)
    with pytest.raises(ValueError, match=">= 2 dims"):
        nuclear_penalty(torch.ones(3))
    with pytest.raises(ValueError, match="tau must be"):
        prox_nuclear(torch.eye(2), -1.0)


def test_rank_penalty_on_digits_lowers_rank_at_comparable_accuracy():
    pytest.importorskip("sklearn")
    from rankscope.experiments.compression.digits import DigitsData, DigitsNet, digits_data
    from rankscope.train import cross_entropy, train

    data: DigitsData = digits_data(seed=0)
    out = {}
    for strength in (0.0, 3e-3):
        model = DigitsNet("mlp", (64, 64)).build(_gen(0))
        pen = RankPenalty(strength, p=1.0, layers=["2"])

        def loss(m, batch, pen=pen):
            return cross_entropy(m(batch[0]), batch[1]) + pen(m)

        train(model, loss, optimizer="adam", lr=3e-3, steps=300, data=(data.x_train, data.y_train))
        with torch.no_grad():
            acc = float((model(data.x_test).argmax(1) == data.y_test).double().mean())
        s = singular_values(model[2].weight.detach())
        out[strength] = (int(numerical_rank(s, "relative", rtol=1e-2)), acc)
    (r0, a0), (r1, a1) = out[0.0], out[3e-3]
    assert r1 < r0 / 2, out
    assert a1 > a0 - 0.03, out
