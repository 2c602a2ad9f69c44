"""Leaky ResNets, MLP norms and autoencoders against hand-written references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rankscope.models import LeakyResNet, adaptive_steps, autoencoder, step_sizes
from rankscope.models.mlp import MLP, l2_params_for
from rankscope.train import Diverged, gradient_norm, train


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_step_schemes_and_the_leak_constraint():
    for scheme in ("equidistant", "irregular", "adaptive"):
        rho = step_sizes(scheme, 10, 4.0, irregularity=0.8)
        assert float(rho.sum()) == pytest.approx(1.0) and bool((rho > 0).all())
    irr = step_sizes("irregular", 10, 1.0, irregularity=0.8)
    assert float(irr[4]) > float(irr[0])  # longer steps in the middle
    with pytest.raises(ValueError, match=r"ρ_ℓ·L̃ must be < 1.*layer 1.*L̃ = 5"):
        step_sizes("equidistant", 5, 5.0)
    with pytest.raises(ValueError, match="ρ_ℓ·L̃"):
        LeakyResNet(3, 3, width=4, depth=3, leak=4.0, generator=_g())
    with pytest.raises(ValueError, match="lambda_convention"):
        LeakyResNet(3, 3, width=4, depth=8, leak=1.0, lambda_convention="x", generator=_g())


def test_forward_matches_numpy_recursion():
    net = LeakyResNet(3, 2, width=5, depth=4, leak=2.0, steps="irregular", generator=_g(1))
    x = torch.randn(7, 3, generator=_g(2), dtype=torch.float64)
    a = x.numpy() @ net.u.detach().numpy().T
    for l, w in enumerate(net.weights):
        r = float(net.rho[l])
        s = np.hstack([np.maximum(a, 0), np.ones((7, 1))])
        a = (1 - r * 2.0) * a + r * s @ w.detach().numpy().T
    np.testing.assert_allclose(net(x).detach().numpy(), a @ net.v.detach().numpy().T, rtol=1e-12)


def test_penalty_and_lambda_conventions():
    kw = dict(width=4, depth=6, leak=3.0, lam=1e-2, generator=_g(3))
    over = LeakyResNet(2, 2, lambda_convention="lambda_over_Ltilde", **kw)
    plain = LeakyResNet(2, 2, lambda_convention="lambda", **kw)
    assert over.lam_eff == pytest.approx(3e-2) and plain.lam_eff == pytest.approx(1e-2)
    ref = sum(
        float(over.rho[l]) * float((w.detach() ** 2).sum()) for l, w in enumerate(over.weights)
    )
    assert float(over.penalty().detach()) == pytest.approx(3e-2 / 6.0 * ref, rel=1e-12)


def test_backward_variables_and_the_critical_point_identity():
    lam, leak = 0.1, 2.0
    net = LeakyResNet(
        4,
        4,
        width=4,
        depth=5,
        leak=leak,
        lam=lam,
        lambda_convention="lambda",
        input_map="identity",
        output_map="identity",
        generator=_g(4),
    )
    x = torch.randn(9, 4, generator=_g(5), dtype=torch.float64)
    y = torch.randn(9, 4, generator=_g(6), dtype=torch.float64)
    reps, bs = net.backward_variables(x, y)
    # B_1 = (2/(λN))(f*(X) − A_1) with identity output map (2405.17573)
    torch.testing.assert_close(bs[-1], 2 / (lam * 9) * (y - reps[-1]))
    # ∂J/∂W_ℓ = (λρ_ℓ/L̃)(W_ℓ − L̃ B_ℓᵀσ̃(A_{ℓ−1})): zero iff W_ℓ = L̃ B_ℓ σ̃(A_{ℓ−1})ᵀ
    grads = torch.autograd.grad(net.objective(x, y), list(net.weights))
    for l, (w, g) in enumerate(zip(net.weights, grads, strict=True)):
        s = torch.cat([torch.relu(reps[l]), torch.ones(9, 1, dtype=torch.float64)], 1)
        ref = lam * float(net.rho[l]) / leak * (w.detach() - leak * bs[l + 1].mT @ s)
        torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-12)


def test_adaptive_update_equalizes_relative_change_and_checks_the_leak():
    rho = torch.full((4,), 0.25, dtype=torch.float64)
    base = torch.ones(3, 2, dtype=torch.float64)
    reps = [base]
    for step in (1.0, 2.0, 4.0, 8.0):  # relative changes grow by 2x per layer
        reps.append(reps[-1] + step * base * 1e-3)
    new = adaptive_steps(reps, rho, 1.0)
    rel = [
        float(torch.linalg.vector_norm(reps[l] - reps[l - 1]) / torch.linalg.vector_norm(reps[l]))
        / float(rho[l - 1])
        * float(new[l - 1])
        for l in range(1, 5)
    ]
    assert max(rel) / min(rel) == pytest.approx(1.0, rel=1e-9)
    assert float(new[0]) > float(new[-1])
    with pytest.raises(ValueError, match="ρ_ℓ·L̃"):
        adaptive_steps(reps, rho, 2.0)  # the first layer would get ρ ≈ 0.53 > 1/L̃


def test_mlp_norm_bias_convention_and_gradient_norm():
    net = MLP([3, 6, 2], bias=True, generator=_g(7), dtype=torch.float64)
    with torch.no_grad():
        for b in net.biases:
            b.fill_(0.5)
    w2 = sum(float((w.detach() ** 2).sum()) for w in net.weights)
    assert float(net.squared_norm(False).detach()) == pytest.approx(w2)
    assert float(net.squared_norm(True).detach()) == pytest.approx(w2 + 0.25 * 8)
    assert sum(net.layer_norms(True)) == pytest.approx(float(net.squared_norm(True).detach()))
    assert l2_params_for(True) == "all" and l2_params_for(False) == "weights"
    x = torch.randn(5, 3, generator=_g(8), dtype=torch.float64)

    def loss(m):
        return (m(x) ** 2).mean()

    got = gradient_norm(net, loss, l2=0.1, l2_params="all")
    obj = loss(net) + 0.1 * net.squared_norm(True)
    ref = math.sqrt(sum(float((g**2).sum()) for g in torch.autograd.grad(obj, net.parameters())))
    assert got == pytest.approx(ref, rel=1e-12)
    assert all(p.grad is None for p in net.parameters())


def test_autoencoder_shape_and_divergence_is_reported():
    net = autoencoder(4, 8, 3, generator=_g(9))
    assert net.dims == [4, 8, 8, 4] and net.biases is not None
    x = torch.randn(16, 4, generator=_g(10), dtype=torch.float64)
    with pytest.raises(Diverged):
        train(net, lambda m: ((m(x) - x) ** 2).mean(), optimizer="gd", lr=1e6, steps=50)
