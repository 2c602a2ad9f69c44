"""Stacked ensembles run the single networks' own forward code on (E, ...) weights."""

from __future__ import annotations

import pytest
import torch

from rankscope.models import MLP, DeepLinear, DeepLinearEnsemble, MLPEnsemble

SEEDS = [3, 4, 5]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_deep_linear_ensemble_members_are_the_seeded_networks() -> None:
    sig = [0.5, 0.1, 1.0]
    ens = DeepLinearEnsemble(
        [4, 6, 3], sigma=sig, generators=[_gen(s) for s in SEEDS], dtype=torch.float64
    )
    x = torch.randn(7, 4, generator=_gen(0), dtype=torch.float64)
    x_each = torch.randn(3, 7, 4, generator=_gen(1), dtype=torch.float64)
    assert ens.size == 3 and ens.depth == 2 and ens.dims == [4, 6, 3]
    out, out_each, prod = ens(x), ens(x_each), ens.product()
    assert out.shape == (3, 7, 3) and prod.shape == (3, 3, 4)
    for e, seed in enumerate(SEEDS):
        net = DeepLinear([4, 6, 3], sigma=sig[e], generator=_gen(seed), dtype=torch.float64)
        for w_stack, w in zip(ens.weights, net.weights, strict=True):
            assert torch.equal(w_stack[e], w)
        torch.testing.assert_close(out[e], net(x), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(out_each[e], net(x_each[e]), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(prod[e], net.product(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(ens.member(e).product(), prod[e], rtol=1e-12, atol=1e-14)
    again = DeepLinearEnsemble.from_members([ens.member(e) for e in range(3)])
    assert all(torch.equal(a, b) for a, b in zip(again.weights, ens.weights, strict=True))
    with pytest.raises(ValueError, match="members must share dims"):
        DeepLinearEnsemble.from_members(
            [
                DeepLinear([2, 2], sigma=1.0, generator=_gen(0)),
                DeepLinear([2, 3], sigma=1.0, generator=_gen(0)),
            ]
        )


@pytest.mark.parametrize("bias", [False, True])
def test_mlp_ensemble_forward_and_hidden_equal_each_member(bias: bool) -> None:
    inits = ["he", "lecun", 0.2]
    ens = MLPEnsemble(
        [5, 8, 8, 2],
        "tanh",
        bias,
        init=inits,
        generators=[_gen(s) for s in SEEDS],
        dtype=torch.float64,
    )
    if bias:
        with torch.no_grad():
            for b in ens.biases:
                b.normal_(generator=_gen(9))
    x = torch.randn(6, 5, generator=_gen(2), dtype=torch.float64)
    out, hs, zs = ens.forward_with_hidden(x)
    assert [h.shape for h in hs[1:]] == [(3, 6, 8)] * 2 and out.shape == (3, 6, 2)
    torch.testing.assert_close(ens(x), out)
    for e in range(3):
        net = ens.member(e)
        assert isinstance(net, MLP) and net.activation == "tanh"
        fresh = MLP(
            [5, 8, 8, 2], "tanh", bias, init=inits[e], generator=_gen(SEEDS[e]), dtype=torch.float64
        )
        assert torch.equal(fresh.weights[1], ens.weights[1][e])
        o, h, z = net.forward_with_hidden(x)
        torch.testing.assert_close(out[e], o, rtol=1e-12, atol=1e-14)
        for a, b in zip(hs[1:] + zs, h[1:] + z, strict=True):
            torch.testing.assert_close(a[e], b, rtol=1e-12, atol=1e-14)


def test_bad_ensemble_arguments_raise_clearly() -> None:
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        MLPEnsemble([2, 2], generators=[])
    with pytest.raises(ValueError, match="one value or 2 values"):
        MLPEnsemble([2, 2], init=["he", "he", "he"], generators=[_gen(0), _gen(1)])
