"""A loss that brings its own gradient (``value_and_grads``): the engine steps with it exactly
as with autograd. The hand-derived DLN/MLP backward that used this hook was removed (issue 8,
benchmarks/bench_closed_form.py); here a reference closed form, written in the test, checks
the hook on every method, batching mode, penalty and a diverging member."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankscope.models import MLP, DeepLinearEnsemble, MLPEnsemble
from rankscope.train import SupervisedLoss, cross_entropy, mse, train

SEEDS = [11, 12, 13]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _ClosedForm:
    """mse / cross-entropy of a DLN or ReLU-MLP ensemble, backward by hand (bmm chain)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, model, batch):
        fn = mse if self.name == "mse" else cross_entropy
        return fn(model(batch[0]), batch[1])

    def value_and_grads(self, model, batch):
        x, y = batch
        relu = isinstance(model, MLPEnsemble)
        ws = [w.detach() for w in model.weights]
        bs = [b.detach() for b in model.biases] if relu and model.biases is not None else None
        hs = [x if x.ndim == 3 else x.expand(ws[0].shape[0], *x.shape)]
        for l in range(len(ws)):
            z = torch.bmm(hs[-1], ws[l].mT)
            if bs is not None:
                z = z + bs[l][:, None, :]
            hs.append(z.relu() if relu and l < len(ws) - 1 else z)
        out, b = hs.pop(), x.shape[-2]
        if self.name == "mse":
            r = out - y
            loss, g = (r * r).flatten(-2).sum(-1) / b, 2 * r / b
        else:
            logp = torch.log_softmax(out, -1)
            labels = y.expand(out.shape[:-1]).unsqueeze(-1)
            loss = -logp.gather(-1, labels).squeeze(-1).mean(-1)
            g = logp.exp().scatter_add(-1, labels, -torch.ones_like(labels, dtype=out.dtype)) / b
        dw, db = [g] * len(ws), [g] * len(ws)
        for l in range(len(ws) - 1, -1, -1):
            dw[l], db[l] = torch.bmm(g.mT, hs[l]), g.sum(1)
            if l:
                g = torch.bmm(g, ws[l]) * (hs[l] > 0 if relu else 1)
        return loss, dw + (db if bs is not None else [])


def _ensemble(kind: str, dtype: torch.dtype):
    gens = [_gen(s) for s in SEEDS]
    if kind == "dln":
        return DeepLinearEnsemble([6, 5, 4, 3], sigma=[0.5, 0.3, 0.7], generators=gens, dtype=dtype)
    bias = kind == "mlp-bias"
    return MLPEnsemble(
        [6, 8, 8, 3], bias=bias, init=["he", "lecun", 0.3], generators=gens, dtype=dtype
    )


def _run(kind, closed, optimizer, batch_size, batches, l2_params, dtype, lrs):
    x = torch.randn(48, 6, generator=_gen(0), dtype=dtype)
    if kind == "dln":
        data = (x, torch.randn(48, 3, generator=_gen(1), dtype=dtype))
        loss = _ClosedForm("mse") if closed else (lambda m, b: mse(m(b[0]), b[1]))
    else:
        data = (x, torch.randint(3, (48,), generator=_gen(2)))
        loss = (
            _ClosedForm("cross_entropy") if closed else (lambda m, b: cross_entropy(m(b[0]), b[1]))
        )
    ens = _ensemble(kind, dtype)
    gens = _gen(100) if batches == "shared" else [_gen(100 + e) for e in range(3)]
    res = train(
        ens,
        loss,
        optimizer=optimizer,
        lr=lrs,
        steps=25,
        data=data,
        batch_size=batch_size,
        batches=batches,
        l2=[0.0, 1e-3, 3e-2],
        l2_params=l2_params,
        generator=gens,
        log_at=[0, 5, 25],
        on_diverge="stop",
    )
    return ens, res


CASES = [
    ("gd", None, "per_member", "weights"),
    ("sgd", 8, "per_member", "all"),
    ("sgd", 8, "shared", "weights"),
    ("adam", None, "per_member", "all"),
    ("adam", 12, "per_member", "weights"),
]
TOL = {"rtol": 1e-10, "atol": 1e-12}  # float64: the hand backward rounds differently


@pytest.mark.parametrize("kind", ["dln", "mlp", "mlp-bias"])
@pytest.mark.parametrize(("optimizer", "batch_size", "batches", "l2_params"), CASES)
def test_closed_form_steps_equal_autograd_steps(
    kind, optimizer, batch_size, batches, l2_params
) -> None:
    lrs = [0.01, 0.004, 0.016] if optimizer == "adam" else [0.05, 0.02, 0.08]
    args = (optimizer, batch_size, batches, l2_params, torch.float64, lrs)
    fast, fast_res = _run(kind, True, *args)
    slow, slow_res = _run(kind, False, *args)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), **TOL)
    np.testing.assert_allclose(fast_res.history["loss"], slow_res.history["loss"], rtol=1e-10)
    assert fast_res.status == slow_res.status


def test_closed_form_masks_a_diverging_member() -> None:
    """Member 2's learning rate blows it up; the other two go on, as on the autograd path."""
    args = ("gd", None, "per_member", "weights", torch.float64, [0.05, 0.02, 50.0])
    fast, fast_res = _run("dln", True, *args)
    slow, slow_res = _run("dln", False, *args)
    assert fast_res.status == slow_res.status == ["completed", "completed", "diverged"]
    assert fast_res.diverged_step == slow_res.diverged_step
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        torch.testing.assert_close(a.detach()[:2], b.detach()[:2], **TOL)


def test_supervised_loss_member_equals_an_independent_run() -> None:
    x = torch.randn(40, 5, generator=_gen(0), dtype=torch.float64)
    y = torch.randint(4, (40,), generator=_gen(1))
    loss = SupervisedLoss("cross_entropy")
    ens = MLPEnsemble(
        [5, 7, 4], bias=True, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
    )
    train(ens, loss, optimizer="adam", lr=0.01, steps=20, data=(x, y), l2=1e-3)
    for e, seed in enumerate(SEEDS):
        net = MLP([5, 7, 4], bias=True, generator=_gen(seed), dtype=torch.float64)
        train(net, loss, optimizer="adam", lr=0.01, steps=20, data=(x, y), l2=1e-3)
        for w_single, w_stack in zip(net.weights, ens.weights, strict=True):
            torch.testing.assert_close(
                w_stack[e].detach(), w_single.detach(), rtol=1e-9, atol=1e-11
            )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_supervised_loss_is_the_plain_loss_to_the_bit(dtype) -> None:
    """SupervisedLoss and the equivalent lambda train to the same bits (tanh MLP too)."""
    x = torch.randn(30, 4, generator=_gen(0), dtype=dtype)
    y = torch.randint(3, (30,), generator=_gen(1))
    runs = []
    for loss in (SupervisedLoss("cross_entropy"), lambda m, b: cross_entropy(m(b[0]), b[1])):
        ens = MLPEnsemble(
            [4, 6, 3], activation="tanh", generators=[_gen(s) for s in SEEDS], dtype=dtype
        )
        train(ens, loss, lr=0.1, steps=10, data=(x, y))
        runs.append([w.detach() for w in ens.weights])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_supervised_loss_rejects_unknown_names_and_bad_hooks() -> None:
    with pytest.raises(ValueError, match="unknown supervised loss 'hinge'"):
        SupervisedLoss("hinge")
    with pytest.raises(ValueError, match="differ"):
        SupervisedLoss("mse")(lambda x: x, (torch.zeros(2, 3, 4), torch.zeros(3, 5)))

    class Short(_ClosedForm):
        def value_and_grads(self, model, batch):
            loss, grads = super().value_and_grads(model, batch)
            return loss, grads[:1]

    x = torch.randn(8, 6, generator=_gen(0), dtype=torch.float64)
    with pytest.raises(ValueError, match="gave 1 gradients for 3 parameters"):
        train(
            _ensemble("dln", torch.float64),
            Short("mse"),
            lr=0.1,
            steps=1,
            data=(x, torch.zeros(8, 3, dtype=torch.float64)),
        )
