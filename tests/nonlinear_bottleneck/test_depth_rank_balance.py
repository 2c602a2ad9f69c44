"""depth-rank's rescaling identity: the gap it reports is the derivative of J along the
rescaling (W_ℓ, b_ℓ) → α(W_ℓ, b_ℓ), W_ℓ+1 → W_ℓ+1/α, checked by central differences."""

from __future__ import annotations

import pytest
import torch

from rankscope.experiments.bottleneck.depth_rank import SlopeConfig, _balance_gap
from rankscope.models import MLP


def _penalty(net: MLP, count_bias: bool) -> float:
    with torch.no_grad():
        w = sum(float((m * m).sum()) for m in net.weights)
        b = sum(float((v * v).sum()) for v in net.biases) if count_bias else 0.0
    return w + b


def _rescaled(net: MLP, layer: int, alpha: float) -> MLP:
    out = MLP(net.dims, "relu", True, generator=torch.Generator().manual_seed(0))
    out = out.to(torch.float64)
    out.load_state_dict(net.state_dict())
    with torch.no_grad():
        out.weights[layer].mul_(alpha)
        out.biases[layer].mul_(alpha)
        out.weights[layer + 1].div_(alpha)
    return out


@pytest.mark.parametrize("count_bias", [True, False])
def test_balance_gap_is_the_rescaling_derivative(count_bias):
    g = torch.Generator().manual_seed(3)
    net = MLP([5, 7, 6, 4], "relu", True, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for b in net.biases:
            b.copy_(torch.randn(b.shape, generator=g, dtype=torch.float64))
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    h = 1e-5
    derivs = []
    for layer in range(len(net.weights) - 1):
        up, down = _rescaled(net, layer, 1 + h), _rescaled(net, layer, 1 - h)
        with torch.no_grad():  # ReLU is positively homogeneous: f does not move
            torch.testing.assert_close(up(x), net(x), rtol=1e-12, atol=1e-12)
        derivs.append((_penalty(up, count_bias) - _penalty(down, count_bias)) / (2 * h))
    w = [float((m.detach() ** 2).sum()) for m in net.weights]
    expected = max(abs(d) / 2 for d in derivs) / (sum(w) / len(w))
    assert _balance_gap(net, count_bias) == pytest.approx(expected, rel=1e-6)


def test_balance_gap_vanishes_on_a_balanced_net():
    net = MLP([3, 3, 3], "relu", True, generator=torch.Generator().manual_seed(0))
    net = net.to(torch.float64)
    with torch.no_grad():
        net.weights[0].copy_(torch.eye(3, dtype=torch.float64) * 0.6)
        net.biases[0].copy_(torch.tensor([0.8, 0.0, 0.0], dtype=torch.float64))
        net.weights[1].copy_(torch.eye(3, dtype=torch.float64))  # 1.08 + 0.64 vs 3.0
    assert _balance_gap(net, False) == pytest.approx((3.0 - 1.08) / 2.04)
    with torch.no_grad():
        net.weights[1].copy_(torch.eye(3, dtype=torch.float64) * ((1.08 + 0.64) / 3) ** 0.5)
    assert _balance_gap(net, True) == pytest.approx(0.0, abs=1e-12)


def test_slope_config_refuses_an_unknown_init():
    with pytest.raises(ValueError, match=r"init must be 'he' or 'lecun', got 'xavier'"):
        SlopeConfig(init="xavier")
