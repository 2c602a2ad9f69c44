"""Collapse-family data and measurements: splits, mixtures, bad data, streaming NC, undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.experiments.collapse.data import check_labels, digits_split, gaussian_mixture
from rankscope.experiments.collapse.measure import collapse_stats, measure_network
from rankscope.metrics import ClassStatsAccumulator, nc1, tcv1, tcv2

F64 = torch.float64


def test_digits_split_is_deterministic_scaled_and_centred():
    a = digits_split(np.random.default_rng(3), n_train=200)
    b = digits_split(np.random.default_rng(3), n_train=200)
    c = digits_split(np.random.default_rng(4), n_train=200)
    assert_close(a.x_train, b.x_train)
    assert not torch.equal(a.x_train, c.x_train)
    assert a.x_train.shape == (200, 64) and a.num_classes == 10
    assert_close(a.x_train.mean(0), torch.zeros(64, dtype=F64), atol=1e-12, rtol=0)
    per_pixel = a.x_train.max(0).values - a.x_train.min(0).values  # pixels / 16 lie in [0, 1]
    assert float(per_pixel.max()) <= 1.0 + 1e-12 and float(per_pixel.max()) > 0.9
    assert a.y_test.numel() == round(0.2 * 1797)


def test_gaussian_mixture_spread_scales_only_the_noise():
    s0 = gaussian_mixture(
        torch.Generator().manual_seed(0), num_classes=3, dim=5, per_class=4, spread=0.0
    )
    s2 = gaussian_mixture(
        torch.Generator().manual_seed(0), num_classes=3, dim=5, per_class=4, spread=2.0
    )
    assert s0.x_train.shape == (12, 5) and s0.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert_close(s0.x_train[0], s0.x_train[3])  # s = 0: every point sits on its centre
    assert_close((s2.x_train - s0.x_train)[4:8].norm(dim=1).mean() > 0, torch.tensor(True))


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.zeros(4, 2), torch.tensor([0, 1, 2, 1]), r"labels must lie in \[0, 2\)"),
        (torch.zeros(4, 2), torch.tensor([0, -1, 1, 1]), r"got values in \[-1, 1\]"),
        (torch.zeros(4, 2), torch.tensor([1, 1, 1, 1]), "at least 2 classes"),
        (torch.zeros(4, 2), torch.tensor([0, 1, 0]), "mismatched lengths: 4 inputs, 3 labels"),
        (torch.zeros(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]), "integer tensor"),
        (torch.zeros(4), torch.tensor([0, 1, 0, 1]), r"shape \(N, d\)"),
    ],
)
def test_bad_data_gets_a_clear_error(x, y, message):
    with pytest.raises(ValueError, match=message):
        check_labels(x, y, 2)


def test_measure_network_rejects_bad_labels():
    w = [torch.eye(3, dtype=F64), torch.ones(2, 3, dtype=F64)]
    with pytest.raises(ValueError, match="labels"):
        measure_network(
            w, torch.ones(4, 3, dtype=F64), torch.tensor([0, 1, 2, 1]), lam=1.0, num_classes=2
        )
    with pytest.raises(ValueError, match="mismatched lengths"):
        measure_network(
            w, torch.ones(4, 3, dtype=F64), torch.tensor([0, 1, 1]), lam=1.0, num_classes=2
        )


def _numpy_reference(h: np.ndarray, y: np.ndarray, k: int) -> dict:
    means = np.stack([h[y == c].mean(0) for c in range(k)])
    centred = h - means[y]
    sw = centred.T @ centred / len(y)
    mg = h.mean(0)
    sb = sum(np.outer(m - mg, m - mg) for m in means) / k
    return {
        "tcv1": np.linalg.norm(centred, axis=1).mean(),
        "tcv2": np.linalg.norm(centred) / np.sqrt(len(y)),
        "nc1_pinv": np.trace(sw @ np.linalg.pinv(sb)) / k,
        "nc1_quotient": np.trace(sw) / np.trace(sb),
    }


def test_streaming_nc_over_minibatches_equals_one_shot_and_numpy():
    g = torch.Generator().manual_seed(5)
    w = torch.randn(16, 8, generator=g, dtype=F64)
    x = torch.randn(90, 8, generator=g, dtype=F64)
    y = torch.randint(0, 5, (90,), generator=g)
    h = torch.relu(x @ w.T)  # hidden features of a random layer, (N, 16)
    acc = ClassStatsAccumulator(5)
    batches = [(h[i : i + 7], y[i : i + 7]) for i in range(0, 90, 7)]
    for hb, yb in batches:
        acc.update(hb, yb)
    one_shot = collapse_stats(h, y, 5)
    ref = _numpy_reference(h.numpy(), y.numpy(), 5)
    streamed = {
        "tcv1": float(tcv1(acc, batches=batches)),
        "tcv2": float(tcv2(acc)),
        "nc1_pinv": float(nc1(acc)),
        "nc1_quotient": float(nc1(acc, variant="quotient")),
    }
    for key, value in ref.items():
        assert streamed[key] == pytest.approx(value, rel=1e-10)
        assert getattr(one_shot, key) == pytest.approx(value, rel=1e-10)


def test_collapsed_representation_is_undefined_not_a_crash():
    y = torch.tensor([0, 0, 1, 1, 2])
    out = collapse_stats(torch.zeros(5, 3, dtype=F64), y, 3)
    assert out.tcv1 == 0.0 and out.tcv2 == 0.0
    for key in ("nc1_pinv", "nc1_svd", "nc1_quotient", "cdnv"):
        assert math.isnan(getattr(out, key))
        assert "class means coincide" in out.undefined[key]


def test_zero_network_is_measured_with_reasons():
    ws = [torch.zeros(6, 4, dtype=F64), torch.zeros(3, 6, dtype=F64)]
    x = torch.randn(9, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = torch.arange(9) % 3
    layers, constant = measure_network(ws, x, y, lam=100.0, num_classes=3)
    assert constant is True
    assert all(e.holds for e in layers)
    assert math.isnan(layers[0].rel_tail) and "zero matrix" in layers[0].undefined["rel_tail"]
    assert math.isnan(layers[1].nc_prev.nc1_pinv)
