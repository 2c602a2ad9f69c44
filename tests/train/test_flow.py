"""Exact gradient flow against closed forms and conservation laws (docs/results.md)."""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from rankscope.models.linear import balanced_factors, end_to_end
from rankscope.train.errors import Diverged
from rankscope.train.flow import gradient_flow


def _quadratic(k: float):
    return lambda x: 0.5 * k * (x**2).sum()


def test_linear_ode_matches_exponential_decay():
    k, x0 = 1.7, torch.tensor([2.0, -0.5, 1e-3], dtype=torch.float64)
    times = np.linspace(0.0, 3.0, 13)
    sol = gradient_flow(x0, _quadratic(k), (0.0, 3.0), t_eval=times)
    expected = x0.numpy()[None, :] * np.exp(-k * times)[:, None]
    np.testing.assert_allclose(sol.y, expected, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(sol.loss, 0.5 * k * (expected**2).sum(1), rtol=1e-7)
    assert not sol.stopped


def test_stop_at_loss_and_levels_hit_closed_form_times():
    # ½k|x0|² e^{−2kt} = ℓ  ⇔  t = ln(½k|x0|²/ℓ) / (2k)
    k, x0 = 0.8, torch.tensor([1.5, 2.0], dtype=torch.float64)
    l0 = 0.5 * k * float((x0**2).sum())

    def t_at(level: float) -> float:
        return math.log(l0 / level) / (2 * k)

    sol = gradient_flow(
        x0, _quadratic(k), (0.0, 100.0), stop_at_loss=1e-6, loss_levels=(1e-1, 1e-3)
    )
    assert sol.stopped
    assert sol.t[-1] == pytest.approx(t_at(1e-6), rel=1e-7)
    assert sol.loss[-1] == pytest.approx(1e-6, rel=1e-6)
    np.testing.assert_allclose(sol.level_t, [t_at(1e-1), t_at(1e-3)], rtol=1e-7)
    x_level = sol.params_at_level(1e-3)
    assert float(_quadratic(k)(x_level)) == pytest.approx(1e-3, rel=1e-6)


def test_balanced_scalar_factors_follow_logistic():
    # a = b, p = ab: ṗ = 2p(y − p)  ⇒  p(t) = y / (1 + (y/p0 − 1) e^{−2yt})
    y, a0 = 3.0, 1e-2
    p0 = a0 * a0
    params = [torch.tensor(a0, dtype=torch.float64), torch.tensor(a0, dtype=torch.float64)]
    sol = gradient_flow(params, lambda p: 0.5 * (p[0] * p[1] - y) ** 2, (0.0, 4.0))
    p = sol.y[:, 0] * sol.y[:, 1]
    expected = y / (1 + (y / p0 - 1) * np.exp(-2 * y * sol.t))
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-9)
    assert sol.t.size > 20  # every solver step is returned


def test_aligned_depth3_modes_follow_scalar_equation():
    # Balanced, aligned init: each singular value obeys ȧ = L a^{2−2/L}(s − a) (docs/results.md).
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    s_target = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    a0 = torch.tensor([1e-2, 2e-2, 5e-2, 1e-1], dtype=torch.float64)
    target = u @ torch.diag(s_target) @ v.T
    ws = balanced_factors(u @ torch.diag(a0) @ v.T, 3)
    times = np.linspace(0.0, 3.0, 7)
    sol = gradient_flow(
        ws, lambda w: 0.5 * ((end_to_end(w) - target) ** 2).sum(), (0, 3), t_eval=times
    )
    depth = 3

    def scalar(t, a):
        return depth * np.abs(a) ** (2 - 2 / depth) * (s_target.numpy() - a)

    ref = solve_ivp(scalar, (0, 3), a0.numpy(), t_eval=times, rtol=1e-11, atol=1e-14).y.T
    got = np.stack(
        [torch.linalg.svdvals(end_to_end(sol.params(i))).numpy() for i in range(times.size)]
    )
    np.testing.assert_allclose(got, np.sort(ref, axis=1)[:, ::-1], rtol=1e-6, atol=1e-9)


def _random_factors(seed: int, dims=(3, 4, 5, 2)) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        0.5 * torch.randn(n_out, n_in, generator=gen, dtype=torch.float64)
        for n_in, n_out in pairwise(dims)
    ]


def _imbalance(ws) -> list[torch.Tensor]:
    return [w1.T @ w1 - w0 @ w0.T for w0, w1 in pairwise(ws)]


@pytest.mark.parametrize("lam", [0.0, 0.15])
def test_balancedness_decays_like_exp_minus_4_lambda_t(lam):
    ws = _random_factors(1)
    gen = torch.Generator().manual_seed(2)
    target = torch.randn(2, 3, generator=gen, dtype=torch.float64)

    def loss(w):
        fit = 0.5 * ((end_to_end(w) - target) ** 2).sum()
        return fit + lam * sum((x**2).sum() for x in w)

    t1 = 2.0
    sol = gradient_flow(ws, loss, (0.0, t1), t_eval=[0.0, 1.0, t1])
    d0 = _imbalance(ws)
    for i, t in enumerate([0.0, 1.0, t1]):
        for d_t, d_0 in zip(_imbalance(sol.params(i)), d0):
            torch.testing.assert_close(d_t, math.exp(-4 * lam * t) * d_0, rtol=1e-6, atol=1e-8)
    assert sol.loss[-1] < sol.loss[0]


def test_user_event_terminates():
    def crossing(t, x):
        return float(x[0]) - 0.5

    crossing.terminal = True
    sol = gradient_flow(torch.tensor([1.0, 0.0]), _quadratic(1.0), (0, 10), events=[crossing])
    assert sol.t_events[0][0] == pytest.approx(math.log(2.0), rel=1e-7)
    assert sol.t[-1] == pytest.approx(math.log(2.0), rel=1e-7)
    assert not sol.stopped  # the loss event did not fire


def test_nan_gradient_raises_diverged():
    with pytest.raises(Diverged):
        gradient_flow(torch.tensor([1.0]), lambda x: (x * math.nan).sum(), (0, 1))


@pytest.mark.parametrize(
    ("params", "t_span", "match"),
    [
        ("not a tensor", (0, 1), "params must be a tensor"),
        ([], (0, 1), "params must be a tensor"),
        (torch.tensor([1.0]), (1, 0), "t_span"),
        (torch.tensor([math.inf]), (0, 1), "finite"),
    ],
)
def test_bad_input_names_what_was_received(params, t_span, match):
    with pytest.raises((TypeError, ValueError), match=match):
        gradient_flow(params, _quadratic(1.0), t_span)


def test_returns_input_structure():
    ws = _random_factors(3)
    sol = gradient_flow(ws, lambda w: 0.5 * (end_to_end(w) ** 2).sum(), (0, 0.1))
    out = sol.params()
    assert [tuple(w.shape) for w in out] == [tuple(w.shape) for w in ws]
    assert all(w.dtype == torch.float64 for w in out)
    single = gradient_flow(torch.ones(2, 2), lambda x: (x**2).sum(), (0, 0.1)).params()
    assert single.shape == (2, 2)
