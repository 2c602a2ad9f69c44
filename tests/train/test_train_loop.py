"""The training loop against closed forms and hand-written numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch.testing import assert_close

from rankscope.models import MLP, DeepLinear
from rankscope.train import (
    Diverged,
    LogEndToEndSpectrum,
    LogLoss,
    LogWeightSpectra,
    cross_entropy,
    half_sse,
    log_steps,
    mse,
    train,
)

F64 = {"rtol": 1e-10, "atol": 1e-12}  # tolerance for float64 trajectories of a few hundred steps


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ridge_problem(n: int = 40, d: int = 5):
    g = _gen(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.randn(d, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        n, 1, generator=g, dtype=torch.float64
    )
    return x, y


def _ridge_closed_form(x, y, lam):
    """argmin_w (1/N)‖Xw − y‖² + λ‖w‖² = (XᵀX/N + λI)⁻¹ Xᵀy/N."""
    xn, yn = x.numpy(), y.numpy()
    n, d = xn.shape
    return np.linalg.solve(xn.T @ xn / n + lam * np.eye(d), xn.T @ yn / n).T  # (1, d)


@pytest.mark.parametrize(
    ("optimizer", "lr", "steps", "atol"),
    [("gd", 0.2, 400, 1e-8), ("adam", 0.01, 2000, 1e-3), ("lbfgs", 1.0, 10, 1e-8)],
)
def test_ridge_regression_reaches_the_closed_form(optimizer, lr, steps, atol) -> None:
    """Constant-lr Adam hovers around the minimum at a scale set by lr: looser atol."""
    x, y = _ridge_problem()
    w = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    res = train(
        [w],
        lambda p, b: mse(b[0] @ p[0].T, b[1]),
        optimizer=optimizer,
        lr=lr,
        steps=steps,
        data=(x, y),
        l2=0.1,
    )
    assert res.status == "completed"
    want = torch.from_numpy(_ridge_closed_form(x, y, 0.1))
    assert_close(w.detach(), want, rtol=0, atol=atol)


def test_lbfgs_reaches_the_rosenbrock_minimum() -> None:
    xy = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)

    def rosen(p):
        a, b = p[0][0], p[0][1]
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2

    res = train(
        [xy], rosen, optimizer="lbfgs", lr=1.0, steps=10, optimizer_options={"max_iter": 50}
    )
    assert_close(xy.detach(), torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-7)
    assert res.final_loss < 1e-14
    # logging steps need not include 0; the run is not mistaken for a diverged one
    xy2 = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
    res2 = train([xy2], rosen, optimizer="lbfgs", lr=1.0, steps=4, log_at=[2, 4])
    assert res2.status == "completed" and res2.history["step"].tolist() == [2, 4]


def _numpy_dln_gd(ws, target, lr, lam, steps):
    """GD on ½‖W_L⋯W_1 − T‖² + λΣ‖W‖², written out: ∇_ℓ = Pᵀ_{>ℓ}(A − T)Pᵀ_{<ℓ} + 2λW_ℓ."""
    ws = [w.copy() for w in ws]
    traj = [[w.copy() for w in ws]]
    for _ in range(steps):
        a = ws[0]
        for w in ws[1:]:
            a = w @ a
        r = a - target
        grads = []
        for l in range(len(ws)):
            left = np.eye(target.shape[0])  # W_L⋯W_{l+1}
            for w in reversed(ws[l + 1 :]):
                left = left @ w
            right = np.eye(target.shape[1])  # W_{l−1}⋯W_1
            for w in ws[:l]:
                right = w @ right
            grads.append(left.T @ r @ right.T + 2 * lam * ws[l])
        ws = [w - lr * g for w, g in zip(ws, grads)]
        traj.append([w.copy() for w in ws])
    return traj


def test_gd_on_a_deep_linear_net_equals_numpy_step_by_step() -> None:
    net = DeepLinear([4, 6, 5, 3], sigma=0.5, generator=_gen(1), dtype=torch.float64)
    target = torch.randn(3, 4, generator=_gen(2), dtype=torch.float64)
    ref = _numpy_dln_gd([w.detach().numpy() for w in net.weights], target.numpy(), 0.05, 0.01, 30)
    seen = []

    def grab(state):
        seen.append((state.step, [w.detach().clone() for w in state.model.weights]))

    train(
        net,
        lambda m: half_sse(m.product(), target),
        lr=0.05,
        steps=30,
        l2=0.01,
        log_at=1,
        callbacks=[grab],
    )
    assert [s for s, _ in seen] == list(range(31))
    for step, ws in seen:
        for got, want in zip(ws, ref[step]):
            assert_close(got, torch.from_numpy(want), **F64)


def test_sgd_equals_numpy_sgd_on_the_same_index_stream() -> None:
    x, y = _ridge_problem(n=30, d=4)
    w = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    train(
        [w],
        lambda p, b: mse(b[0] @ p[0].T, b[1]),
        optimizer="sgd",
        lr=0.05,
        steps=25,
        data=(x, y),
        batch_size=8,
        generator=_gen(9),
    )
    # reference: the documented stream, randperm per epoch cut into chunks of 8 (last one 6)
    g, wn, xn, yn = _gen(9), np.zeros((1, 4)), x.numpy(), y.numpy()
    idx_stream = []
    while len(idx_stream) < 25:
        perm = torch.randperm(30, generator=g).numpy()
        idx_stream += [perm[i : i + 8] for i in range(0, 30, 8)]
    for idx in idx_stream[:25]:
        xb, yb = xn[idx], yn[idx]
        wn = wn - 0.05 * (2 / len(idx)) * (xb @ wn.T - yb).T @ xb
    assert_close(w.detach(), torch.from_numpy(wn), **F64)


def test_adam_equals_numpy_adam() -> None:
    x, y = _ridge_problem(n=20, d=3)
    w = torch.full((1, 3), 0.5, dtype=torch.float64, requires_grad=True)
    train(
        [w],
        lambda p, b: mse(b[0] @ p[0].T, b[1]),
        optimizer="adam",
        lr=0.01,
        steps=50,
        data=(x, y),
        l2=0.05,
    )
    xn, yn = x.numpy(), y.numpy()
    wn, m, v = np.full((1, 3), 0.5), np.zeros((1, 3)), np.zeros((1, 3))
    for t in range(1, 51):
        g = (2 / 20) * (xn @ wn.T - yn).T @ xn + 2 * 0.05 * wn
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        wn = wn - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert_close(w.detach(), torch.from_numpy(wn), **F64)


def test_same_seed_gives_identical_numbers() -> None:
    x = torch.randn(64, 8, generator=_gen(3))
    y = torch.randint(3, (64,), generator=_gen(4))

    def run():
        net = MLP([8, 16, 3], generator=_gen(5))
        return train(
            net,
            lambda m, b: cross_entropy(m(b[0]), b[1]),
            optimizer="sgd",
            lr=0.1,
            steps=40,
            data=(x, y),
            batch_size=16,
            generator=_gen(6),
            log_at=5,
            callbacks=[LogLoss(), LogWeightSpectra()],
        )

    a, b = run(), run()
    assert np.array_equal(a.history["loss"], b.history["loss"])
    ra, rb = a.log.freeze(), b.log.freeze()
    assert np.array_equal(ra.value, rb.value) and len(ra) > 0


def test_callbacks_log_spectra_that_match_scipy() -> None:
    net = DeepLinear([5, 7, 4], sigma=0.4, generator=_gen(7), dtype=torch.float64)
    target = torch.randn(4, 5, generator=_gen(8), dtype=torch.float64)
    res = train(
        net,
        lambda m: half_sse(m.product(), target),
        lr=0.05,
        steps=20,
        log_at=log_steps(20, 4),
        callbacks=[LogLoss(), LogWeightSpectra(), LogEndToEndSpectrum()],
    )
    recs = res.log.freeze()
    assert sorted(set(recs.step.tolist())) == [0, 1, 4, 20]
    for l, w in enumerate(net.weights):
        want = scipy.linalg.svdvals(w.detach().numpy())
        np.testing.assert_allclose(recs.vector("sv", step=20, layer=f"W{l + 1}"), want, rtol=1e-12)
    a = (net.weights[1] @ net.weights[0]).detach().numpy()
    np.testing.assert_allclose(
        recs.vector("sv_end_to_end", step=20), scipy.linalg.svdvals(a), rtol=1e-12
    )
    steps, loss = recs.series("loss")
    np.testing.assert_allclose(loss, res.history["loss"])
    assert steps.tolist() == res.history["step"].tolist()


def test_l2_penalty_counts_weights_not_biases_and_is_logged_separately() -> None:
    net = MLP([3, 4, 2], bias=True, generator=_gen(10), dtype=torch.float64)
    with torch.no_grad():
        for b in net.biases:
            b.fill_(1.0)
    x, y = torch.randn(6, 3, dtype=torch.float64, generator=_gen(11)), torch.zeros(6, 2).double()
    res = train(net, lambda m, b: mse(m(b[0]), b[1]), lr=1e-9, steps=0, data=(x, y), l2=0.5)
    sq = sum(float(w.detach().square().sum()) for w in net.weights)
    assert math.isclose(
        res.history["loss"][0] - res.history["data_loss"][0], 0.5 * sq, rel_tol=1e-12
    )
    res_all = train(
        net, lambda m, b: mse(m(b[0]), b[1]), lr=1e-9, steps=0, data=(x, y), l2=0.5, l2_params="all"
    )
    extra = res_all.history["loss"][0] - res.history["loss"][0]
    assert math.isclose(extra, 0.5 * 6.0, rel_tol=1e-9)  # biases 4 + 2 ones


def test_divergence_raises_with_step_or_stops() -> None:
    target = torch.full((3, 3), 10.0)

    def make():
        return DeepLinear([3, 3, 3], sigma=1.0, generator=_gen(12))

    with pytest.raises(Diverged) as info:
        train(make(), lambda m: half_sse(m.product(), target), lr=5.0, steps=100)
    assert info.value.step > 0
    res = train(
        make(),
        lambda m: half_sse(m.product(), target),
        lr=5.0,
        steps=100,
        on_diverge="stop",
        log_at=1,
    )
    assert res.status == "diverged" and res.diverged_step == info.value.step
    assert res.history["step"].max() == info.value.step - 1


def test_stop_requests() -> None:
    target = torch.eye(3, dtype=torch.float64)
    net = DeepLinear([3, 3], sigma=0.1, generator=_gen(13), dtype=torch.float64)
    res = train(
        net,
        lambda m: half_sse(m.product(), target),
        lr=0.5,
        steps=500,
        stop=lambda step, loss: loss < 1e-6,
    )
    assert res.status == "stopped" and res.final_loss < 1e-6 and res.steps < 500
    res2 = train(
        net,
        lambda m: half_sse(m.product(), target),
        lr=0.5,
        steps=50,
        log_at=10,
        callbacks=[lambda s: s.step >= 20],
    )
    assert res2.status == "stopped" and res2.steps == 20


def test_bad_arguments_raise_clearly() -> None:
    net = DeepLinear([2, 2], sigma=1.0, generator=_gen(0))
    loss = lambda m: half_sse(m.product(), torch.eye(2))  # noqa: E731
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        train(net, loss, optimizer="rmsprop", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="needs data= and batch_size="):
        train(net, loss, optimizer="sgd", lr=0.1, steps=1)
    with pytest.raises(ValueError, match="full-batch"):
        train(net, loss, optimizer="gd", lr=0.1, steps=1, data=torch.ones(4, 2), batch_size=2)
    with pytest.raises(ValueError, match="log_at steps must lie"):
        train(net, loss, lr=0.1, steps=5, log_at=[0, 9])
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        train(
            net,
            lambda m, b: m(b[0]).sum(),
            optimizer="sgd",
            lr=0.1,
            steps=1,
            data=torch.ones(4, 2),
            batch_size=2,
        )
    with pytest.raises(ValueError, match="pass l2="):
        train(net, loss, lr=0.1, steps=1, optimizer_options={"weight_decay": 1e-3})
    with pytest.raises(ValueError, match="scalar"):
        train(net, lambda m: m.product(), lr=0.1, steps=1)
    for bad in (math.inf, math.nan, 0.0, "0.1", True):
        with pytest.raises(ValueError, match=rf"lr must be a finite float > 0, got {bad!r}"):
            train(net, loss, lr=bad, steps=1)
    for bad in (math.inf, -1.0, "1e-3"):
        with pytest.raises(ValueError, match=rf"l2 must be a finite float >= 0, got {bad!r}"):
            train(net, loss, lr=0.1, steps=1, l2=bad)


def test_diverged_is_the_experiments_class_and_pickles() -> None:
    import pickle

    from rankscope.experiments.base import Diverged as ExperimentDiverged

    assert ExperimentDiverged is Diverged
    err = pickle.loads(pickle.dumps(Diverged(7, "loss", math.inf)))
    assert (err.step, err.what, err.value) == (7, "loss", math.inf)
    assert "step 7" in str(err)
