"""Autograd-free ensemble steps (SupervisedLoss through the engine's value_and_grads hook):
the same bits as the autograd path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rankscope.models import MLP, DeepLinearEnsemble, MLPEnsemble
from rankscope.train import cross_entropy, mse, train
from rankscope.train.losses import SupervisedLoss

SEEDS = [11, 12, 13]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["mse", "cross_entropy"])
@pytest.mark.parametrize("shape", [(37, 4), (5, 37, 4), (3, 2, 11, 6)])
def test_value_and_grad_is_autograd_to_the_bit(dtype, name, shape) -> None:
    loss = SupervisedLoss(name)
    g = _gen(0)
    out = torch.randn(shape, generator=g, dtype=dtype)
    if name == "mse":
        target = torch.randn(shape[-2:], generator=g, dtype=dtype)
    else:
        target = torch.randint(shape[-1], shape[:-1], generator=g)
    leaf = out.clone().requires_grad_()
    ref = loss.fn(leaf, target)
    ref.sum().backward()
    value, grad = loss.value_and_grad(out.clone(), target)
    assert torch.equal(value, ref.detach())
    assert torch.equal(grad, leaf.grad)


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
        loss = SupervisedLoss("mse") if closed else (lambda m, b: mse(m(b[0]), b[1]))
    else:
        data = (x, torch.randint(3, (48,), generator=_gen(2)))
        loss = (
            SupervisedLoss("cross_entropy")
            if closed
            else (lambda m, b: cross_entropy(m(b[0]), b[1]))
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
    ("gd", None, "per_member", "weights", torch.float64),
    ("sgd", 8, "per_member", "all", torch.float64),
    ("sgd", 8, "shared", "weights", torch.float32),
    ("adam", None, "per_member", "all", torch.float32),
    ("adam", 12, "per_member", "weights", torch.float64),
]


@pytest.mark.parametrize("kind", ["dln", "mlp", "mlp-bias"])
@pytest.mark.parametrize(("optimizer", "batch_size", "batches", "l2_params", "dtype"), CASES)
def test_closed_form_steps_equal_autograd_steps(
    kind, optimizer, batch_size, batches, l2_params, dtype
) -> None:
    lrs = [0.01, 0.004, 0.016] if optimizer == "adam" else [0.05, 0.02, 0.08]
    args = (optimizer, batch_size, batches, l2_params, dtype, lrs)
    fast, fast_res = _run(kind, True, *args)
    slow, slow_res = _run(kind, False, *args)
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        _assert_same_up_to_rounding(a.detach(), b.detach())
    tol = _ULPS * torch.finfo(dtype).eps
    np.testing.assert_allclose(
        fast_res.history["loss"], slow_res.history["loss"], rtol=tol, atol=tol
    )
    assert fast_res.status == slow_res.status


# The two paths compute the same sums, but a full-batch matmul may add them in another order
# (bit-equal on one CPU, 2e-16 / 9e-8 relative apart on an AVX2 AMD EPYC): compare to a few
# units of roundoff of the dtype, relative to the tensor's largest entry.
_ULPS = 64


def _assert_same_up_to_rounding(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = float(b.abs().max()) if b.numel() else 0.0
    tol = _ULPS * torch.finfo(b.dtype).eps * max(scale, 1e-30)
    torch.testing.assert_close(a, b, rtol=0.0, atol=tol)


def test_closed_form_masks_a_diverging_member() -> None:
    """Member 2's learning rate blows it up; the other two go on, as on the autograd path."""
    args = ("gd", None, "per_member", "weights", torch.float64, [0.05, 0.02, 50.0])
    fast, fast_res = _run("dln", True, *args)
    slow, slow_res = _run("dln", False, *args)
    assert fast_res.status == slow_res.status == ["completed", "completed", "diverged"]
    assert fast_res.diverged_step == slow_res.diverged_step
    for a, b in zip(fast.parameters(), slow.parameters(), strict=True):
        _assert_same_up_to_rounding(a.detach()[:2], b.detach()[:2])


def test_closed_form_member_equals_an_independent_run() -> None:
    x = torch.randn(40, 5, generator=_gen(0), dtype=torch.float64)
    y = torch.randint(4, (40,), generator=_gen(1))
    loss = SupervisedLoss("cross_entropy")
    ens = MLPEnsemble([5, 7, 4], bias=True, generators=[_gen(s) for s in SEEDS],
                      dtype=torch.float64)  # fmt: skip
    train(ens, loss, optimizer="adam", lr=0.01, steps=20, data=(x, y), l2=1e-3)
    for e, seed in enumerate(SEEDS):
        net = MLP([5, 7, 4], bias=True, generator=_gen(seed), dtype=torch.float64)
        train(net, loss, optimizer="adam", lr=0.01, steps=20, data=(x, y), l2=1e-3)
        for w_single, w_stack in zip(net.weights, ens.weights, strict=True):
            torch.testing.assert_close(
                w_stack[e].detach(), w_single.detach(), rtol=1e-9, atol=1e-11
            )


def test_other_activations_fall_back_to_autograd() -> None:
    x = torch.randn(30, 4, generator=_gen(0), dtype=torch.float64)
    y = torch.randint(3, (30,), generator=_gen(1))
    runs = []
    for loss in (SupervisedLoss("cross_entropy"), lambda m, b: cross_entropy(m(b[0]), b[1])):
        ens = MLPEnsemble([4, 6, 3], activation="tanh", generators=[_gen(s) for s in SEEDS],
                          dtype=torch.float64)  # fmt: skip
        assert not ens.supports_closed_form("cross_entropy")
        assert not SupervisedLoss("cross_entropy").has_closed_form(ens)
        train(ens, loss, lr=0.1, steps=10, data=(x, y))
        runs.append([w.detach() for w in ens.weights])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_supervised_loss_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown supervised loss 'hinge'"):
        SupervisedLoss("hinge")
    with pytest.raises(ValueError, match="differ"):
        SupervisedLoss("mse").value_and_grad(torch.zeros(2, 3, 4), torch.zeros(3, 5))


def test_the_hook_is_used_only_where_it_applies_and_checked() -> None:
    """Single networks and partly frozen ensembles train by autograd; a hook that returns the
    wrong number of gradients is refused."""
    x = torch.randn(20, 5, generator=_gen(0), dtype=torch.float64)
    y = torch.randint(4, (20,), generator=_gen(1))
    loss = SupervisedLoss("cross_entropy")
    assert not loss.has_closed_form(MLP([5, 7, 4], generator=_gen(2), dtype=torch.float64))
    ens = MLPEnsemble([5, 7, 4], generators=[_gen(s) for s in SEEDS], dtype=torch.float64)
    assert loss.has_closed_form(ens)
    ens.weights[0].requires_grad_(False)
    frozen = ens.weights[0].detach().clone()
    train(ens, loss, lr=0.1, steps=3, data=(x, y))  # autograd: the hook covers every parameter
    assert torch.equal(ens.weights[0].detach(), frozen)

    class Short(SupervisedLoss):
        def value_and_grads(self, model, batch):
            losses, grads = super().value_and_grads(model, batch)
            return losses, grads[:1]

    ens = MLPEnsemble([5, 7, 4], generators=[_gen(s) for s in SEEDS], dtype=torch.float64)
    with pytest.raises(ValueError, match="gave 1 gradients for 2 parameters"):
        train(ens, Short("cross_entropy"), lr=0.1, steps=1, data=(x, y))
