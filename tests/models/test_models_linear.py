"""Deep linear networks: init, product, balanced factors, balancedness vs numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.models import DeepLinear, balanced_factors, balancedness, end_to_end


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _np_chain(ws: list[np.ndarray]) -> np.ndarray:
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    return a


def test_init_is_seeded_and_has_requested_std() -> None:
    a = DeepLinear([30, 200, 40], sigma=0.3, generator=_gen(1), dtype=torch.float64)
    b = DeepLinear([30, 200, 40], sigma=0.3, generator=_gen(1), dtype=torch.float64)
    c = DeepLinear([30, 200, 40], sigma=0.3, generator=_gen(2), dtype=torch.float64)
    for wa, wb in zip(a.weights, b.weights):
        assert torch.equal(wa, wb)
    assert not torch.equal(a.weights[0], c.weights[0])
    assert [tuple(w.shape) for w in a.weights] == [(200, 30), (40, 200)]
    allw = torch.cat([w.detach().flatten() for w in a.weights])
    assert abs(float(allw.std()) - 0.3) < 0.01  # 14 000 draws: std error ~0.002
    # per-layer sigma
    d = DeepLinear([5, 5, 5], sigma=[1.0, 1e-3], generator=_gen(0), dtype=torch.float64)
    assert (
        float(d.weights[1].detach().abs().max()) < 1e-2 < float(d.weights[0].detach().abs().max())
    )


def test_product_and_forward_match_numpy() -> None:
    net = DeepLinear([4, 6, 5, 3], sigma=0.5, generator=_gen(3), dtype=torch.float64)
    ws = [w.detach().numpy() for w in net.weights]
    a = _np_chain(ws)
    assert_close(net.product().detach(), torch.from_numpy(a))
    x = torch.randn(7, 4, generator=_gen(4), dtype=torch.float64)
    assert_close(net(x).detach(), torch.from_numpy(x.numpy() @ a.T))


def test_end_to_end_batched_equals_looped() -> None:
    g = _gen(5)
    ws = [torch.randn(3, 4, 2, generator=g), torch.randn(3, 5, 4, generator=g)]
    batched = end_to_end(ws)
    for e in range(3):
        assert_close(batched[e], ws[1][e] @ ws[0][e])


def test_balanced_factors_three_factor_square_case() -> None:
    p = torch.randn(4, 4, generator=_gen(6), dtype=torch.float64)
    w1, w2, w3 = balanced_factors(p, 3)
    u, s, vt = np.linalg.svd(p.numpy())
    root = np.diag(s ** (1 / 3))
    # signs of singular vectors are fixed per pair: compare through sign-invariant forms
    assert_close(w2, torch.from_numpy(root))
    assert_close(w3 @ w2 @ w1, p)
    assert_close(w1.T @ w1, torch.from_numpy(vt.T @ root @ root @ vt))
    assert_close(w3 @ w3.T, torch.from_numpy(u @ root @ root @ u.T))


@pytest.mark.parametrize(
    ("shape", "depth", "width"),
    [((5, 3), 2, None), ((3, 6), 4, None), ((4, 4), 3, 7), ((2, 5, 3), 3, None)],
)
def test_balanced_factors_reproduce_product_and_are_balanced(shape, depth, width) -> None:
    p = torch.randn(*shape, generator=_gen(7), dtype=torch.float64)
    ws = balanced_factors(p, depth, width=width)
    assert len(ws) == depth
    assert_close(end_to_end(ws), p)
    d = balancedness(ws)
    assert d.shape == (*shape[:-2], depth - 1)
    assert float(d.abs().max()) < 1e-12
    if width is not None:
        assert ws[0].shape[-2] == width


def test_balanced_factors_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="width must be >="):
        balanced_factors(torch.ones(4, 4), 3, width=2)
    with pytest.raises(ValueError, match="depth"):
        balanced_factors(torch.ones(4, 4), 0)
    assert_close(balanced_factors(torch.ones(2, 3), 1)[0], torch.ones(2, 3))


def test_balancedness_matches_numpy() -> None:
    g = _gen(8)
    ws = [
        torch.randn(5, 3, generator=g, dtype=torch.float64),
        torch.randn(4, 5, generator=g, dtype=torch.float64),
        torch.randn(2, 4, generator=g, dtype=torch.float64),
    ]
    arr = [w.numpy() for w in ws]
    want = [np.linalg.norm(arr[i + 1].T @ arr[i + 1] - arr[i] @ arr[i].T) for i in range(2)]
    assert_close(balancedness(ws), torch.tensor(want, dtype=torch.float64))
    assert balancedness(ws[:1]).shape == (0,)


def test_bad_dims_and_chains_raise_clearly() -> None:
    with pytest.raises(ValueError, match=r"dims must hold"):
        DeepLinear([3], sigma=1.0, generator=_gen(0))
    with pytest.raises(ValueError, match=r"dims must hold"):
        DeepLinear([3, 0, 2], sigma=1.0, generator=_gen(0))
    with pytest.raises(ValueError, match="one per layer"):
        DeepLinear([3, 4, 2], sigma=[1.0, 2.0, 3.0], generator=_gen(0))
    with pytest.raises(ValueError, match="do not chain"):
        end_to_end([torch.ones(3, 2), torch.ones(2, 2)])
    for bad in (float("nan"), -0.1, [1.0, float("inf")]):
        with pytest.raises(ValueError, match=r"sigma must be finite and >= 0.*got"):
            DeepLinear([3, 4, 2], sigma=bad, generator=_gen(0))
    zero = DeepLinear([3, 4, 2], sigma=0.0, generator=_gen(0))  # zero init stays allowed
    assert all(int(torch.count_nonzero(w)) == 0 for w in zero.weights)


def test_from_weights_copies() -> None:
    ws = [torch.ones(3, 2), torch.full((1, 3), 2.0)]
    net = DeepLinear.from_weights(ws)
    assert net.dims == [2, 3, 1]
    assert_close(net.product().detach(), torch.full((1, 2), 6.0))
    with torch.no_grad():
        net.weights[0].zero_()
    assert float(ws[0].sum()) == 6.0  # the original is untouched
