"""The one engine: E = 1 and E > 1 through the same loop, custom optimizers, exact flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch.testing import assert_close

from rankscope.models import DeepLinear, DeepLinearEnsemble
from rankscope.models.linear import balanced_factors, end_to_end
from rankscope.train import (
    Diverged,
    GroupRMSprop,
    LogLoss,
    TrainState,
    gradient_flow,
    half_sse,
    train,
)

SEEDS = [11, 12, 13]
F64 = {"rtol": 1e-9, "atol": 1e-11}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ensemble(dims, sigma=0.5) -> DeepLinearEnsemble:
    return DeepLinearEnsemble(
        dims, sigma=sigma, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
    )


def _single(dims, e, sigma=0.5) -> DeepLinear:
    return DeepLinear(dims, sigma=sigma, generator=_gen(SEEDS[e]), dtype=torch.float64)


# --- one loop, one divergence rule -------------------------------------------------------


def test_divergence_is_the_same_rule_for_one_and_many_members() -> None:
    target = torch.full((3, 3), 3.0, dtype=torch.float64)
    loss = lambda m: half_sse(m.product(), target)  # noqa: E731
    lrs = [0.01, 50.0, 0.005]
    ens = _ensemble([3, 4, 4, 3])
    res = train(ens, loss, lr=lrs, steps=60, log_at=5, on_diverge="stop")
    assert res.status == ["completed", "diverged", "completed"]
    for e in range(3):
        one = train(
            _single([3, 4, 4, 3], e), loss, lr=lrs[e], steps=60, log_at=5, on_diverge="stop"
        )
        assert one.status == res.status[e] and one.diverged_step == res.diverged_step[e]
        member = res.member(e)
        assert member.status == one.status and member.steps == one.steps
        np.testing.assert_allclose(member.history["loss"], one.history["loss"], rtol=1e-4)
    # on_diverge="raise" raises at the same step, naming the member, for E > 1 and E = 1
    with pytest.raises(Diverged, match="member 1") as many:
        train(_ensemble([3, 4, 4, 3]), loss, lr=lrs, steps=60)
    with pytest.raises(Diverged) as single:
        train(_single([3, 4, 4, 3], 1), loss, lr=lrs[1], steps=60)
    assert many.value.step == single.value.step == res.diverged_step[1]
    assert single.value.what == "loss" and not math.isfinite(single.value.value)


def test_a_callback_tensor_stops_members_and_true_stops_all() -> None:
    target = torch.eye(3, dtype=torch.float64)
    loss = lambda m: half_sse(m.product(), target)  # noqa: E731

    def stop_first(state: TrainState):
        return torch.tensor([state.step >= 4, False, False])

    res = train(_ensemble([3, 3]), loss, lr=0.1, steps=10, log_at=1, callbacks=[stop_first])
    assert res.status == ["stopped", "completed", "completed"] and res.stopped_step[0] == 4
    assert (
        np.isnan(res.history["loss"][5:, 0]).all()
        and np.isfinite(res.history["loss"]).all(axis=0)[1:].all()
    )
    res_all = train(
        _ensemble([3, 3]), loss, lr=0.1, steps=10, log_at=1, callbacks=[lambda s: s.step == 3]
    )
    assert res_all.status == ["stopped"] * 3 and res_all.steps == 3


def test_state_and_result_views_for_one_and_many() -> None:
    target = torch.eye(3, dtype=torch.float64)
    seen = []
    res = train(
        _single([3, 3], 0),
        lambda m: half_sse(m.product(), target),
        lr=0.1,
        steps=3,
        callbacks=[seen.append],
    )
    state = seen[-1]
    assert state.size == 1 and not state.stacked and state.members() == [0]
    assert state.loss == float(state.losses[0]) and state.log is state.logs[0]
    assert [t for t, _ in state.weights()] == ["W1"] == state.layer_names
    assert isinstance(res.status, str) and res.history["loss"].shape == (2,)
    assert res.final_loss == res.history["loss"][-1] and res.log is res.logs[0]
    seen.clear()
    ens = _ensemble([3, 3])
    res = train(
        ens,
        lambda m: half_sse(m.product(), target),
        lr=0.1,
        steps=3,
        callbacks=[seen.append, LogLoss()],
    )
    state = seen[-1]
    assert state.stacked and state.size == 3 and state.losses.dtype == torch.float64
    assert state.weights()[0][1].shape == (3, 3, 3) and state.model is ens
    with pytest.raises(AttributeError, match="single member"):
        _ = state.loss
    with pytest.raises(AttributeError, match="member\\(e\\)"):
        _ = res.final_loss
    assert res.history["loss"].shape == (2, 3) and len(res.logs) == 3
    assert res.member(2).final_loss == res.final_losses[2]


# --- methods --------------------------------------------------------------------------------


def test_a_torch_optimizer_factory_equals_the_named_method() -> None:
    target = torch.randn(3, 4, generator=_gen(1), dtype=torch.float64)
    loss = lambda m: half_sse(m.product(), target)  # noqa: E731
    a, b = _single([4, 5, 3], 0), _single([4, 5, 3], 0)
    ra = train(a, loss, lr=0.05, steps=20, l2=1e-2)
    rb = train(b, loss, optimizer=lambda p: torch.optim.SGD(p, lr=0.05), steps=20, l2=1e-2)
    for wa, wb in zip(a.weights, b.weights):
        assert torch.equal(wa, wb)
    assert ra.final_loss == rb.final_loss
    adam = lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.99))  # noqa: E731
    c, d = _single([4, 5, 3], 1), _single([4, 5, 3], 1)
    train(c, loss, optimizer=adam, steps=15)
    train(d, loss, optimizer="adam", lr=1e-2, steps=15, optimizer_options={"betas": (0.8, 0.99)})
    for wc, wd in zip(c.weights, d.weights):
        assert torch.equal(wc, wd)


def _group_rmsprop_numpy(ws, target, lr, alpha, eps, steps):
    """GroupRMSprop on ½‖W2W1 − T‖² written out: v ← αv + (1−α)‖g‖², θ ← θ − lr·g/(√v̂ + ε)."""
    w1, w2 = (w.copy() for w in ws)
    v = 0.0
    for t in range(1, steps + 1):
        r = w2 @ w1 - target
        g1, g2 = w2.T @ r, r @ w1.T
        v = alpha * v + (1 - alpha) * ((g1**2).sum() + (g2**2).sum())
        scale = lr / (math.sqrt(v / (1 - alpha**t)) + eps)
        w1, w2 = w1 - scale * g1, w2 - scale * g2
    return w1, w2


def test_group_rmsprop_through_the_engine_for_one_and_many() -> None:
    target = torch.randn(3, 4, generator=_gen(2), dtype=torch.float64)
    loss1 = lambda m: half_sse(m.product(), target)  # noqa: E731
    net = _single([4, 5, 3], 0)
    ref = _group_rmsprop_numpy(
        [w.detach().numpy() for w in net.weights], target.numpy(), 0.01, 0.99, 1e-8, 30
    )
    train(net, loss1, optimizer=lambda p: GroupRMSprop(p, lr=0.01), steps=30)
    for got, want in zip(net.weights, ref):
        assert_close(got.detach(), torch.from_numpy(want), rtol=1e-10, atol=1e-12)
    ens = _ensemble([4, 5, 3])
    train(ens, loss1, optimizer=lambda p: GroupRMSprop(p, lr=0.01, members=3), steps=30)
    for e in range(3):
        one = _single([4, 5, 3], e)
        train(one, loss1, optimizer=lambda p: GroupRMSprop(p, lr=0.01), steps=30)
        assert_close(ens.member(e).product().detach(), one.product().detach(), **F64)


def test_lbfgs_and_flow_refuse_an_ensemble_clearly() -> None:
    ens = _ensemble([2, 2])
    loss = lambda m: half_sse(m.product(), torch.eye(2, dtype=torch.float64))  # noqa: E731
    for method in ("lbfgs", "flow"):
        with pytest.raises(ValueError, match=f"optimizer='{method}' has no batched form"):
            train(ens, loss, optimizer=method, lr=0.1, steps=1)


def test_bad_method_arguments_raise_clearly() -> None:
    net = _single([2, 2], 0)
    loss = lambda m: half_sse(m.product(), torch.eye(2, dtype=torch.float64))  # noqa: E731
    with pytest.raises(ValueError, match="the factory sets the learning rate"):
        train(net, loss, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), lr=0.1, steps=1)
    with pytest.raises(ValueError, match="lr is required"):
        train(net, loss, steps=1)
    with pytest.raises(TypeError, match="optimizer must be a name"):
        train(net, loss, optimizer=3, lr=0.1, steps=1)
    with pytest.raises(TypeError, match=r"with \.step"):
        train(net, loss, optimizer=lambda p: None, steps=1)
    with pytest.raises(TypeError, match="float64"):
        train(
            DeepLinear([2, 2], sigma=1.0, generator=_gen(0)),
            loss,
            optimizer="flow",
            lr=0.1,
            steps=1,
        )
    with pytest.raises(ValueError, match="unknown optimizer_options for 'flow'"):
        train(net, loss, optimizer="flow", lr=0.1, steps=1, optimizer_options={"rtl": 1e-3})
    with pytest.raises(ValueError, match="no optimizer_options"):
        train(
            _ensemble([2, 2]),
            lambda m: half_sse(m.product(), torch.eye(2).double()),
            lr=0.1,
            steps=1,
            optimizer_options={"momentum": 0.9},
        )
    with pytest.raises(TypeError, match="one RecordLog per member"):
        train(
            _ensemble([2, 2]),
            lambda m: half_sse(m.product(), torch.eye(2).double()),
            lr=0.1,
            steps=1,
            log=[None],
        )


# --- the exact flow as a method -----------------------------------------------------------


def test_flow_follows_the_balanced_scalar_closed_form_at_every_logged_step() -> None:
    # a = b, p = ab: ṗ = 2p(y − p)  ⇒  p(t) = y / (1 + (y/p0 − 1) e^{−2yt}), t = step·lr
    y, a0, dt, steps = 3.0, 1e-2, 0.05, 80
    params = [torch.tensor(a0, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    seen = []

    def grab(state):
        seen.append((state.step, float(state.params[0].detach() * state.params[1].detach())))

    res = train(
        params,
        lambda p: 0.5 * (p[0] * p[1] - y) ** 2,
        optimizer="flow",
        lr=dt,
        steps=steps,
        log_at=4,
        callbacks=[grab],
    )
    assert res.status == "completed" and res.steps == steps
    assert res.history["step"].tolist() == list(range(0, steps + 1, 4))
    t = np.array([s for s, _ in seen]) * dt
    expected = y / (1 + (y / a0**2 - 1) * np.exp(-2 * y * t))
    np.testing.assert_allclose([p for _, p in seen], expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(
        res.history["loss"], 0.5 * (expected - y) ** 2, rtol=1e-5, atol=1e-12
    )
    assert res.flow.t[0] == 0.0 and res.flow.t[-1] == pytest.approx(steps * dt)
    assert float(params[0].detach() * params[1].detach()) == pytest.approx(expected[-1], rel=1e-6)


def test_flow_on_a_balanced_deep_linear_net_follows_the_mode_equation() -> None:
    # balanced aligned depth-3 init: each singular value obeys ȧ = L a^{2−2/L}(s − a)
    gen = _gen(0)
    u, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    s_target = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    a0 = torch.tensor([1e-2, 2e-2, 5e-2, 1e-1], dtype=torch.float64)
    target = u @ torch.diag(s_target) @ v.T
    net = DeepLinear.from_weights(balanced_factors(u @ torch.diag(a0) @ v.T, 3))
    spectra = {}

    def grab(state):
        spectra[state.step] = torch.linalg.svdvals(state.model.product().detach()).numpy()

    train(
        net,
        lambda m: half_sse(m.product(), target),
        optimizer="flow",
        lr=0.01,
        steps=300,
        log_at=50,
        callbacks=[grab],
    )
    times = np.array(sorted(spectra)) * 0.01

    def scalar(t, a):
        return 3 * np.abs(a) ** (4 / 3) * (s_target.numpy() - a)

    ref = solve_ivp(scalar, (0, 3), a0.numpy(), t_eval=times, rtol=1e-11, atol=1e-14).y.T
    got = np.stack([spectra[s] for s in sorted(spectra)])
    np.testing.assert_allclose(got, np.sort(ref, axis=1)[:, ::-1], rtol=1e-6, atol=1e-9)


def test_flow_stop_at_loss_halts_the_run_at_the_event() -> None:
    # ½k|x|² with x' = −kx: the loss reaches ℓ at t = ln(L0/ℓ)/(2k)
    k, x0 = 0.8, torch.tensor([1.5, 2.0], dtype=torch.float64)
    l0 = 0.5 * k * float((x0**2).sum())
    x = x0.clone().requires_grad_()
    res = train(
        [x],
        lambda p: 0.5 * k * (p[0] ** 2).sum(),
        optimizer="flow",
        lr=1.0,
        steps=50,
        log_at=1,
        optimizer_options={"stop_at_loss": 1e-4, "loss_levels": (1e-1,)},
    )
    t_stop = math.log(l0 / 1e-4) / (2 * k)
    assert res.status == "stopped" and res.steps == math.ceil(t_stop)
    assert res.flow.stopped and res.flow.t[-1] == pytest.approx(t_stop, rel=1e-7)
    assert res.final_loss == pytest.approx(1e-4, rel=1e-6)  # the state at the event
    assert res.flow.level_t[0] == pytest.approx(math.log(l0 / 1e-1) / (2 * k), rel=1e-7)


def test_flow_front_equals_the_engine_and_leaves_its_input() -> None:
    ws = [
        0.5 * torch.randn(n, m, generator=_gen(4), dtype=torch.float64) for m, n in ((3, 4), (4, 2))
    ]
    before = [w.clone() for w in ws]
    loss = lambda w: 0.5 * (end_to_end(w) ** 2).sum() + 0.1 * sum((x**2).sum() for x in w)  # noqa: E731
    sol = gradient_flow(ws, loss, (0.0, 1.5), t_eval=[0.0, 0.5, 1.5])
    assert all(torch.equal(a, b) for a, b in zip(ws, before))
    leaves = [w.clone().requires_grad_() for w in ws]
    res = train(leaves, loss, optimizer="flow", lr=0.5, steps=3)
    for got, want in zip(leaves, sol.params(-1)):
        assert_close(got.detach(), want, rtol=1e-7, atol=1e-10)
    assert res.flow.t[-1] == 1.5 and sol.t.tolist() == [0.0, 0.5, 1.5]


def test_flow_blowup_is_the_engines_divergence() -> None:
    # x' = 1 from x = 0; the objective is NaN once x > 1.2, i.e. within the step from t = 1
    def loss(p):
        return (-p[0] + 0.0 * torch.log(1.2 - p[0])).sum()

    x = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    res = train([x], loss, optimizer="flow", lr=0.5, steps=5, log_at=1, on_diverge="stop")
    assert res.status == "diverged" and res.diverged_step == 2
    assert res.history["step"].tolist() == [0, 1, 2]
    with pytest.raises(Diverged) as info:
        train(
            [torch.zeros(1, dtype=torch.float64, requires_grad=True)],
            loss,
            optimizer="flow",
            lr=0.5,
            steps=5,
            log_at=1,
        )
    assert info.value.step == 2
