"""Bottleneck metrics against independent numpy/scipy references and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from rankscope.metrics import (
    activation_form,
    cost_of_identity,
    count_above,
    fit_line,
    hamiltonian,
    hamiltonian_terms,
    jacobian_log_pdet,
    kernel_norm_sq,
    middle_layers,
    min_norm_cost,
    min_norm_weights,
    near_unit_count,
    nearest_distance,
    negative_mass,
    tail_energy,
    weight_count_rank,
)
from rankscope.models import MLP


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _sig(a):  # numpy σ̃(A) in column layout: (w+1, N)
    return np.vstack([np.maximum(a, 0), np.ones((1, a.shape[1]))])


def test_kernel_norm_matches_numpy_and_coi():
    a = torch.randn(7, 4, generator=_g(), dtype=torch.float64)  # N=7 rows, w=4
    m = torch.randn(7, 3, generator=_g(1), dtype=torch.float64)
    s = _sig(a.numpy().T)
    k = s.T @ s
    gamma = 1e-3 * np.linalg.norm(s, 2) ** 2
    mc = m.numpy().T
    ref = np.trace(mc @ np.linalg.solve(k + gamma * np.eye(7), mc.T))
    assert float(kernel_norm_sq(m, a)) == pytest.approx(ref, rel=1e-10)
    assert float(kernel_norm_sq(a, a)) == pytest.approx(float(cost_of_identity(a)), rel=1e-10)
    with pytest.raises(ValueError, match="gamma0"):
        kernel_norm_sq(m, a, gamma0=0.0)
    with pytest.raises(ValueError, match="sample dims"):
        kernel_norm_sq(m[:3], a)


def test_hamiltonian_numpy_and_kinetic_plus_potential():
    leak = 3.0
    a = torch.randn(5, 8, generator=_g(2), dtype=torch.float64)  # N=5 <= w+1: K invertible
    b = torch.randn(5, 8, generator=_g(3), dtype=torch.float64)
    ac, bc = a.numpy().T, b.numpy().T
    s = _sig(ac)
    ref = leak / 2 * np.linalg.norm(bc @ s.T) ** 2 - leak * np.trace(bc @ ac.T)
    assert float(hamiltonian(a, b, leak)) == pytest.approx(ref, rel=1e-12)
    # at critical points ∂_pA = L̃(B K − A); then kinetic + potential = H (definitions §13)
    da = torch.from_numpy((leak * (bc @ (s.T @ s) - ac)).T)
    kin, pot = hamiltonian_terms(a, da, leak, gamma0=1e-13)
    assert float(kin + pot) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="leak"):
        hamiltonian(a, b, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        hamiltonian(a, b[:, :3], 1.0)


def test_min_norm_weights_equal_numpy_lstsq():
    prev = torch.randn(6, 9, generator=_g(4), dtype=torch.float64)  # N=6 < 10 features
    w0 = torch.randn(4, 10, generator=_g(5), dtype=torch.float64)
    f = torch.cat([torch.relu(prev), torch.ones(6, 1, dtype=torch.float64)], 1)
    z = f @ w0.mT
    w = min_norm_weights(z, prev)
    ref = np.linalg.lstsq(f.numpy(), z.numpy(), rcond=None)[0].T  # min-norm solution
    np.testing.assert_allclose(w.numpy(), ref, atol=1e-10)
    np.testing.assert_allclose((f @ w.mT).numpy(), z.numpy(), atol=1e-10)
    assert float(min_norm_cost(z, prev)) <= float((w0**2).sum())
    with pytest.raises(ValueError, match="rcond"):
        min_norm_weights(z, prev, rcond=0.0)


def test_activation_form_equals_loss_at_min_norm_weights():
    torch.manual_seed(0)
    net = MLP([3, 20, 15, 2], bias=True, generator=_g(6), dtype=torch.float64)
    x = torch.randn(8, 3, generator=_g(7), dtype=torch.float64)
    y = torch.randn(8, 2, generator=_g(8), dtype=torch.float64)
    lam = 1e-2
    with torch.no_grad():
        out, _, zs = net.forward_with_hidden(x)
        data = float(((out - y) ** 2).mean())
        loss = data + lam * float(net.squared_norm(True))
        form = float(activation_form(x, zs, data, lam))
        assert form <= loss + 1e-12  # a lower bound everywhere
        prev, act = x, False
        for l, z in enumerate(zs):  # replace every layer by its min-norm solution
            w = min_norm_weights(z, prev, activation=act)
            net.weights[l].copy_(w[:, :-1])
            net.biases[l].copy_(w[:, -1])
            prev, act = z, True
        out2, _, zs2 = net.forward_with_hidden(x)
        for z1, z2 in zip(zs, zs2, strict=True):
            torch.testing.assert_close(z1, z2, atol=1e-9, rtol=0)
        loss2 = float(((out2 - y) ** 2).mean()) + lam * float(net.squared_norm(True))
    assert form == pytest.approx(loss2, rel=1e-9)


def test_rank_proxies():
    assert middle_layers(12) == list(range(3, 10))
    assert middle_layers(1) == [1]
    with pytest.raises(ValueError, match="depth"):
        middle_layers(0)
    s = torch.tensor([[1.0, 0.5, 0.05], [2.0, 0.1, 0.1]])
    assert count_above(s).tolist() == [2, 1]
    assert float(tail_energy(torch.tensor([3.0, 2.0, 1.0]), 1)) == pytest.approx(5.0)
    spectra = [torch.tensor([1.0, 1.0, 1.0])] + [torch.tensor([1.0, 0.9, 0.01])] * 6
    assert weight_count_rank(spectra) == 2.0
    with pytest.raises(ValueError, match="tau"):
        count_above(s, tau=1.5)
    sv = torch.tensor([[1.2, 0.9, 0.2], [3.0, 1.0, 0.6]])
    assert near_unit_count(sv, 0.3).tolist() == [2, 1]


def test_jacobian_log_pdet_linear_map():
    a = torch.randn(4, 6, generator=_g(9), dtype=torch.float64)
    a = a[:, :3] @ torch.randn(3, 6, generator=_g(10), dtype=torch.float64)  # rank 3
    x = torch.randn(5, 6, generator=_g(11), dtype=torch.float64)
    s = np.linalg.svd(a.numpy(), compute_uv=False)
    got = jacobian_log_pdet(lambda v: v @ a.mT, x)
    np.testing.assert_allclose(got.numpy(), np.log(s[:3]).sum(), rtol=1e-10)
    got2 = jacobian_log_pdet(lambda v: v @ a.mT, x, rank=2)
    np.testing.assert_allclose(got2.numpy(), np.log(s[:2]).sum(), rtol=1e-10)
    with pytest.raises(ValueError, match="rank"):
        jacobian_log_pdet(lambda v: v @ a.mT, x, rank=9)


def test_fit_line_matches_scipy():
    rng = np.random.default_rng(0)
    x = np.array([3.0, 5, 7, 9, 11])
    y = 2.1 * x + 4 + rng.normal(0, 0.3, 5)
    fit, ref = fit_line(x, y), scipy.stats.linregress(x, y)
    assert fit.slope == pytest.approx(ref.slope, rel=1e-12)
    assert fit.intercept == pytest.approx(ref.intercept, rel=1e-12)
    assert fit.slope_stderr == pytest.approx(ref.stderr, rel=1e-10)
    assert fit.intercept_stderr == pytest.approx(ref.intercept_stderr, rel=1e-10)
    assert fit.r2 == pytest.approx(ref.rvalue**2, rel=1e-10)
    with pytest.raises(ValueError, match="distinct"):
        fit_line([1, 1, 1], [1, 2, 3])


def test_nearest_distance_and_negative_mass():
    p = torch.randn(30, 3, generator=_g(12), dtype=torch.float64)
    r = torch.randn(50, 3, generator=_g(13), dtype=torch.float64)
    ref = np.sqrt(((p.numpy()[:, None] - r.numpy()[None]) ** 2).sum(-1)).min(1)
    np.testing.assert_allclose(nearest_distance(p, r, chunk=7).numpy(), ref, rtol=1e-12)
    a = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    assert float(negative_mass(a)) == pytest.approx(0.25)
    assert float(negative_mass(torch.zeros(2, 2))) == 0.0
    with pytest.raises(ValueError, match="share d"):
        nearest_distance(p, r[:, :2])
