"""MLP: forward against numpy, hidden layers, He init, per-sample signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.models import MLP


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("activation", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("bias", [False, True])
def test_forward_with_hidden_matches_numpy(activation: str, bias: bool) -> None:
    net = MLP([5, 7, 6, 3], activation, bias, generator=_gen(0), dtype=torch.float64)
    if bias:
        with torch.no_grad():
            for b in net.biases:
                b.normal_(generator=_gen(1))
    x = torch.randn(9, 5, generator=_gen(2), dtype=torch.float64)
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "identity": lambda z: z}[activation]
    h = x.numpy()
    hs_ref, zs_ref = [h], []
    for l, w in enumerate(net.weights):
        z = h @ w.detach().numpy().T + (net.biases[l].detach().numpy() if bias else 0.0)
        zs_ref.append(z)
        if l < 2:
            h = act(z)
            hs_ref.append(h)
    out, hs, zs = net.forward_with_hidden(x)
    assert len(hs) == 3 and len(zs) == 3
    for got, want in zip(hs + zs, hs_ref + zs_ref):
        assert_close(got.detach(), torch.from_numpy(want))
    assert_close(out.detach(), torch.from_numpy(zs_ref[-1]))
    assert_close(net(x).detach(), out.detach())


def test_he_init_std_and_seeding() -> None:
    net = MLP([400, 300, 10], generator=_gen(3), dtype=torch.float64)
    assert abs(float(net.weights[0].detach().std()) / math.sqrt(2 / 400) - 1) < 0.02
    same = MLP([400, 300, 10], bias=True, generator=_gen(3), dtype=torch.float64)
    assert torch.equal(net.weights[1], same.weights[1])  # biases draw nothing
    lecun = MLP([400, 300, 10], init="lecun", generator=_gen(3), dtype=torch.float64)
    assert_close(lecun.weights[0] * math.sqrt(2), net.weights[0])
    assert MLP([4, 2], generator=_gen(0)).weights[0].dtype == torch.float32


def test_per_sample_signals_give_the_weight_gradient() -> None:
    """∇_{W_l} L = (1/N) Δ_l H_{l−1}ᵀ with δ from the summed loss (docs/results.md)."""
    net = MLP([6, 8, 8, 4], generator=_gen(4), dtype=torch.float64)
    x = torch.randn(11, 6, generator=_gen(5), dtype=torch.float64)
    y = torch.randint(4, (11,), generator=_gen(6))
    out, hs, zs = net.forward_with_hidden(x)
    summed = torch.nn.functional.cross_entropy(out, y, reduction="sum")
    deltas = torch.autograd.grad(summed, zs, retain_graph=True)
    grads = torch.autograd.grad(summed / 11, list(net.weights))
    for l in range(3):
        assert_close(grads[l], deltas[l].T @ hs[l].detach() / 11)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="unknown activation"):
        MLP([3, 2], "sigmoidish", generator=_gen(0))
    with pytest.raises(ValueError, match="unknown init"):
        MLP([3, 2], init="xavier", generator=_gen(0))
