"""Vectorized ensembles through the one engine: every member equals an independent E = 1 run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.models import MLP, DeepLinear
from rankscope.train import (
    DeepLinearEnsemble,
    LogEndToEndSpectrum,
    LogLoss,
    LogWeightSpectra,
    MLPEnsemble,
    cross_entropy,
    ensemble_speedup,
    half_sse,
    log_steps,
    mse,
    prefer_ensemble,
    train,
)

F64 = {"rtol": 1e-9, "atol": 1e-11}  # float64 trajectories: kernels differ (bmm vs mm)
SEEDS = [11, 12, 13]
LRS = [0.05, 0.02, 0.08]
L2S = [0.0, 1e-3, 3e-2]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data():
    x = torch.randn(48, 6, generator=_gen(0), dtype=torch.float64)
    y_reg = torch.randn(48, 3, generator=_gen(1), dtype=torch.float64)
    y_cls = torch.randint(3, (48,), generator=_gen(2))
    return x, y_reg, y_cls


# (optimizer, batch_size, batches, lr scale)
CASES = [
    ("gd", None, "per_member", 1.0),
    ("sgd", 8, "per_member", 1.0),
    ("sgd", 8, "shared", 1.0),
    ("adam", None, "per_member", 0.2),
    ("adam", 12, "per_member", 0.2),
]


def _batch_gen(e: int, batches: str) -> torch.Generator:
    return _gen(100 if batches == "shared" else 100 + e)


def _check_member_equals_independent(kind, optimizer, batch_size, batches, scale):
    x, y_reg, y_cls = _data()
    lrs = [lr * scale * (0.3 if kind == "dln" else 1.0) for lr in LRS]
    cbs = [LogLoss(), LogWeightSpectra()]
    steps, at = 25, log_steps(25, 5)
    if kind == "dln":
        dims, sig = [6, 5, 4, 3], [0.5, 0.3, 0.7]

        def make(e):
            return DeepLinear(dims, sigma=sig[e], generator=_gen(SEEDS[e]), dtype=torch.float64)

        ens = DeepLinearEnsemble(
            dims, sigma=sig, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
        )
        loss, data = (lambda m, b: mse(m(b[0]), b[1])), (x, y_reg)
        cbs.append(LogEndToEndSpectrum())
    else:
        dims, inits = [6, 8, 8, 3], ["he", "lecun", 0.3]

        def make(e):
            return MLP(dims, init=inits[e], generator=_gen(SEEDS[e]), dtype=torch.float64)

        ens = MLPEnsemble(
            dims, init=inits, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
        )
        loss, data = (lambda m, b: cross_entropy(m(b[0]), b[1])), (x, y_cls)
    singles = []
    for e in range(3):
        net = make(e)
        res = train(
            net,
            loss,
            optimizer=optimizer,
            lr=lrs[e],
            steps=steps,
            data=data,
            batch_size=batch_size,
            l2=L2S[e],
            generator=_batch_gen(e, batches),
            log_at=at,
            callbacks=cbs,
        )
        singles.append((net, res))
    gens = _gen(100) if batches == "shared" else [_batch_gen(e, batches) for e in range(3)]
    eres = train(
        ens,
        loss,
        optimizer=optimizer,
        lr=lrs,
        steps=steps,
        data=data,
        batch_size=batch_size,
        batches=batches,
        l2=L2S,
        generator=gens,
        log_at=at,
        callbacks=cbs,
    )
    assert eres.status == ["completed"] * 3
    for e, (net, res) in enumerate(singles):
        for w_single, w_stack in zip(net.weights, ens.weights):
            assert_close(w_stack[e].detach(), w_single.detach(), **F64)
        np.testing.assert_allclose(eres.history["loss"][:, e], res.history["loss"], rtol=1e-9)
        mine, theirs = eres.logs[e].freeze(), res.log.freeze()
        assert mine.name.tolist() == theirs.name.tolist()
        assert mine.layer.tolist() == theirs.layer.tolist()
        np.testing.assert_allclose(mine.value, theirs.value, rtol=1e-8, atol=1e-12)
        member = eres.member(e)
        assert member.status == "completed" and member.steps == steps
        np.testing.assert_allclose(member.history["loss"], res.history["loss"], rtol=1e-9)


@pytest.mark.parametrize(("optimizer", "batch_size", "batches", "scale"), CASES)
def test_dln_members_equal_independent_runs(optimizer, batch_size, batches, scale) -> None:
    _check_member_equals_independent("dln", optimizer, batch_size, batches, scale)


@pytest.mark.parametrize(("optimizer", "batch_size", "batches", "scale"), CASES)
def test_mlp_members_equal_independent_runs(optimizer, batch_size, batches, scale) -> None:
    _check_member_equals_independent("mlp", optimizer, batch_size, batches, scale)


def test_product_loss_ensemble_with_per_member_scale() -> None:
    """Matrix-level loss on A_e (docs/results.md's C(A)); members differ in σ and λ."""
    target = torch.randn(4, 4, generator=_gen(3), dtype=torch.float64)
    sig = [1e-2, 1e-1, 0.5]
    ens = DeepLinearEnsemble(
        [4, 6, 6, 4], sigma=sig, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
    )
    train(ens, lambda m: half_sse(m.product(), target), lr=0.05, steps=40, l2=L2S)
    for e in range(3):
        net = DeepLinear([4, 6, 6, 4], sigma=sig[e], generator=_gen(SEEDS[e]), dtype=torch.float64)
        train(net, lambda m: half_sse(m.product(), target), lr=0.05, steps=40, l2=L2S[e])
        assert_close(ens.member(e).product().detach(), net.product().detach(), **F64)


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_divergent_member_is_masked_and_the_others_are_untouched(optimizer) -> None:
    target = torch.full((3, 3), 3.0, dtype=torch.float64)
    lrs = [0.01, 50.0, 0.005] if optimizer == "gd" else [0.01, 1e80, 0.02]
    loss = lambda m: half_sse(m.product(), target)  # noqa: E731
    ens = DeepLinearEnsemble(
        [3, 4, 4, 3], sigma=0.5, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
    )
    eres = train(
        ens,
        loss,
        optimizer=optimizer,
        lr=lrs,
        steps=60,
        log_at=5,
        callbacks=[LogLoss(), LogWeightSpectra()],
        on_diverge="stop",
    )
    assert eres.status[1] == "diverged" and eres.status[0] == eres.status[2] == "completed"
    for e in range(3):
        net = DeepLinear([3, 4, 4, 3], sigma=0.5, generator=_gen(SEEDS[e]), dtype=torch.float64)
        res = train(
            net,
            loss,
            optimizer=optimizer,
            lr=lrs[e],
            steps=60,
            log_at=5,
            on_diverge="stop",
            callbacks=[LogLoss(), LogWeightSpectra()],
        )
        assert res.status == eres.status[e]
        assert res.diverged_step == eres.diverged_step[e]
        mine, theirs = eres.logs[e].freeze(), res.log.freeze()
        assert mine.step.tolist() == theirs.step.tolist()
        # the diverging member amplifies rounding differences on its way up
        np.testing.assert_allclose(mine.value, theirs.value, rtol=1e-8 if e != 1 else 1e-4)
        if e != 1:
            assert_close(ens.member(e).product().detach(), net.product().detach(), **F64)
    assert np.isnan(eres.history["loss"][-1, 1])


def test_stop_freezes_members_individually() -> None:
    target = torch.eye(3, dtype=torch.float64)
    ens = DeepLinearEnsemble(
        [3, 3], sigma=0.1, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
    )
    eres = train(
        ens,
        lambda m: half_sse(m.product(), target),
        lr=[0.5, 0.005, 0.5],
        steps=300,
        stop=lambda step, losses: losses < 1e-6,
    )
    assert eres.status == ["stopped", "completed", "stopped"]
    for e in (0, 2):
        net = DeepLinear([3, 3], sigma=0.1, generator=_gen(SEEDS[e]), dtype=torch.float64)
        res = train(
            net,
            lambda m: half_sse(m.product(), target),
            lr=0.5,
            steps=300,
            stop=lambda step, loss: loss < 1e-6,
        )
        assert res.steps == eres.stopped_step[e]
        assert_close(ens.member(e).product().detach(), net.product().detach(), **F64)


def test_float32_adam_members_match_torch_adam() -> None:
    x, y_reg, _ = _data()
    x, y = x.float(), y_reg.float()
    ens = MLPEnsemble([6, 16, 3], generators=[_gen(s) for s in SEEDS])
    train(
        ens,
        lambda m, b: mse(m(b[0]), b[1]),
        optimizer="adam",
        lr=[1e-3, 3e-3, 1e-2],
        steps=50,
        data=(x, y),
        l2=L2S,
    )
    for e, lr in enumerate([1e-3, 3e-3, 1e-2]):
        net = MLP([6, 16, 3], generator=_gen(SEEDS[e]))
        train(
            net,
            lambda m, b: mse(m(b[0]), b[1]),
            optimizer="adam",
            lr=lr,
            steps=50,
            data=(x, y),
            l2=L2S[e],
        )
        for a, b in zip(ens.weights, net.weights):
            assert_close(a[e].detach(), b.detach(), rtol=1e-4, atol=1e-5)


def test_bad_arguments_raise_clearly() -> None:
    ens = DeepLinearEnsemble([2, 2], sigma=1.0, generators=[_gen(0), _gen(1)])
    loss = lambda m: half_sse(m.product(), torch.eye(2))  # noqa: E731
    with pytest.raises(ValueError, match="L-BFGS runs per member"):
        train(ens, loss, optimizer="lbfgs", lr=1.0, steps=1)
    with pytest.raises(ValueError, match="one float or 2 floats"):
        train(ens, loss, lr=[0.1, 0.2, 0.3], steps=1)
    with pytest.raises(ValueError, match="finite and > 0"):
        train(ens, loss, lr=[0.1, -1.0], steps=1)
    with pytest.raises(ValueError, match=r"must return shape \(2,\)"):
        train(ens, lambda m: m.product().sum(), lr=0.1, steps=1)
    with pytest.raises(TypeError, match=r"list of 2 torch\.Generator"):
        train(
            ens,
            lambda m, b: m(b[0]).sum((1, 2)),
            optimizer="sgd",
            lr=0.1,
            steps=1,
            data=torch.ones(4, 2),
            batch_size=2,
            generator=[_gen(0)],
        )
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        DeepLinearEnsemble([2, 2], sigma=1.0, generators=[0, 1])
    with pytest.raises(ValueError, match="one value or 2 values"):
        DeepLinearEnsemble([2, 2], sigma=[1.0, 2.0, 3.0], generators=[_gen(0), _gen(1)])


def test_plan_prefers_ensembles_for_small_widths_only() -> None:
    small = ensemble_speedup(128, [10, 10, 10, 10, 10], 100)
    big = ensemble_speedup(128, [500, 500, 500, 500, 500], 1000)
    assert small > 10 and 1 <= big < small
    assert prefer_ensemble(64, [10, 10, 10], 100)
    assert not prefer_ensemble(64, [10, 10, 10], 100, optimizer="lbfgs")
    assert not prefer_ensemble(1, [10, 10, 10], 100)
    assert not prefer_ensemble(64, [4000, 4000], 100_000)  # memory


def test_two_phase_protocol_with_step_offset_matches_the_loop() -> None:
    """NRC-style Adam-then-SGD: the second phase continues the step axis."""
    x, _, y = _data()
    loss = lambda m, b: cross_entropy(m(b[0]), b[1])  # noqa: E731
    ens = MLPEnsemble([6, 8, 3], generators=[_gen(s) for s in SEEDS], dtype=torch.float64)
    gens = [_gen(200 + e) for e in range(3)]
    first = train(ens, loss, optimizer="adam", lr=1e-2, steps=10, data=(x, y), l2=L2S,
                           log_at=5, callbacks=[LogLoss()])  # fmt: skip
    second = train(ens, loss, optimizer="sgd", lr=0.1, steps=10, data=(x, y), l2=L2S,
                            batch_size=16, generator=gens, log_at=5, callbacks=[LogLoss()],
                            log=first.logs, step_offset=10)  # fmt: skip
    assert second.history["step"].tolist() == [10, 15, 20]
    assert second.member(0).steps == 10
    for e in range(3):
        net = MLP([6, 8, 3], generator=_gen(SEEDS[e]), dtype=torch.float64)
        a = train(net, loss, optimizer="adam", lr=1e-2, steps=10, data=(x, y), l2=L2S[e],
                  log_at=5, callbacks=[LogLoss()])  # fmt: skip
        train(net, loss, optimizer="sgd", lr=0.1, steps=10, data=(x, y), l2=L2S[e],
              batch_size=16, generator=_gen(200 + e), log_at=5, callbacks=[LogLoss()],
              log=a.log, step_offset=10)  # fmt: skip
        recs, mine = a.log.freeze(), second.logs[e].freeze()
        assert recs.series("loss")[0].tolist() == [0, 5, 10, 10, 15, 20]
        np.testing.assert_allclose(mine.value, recs.value, rtol=1e-9)
        assert_close(ens.member(e).weights[1].detach(), net.weights[1].detach(), **F64)
