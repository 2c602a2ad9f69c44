"""The generic property suite: every entry of METRICS against its declared metadata."""

from __future__ import annotations

import math

import pytest
import torch
from _metrics_helpers import gen, orthogonal
from torch.testing import assert_close

from rankscope.metrics import INPUT_KINDS, INVARIANCES, METRICS, MetricInfo

NAMES = sorted(METRICS)
SHAPES = [(7, 4), (4, 7), (5, 5)]
LABELS = torch.arange(12) % 3  # 3 classes of 4 samples for the labelled metrics


def _input(info: MetricInfo, shape, g, kind: str = "full") -> torch.Tensor:
    if info.input_kind == "labelled":
        shape = (LABELS.numel(), shape[1])
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    if info.input_kind == "labelled":
        x = x + 3 * torch.randn(3, shape[1], generator=g, dtype=torch.float64)[LABELS]
    if kind == "rank1":
        u = torch.randn(shape[0], 1, generator=g, dtype=torch.float64)
        x = u @ torch.randn(1, shape[1], generator=g, dtype=torch.float64)
    return x


def _eval(info: MetricInfo, x: torch.Tensor, labels=LABELS) -> torch.Tensor:
    return info.evaluate(x, labels if info.input_kind == "labelled" else None)


def _close(a, b, rtol=1e-7, atol=1e-9):
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    assert_close(a.to(torch.float64), b.to(torch.float64), rtol=rtol, atol=atol)


def test_registry_entries_are_well_formed():
    assert len(METRICS) >= 30
    for name, info in METRICS.items():
        assert info.name == name
        assert info.input_kind in INPUT_KINDS and info.invariance in INVARIANCES
        assert info.scale != "homogeneous" or info.degree != 0
        assert info.lower((4, 3)) <= info.upper((4, 3))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_invariance(name, shape):
    info, g = METRICS[name], gen(1)
    x = _input(info, shape, g)
    m, n = x.shape
    q = orthogonal(n, g)
    perm = torch.randperm(m, generator=g)
    labels = LABELS
    if info.invariance == "orthogonal":
        y = orthogonal(m, g) @ x @ q
    elif info.invariance == "feature_orthogonal":
        y, labels = (x @ q)[perm], LABELS[perm]
    else:
        y = x[perm][:, torch.randperm(n, generator=g)]
    _close(_eval(info, y, labels), _eval(info, x))


SCALED = [n for n in NAMES if METRICS[n].scale != "none"]


@pytest.mark.parametrize("name", SCALED)
@pytest.mark.parametrize("c", [0.01, 3.7])
def test_declared_scale_behaviour(name, c):
    info = METRICS[name]
    x = _input(info, (6, 4), gen(2))
    factor = 1.0 if info.scale == "invariant" else c**info.degree
    _close(_eval(info, c * x), factor * _eval(info, x))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["full", "rank1"])
def test_bounds(name, shape, kind):
    info = METRICS[name]
    value = _eval(info, _input(info, shape, gen(3), kind)).to(torch.float64)
    shp = (LABELS.numel(), shape[1]) if info.input_kind == "labelled" else shape
    lo, hi = info.lower(shp), info.upper(shp)
    assert not torch.isnan(value).any(), f"{name} is NaN on a {kind} input of shape {shape}"
    slack = 1e-9 * max(
        1.0, abs(lo) if math.isfinite(lo) else 1.0, abs(hi) if math.isfinite(hi) else 1.0
    )
    assert bool((value >= lo - slack).all()), f"{name}={value} below {lo} for {shape} {kind}"
    assert bool((value <= hi + slack).all()), f"{name}={value} above {hi} for {shape} {kind}"


BATCHED = [n for n in NAMES if METRICS[n].batched]


@pytest.mark.parametrize("name", BATCHED)
def test_batched_equals_looped(name):
    info, g = METRICS[name], gen(4)
    x = torch.stack([_input(info, (6, 4), g) for _ in range(3)]).reshape(3, 1, 6, 4)
    x[1, 0] = x[1, 0, :, :1] @ x[1, 0, :1, :]  # one rank-1 member
    batched = _eval(info, x)
    assert batched.shape == (3, 1)
    looped = torch.stack([_eval(info, x[i, 0]) for i in range(3)])
    _close(batched[:, 0], looped)


@pytest.mark.parametrize("name", BATCHED)
def test_empty_batch(name):
    out = _eval(METRICS[name], torch.zeros(0, 5, 3, dtype=torch.float64))
    assert out.shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_float32_matches_float64(name):
    info = METRICS[name]
    x = _input(info, (6, 4), gen(5))
    lo = _eval(info, x.to(torch.float32))
    assert lo.dtype in (torch.float64, torch.int64), f"{name} must compute in float64"
    _close(lo, _eval(info, x.to(torch.float32).to(torch.float64)), rtol=1e-10, atol=1e-12)
    _close(lo, _eval(info, x), rtol=1e-4, atol=1e-5)


ZERO_DEFINED = [n for n in NAMES if METRICS[n].zero_value is not None]


@pytest.mark.parametrize("name", ZERO_DEFINED)
@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_zero_input(name, shape):
    info = METRICS[name]
    out = _eval(info, torch.zeros(*shape, dtype=torch.float64))
    _close(out, torch.tensor(info.zero_value))


DIFFERENTIABLE = [
    n for n in NAMES if METRICS[n].differentiable and METRICS[n].input_kind != "labelled"
]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_declared_differentiable_gives_finite_gradients(name):
    info = METRICS[name]
    x = _input(info, (6, 4), gen(6)).requires_grad_(True)
    (grad,) = torch.autograd.grad(_eval(info, x).sum(), x)
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0 or info.scale == "invariant"
