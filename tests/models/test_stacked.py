"""StackedModule: E copies of any module trained as one ensemble equal E independent runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rankscope.models import StackedModule
from rankscope.train import train

E = 3


def _nets(seed: int = 0) -> list[nn.Module]:
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).double() for _ in range(E)]


def _data():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(20, 4, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64)
    return x, y


def mse(m, batch):
    x, y = batch
    return (m(x) - y).square().mean(dim=(-2, -1))  # scalar for one net, (E,) for a stack


def _max_diff(stack: StackedModule, nets: list[nn.Module]) -> float:
    worst = 0.0
    for e, net in enumerate(nets):
        for (name, p), (_, q) in zip(stack.member(e).named_parameters(), net.named_parameters()):
            assert p.shape == q.shape, name
            worst = max(worst, float((p - q).detach().abs().max()))
    return worst


@pytest.mark.parametrize(
    "optimizer, kwargs",
    [("gd", {}), ("sgd", {"batch_size": 5}), ("adam", {})],
)
def test_stack_trains_like_independent_runs(optimizer, kwargs):
    nets, data = _nets(), _data()
    stack = StackedModule.from_modules(nets)  # copies: nets keep their initial weights
    lrs, l2s = [0.05, 0.1, 0.02], [0.0, 1e-3, 1e-2]
    seeds = [11, 12, 13]
    gens = [torch.Generator().manual_seed(s) for s in seeds] if optimizer == "sgd" else None
    res = train(
        stack, mse, optimizer=optimizer, lr=lrs, l2=l2s, steps=30, data=data,
        generator=gens, **kwargs,
    )  # fmt: skip
    losses = []
    for e, net in enumerate(nets):
        gen = torch.Generator().manual_seed(seeds[e]) if optimizer == "sgd" else None
        one = train(
            net, mse, optimizer=optimizer, lr=lrs[e], l2=l2s[e], steps=30, data=data,
            generator=gen, **kwargs,
        )  # fmt: skip
        losses.append(one.final_loss)
    assert _max_diff(stack, nets) < 1e-12
    torch.testing.assert_close(
        torch.as_tensor(res.final_losses, dtype=torch.float64),
        torch.tensor(losses, dtype=torch.float64),
        rtol=1e-12,
        atol=0.0,
    )
    assert all(n.weight.grad is None for n in stack.member(0).modules() if hasattr(n, "weight"))


def test_diverging_member_is_frozen_while_others_finish():
    nets, data = _nets(1), _data()
    stack = StackedModule.from_modules(nets)
    lrs = [0.05, 1e6, 0.1]  # member 1 blows up
    res = train(stack, mse, optimizer="gd", lr=lrs, steps=25, data=data, on_diverge="stop")
    assert res.statuses[1] == "diverged" and res.statuses[0] == res.statuses[2] == "completed"
    solo = [
        train(net, mse, optimizer="gd", lr=lr, steps=25, data=data, on_diverge="stop")
        for net, lr in zip(nets, lrs)
    ]
    assert solo[1].status == "diverged" and res.diverged_steps[1] == solo[1].diverged_step
    for e in (0, 2):
        worst = max(
            float((p - q).detach().abs().max())
            for p, q in zip(stack.member(e).parameters(), nets[e].parameters())
        )
        assert worst < 1e-12


def test_forward_shared_and_per_member_inputs():
    nets = _nets(2)
    stack = StackedModule.from_modules(nets)
    x = torch.randn(5, 4, dtype=torch.float64)
    xs = torch.randn(E, 5, 4, dtype=torch.float64)
    out, outs = stack(x), stack(xs)
    assert out.shape == outs.shape == (E, 5, 2)
    for e, net in enumerate(nets):
        torch.testing.assert_close(out[e], net(x), rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(outs[e], net(xs[e]), rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="leading 3"):
        stack(torch.randn(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="ensemble size 3"):
        stack(torch.randn(2, 5, 4, dtype=torch.float64))


def test_member_is_independent_copy():
    nets = _nets(3)
    stack = StackedModule.from_modules(nets)
    m = stack.member(1)
    assert type(m) is nn.Sequential
    with torch.no_grad():
        m[0].weight.add_(1.0)
    assert torch.equal(stack.member(1)[0].weight, nets[1][0].weight)
    assert not torch.equal(m[0].weight, nets[1][0].weight)
    with pytest.raises(IndexError, match="got 3"):
        stack.member(3)


def test_buffers_in_eval_mode_are_stacked():
    torch.manual_seed(4)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double() for _ in range(2)]
    for i, net in enumerate(nets):
        net[1].running_mean.fill_(float(i))
        net.eval()
    stack = StackedModule.from_modules(nets)
    x = torch.randn(6, 3, dtype=torch.float64)
    for e, net in enumerate(nets):
        torch.testing.assert_close(stack(x)[e], net(x), rtol=1e-13, atol=1e-15)
    assert torch.equal(stack.member(1)[1].running_mean, nets[1][1].running_mean)


def test_unsupported_modules_are_refused_by_name():
    bn = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)) for _ in range(2)]
    with pytest.raises(TypeError, match=r"'1' \(BatchNorm1d\).*running statistics"):
        StackedModule.from_modules(bn)
    drop = [nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)) for _ in range(2)]
    with pytest.raises(TypeError, match=r"Dropout.*random"):
        StackedModule.from_modules(drop)
    ok = StackedModule.from_modules([b.eval() for b in bn])
    with pytest.raises(TypeError, match="BatchNorm1d"):
        ok.train()
    with pytest.raises(ValueError, match="member 1 differs"):
        StackedModule.from_modules([nn.Linear(3, 4), nn.Linear(3, 5)])
    with pytest.raises(TypeError, match=r"member 0 must be an nn\.Module, got str"):
        StackedModule.from_modules(["net"])
    with pytest.raises(ValueError, match="at least one module"):
        StackedModule.from_modules([])
    with pytest.raises(TypeError, match="from_modules"):
        StackedModule()
