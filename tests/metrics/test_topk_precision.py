"""topk_singular_values' default float32 range finder and its float64 guard."""

from __future__ import annotations

import pytest
import torch
from _metrics_helpers import gen, planted

from rankscope.metrics import topk_singular_values

F64 = torch.float64
K = 10


def _rel(values: torch.Tensor, s: torch.Tensor) -> float:
    return float(((values - s[:K]).abs() / s[:K]).max())


@pytest.mark.parametrize(
    ("rate", "tail"),
    [
        (2.0, 0.0),  # s_k/‖A‖_F = 9e-3: float32 range only
        (0.5, 0.0),  # 1.5e-8: guard, two float64 iterations
        (0.5, 1e-9),  # steep head, flat tail: guard
        (1.0, 1e-6),  # 1e-4: guard
    ],
)
def test_default_matches_the_float64_range_finder(rate, tail):
    i = torch.arange(200, dtype=F64)
    s = torch.clamp(torch.exp(-i / rate), min=tail)
    a = planted(s, 200, 200, gen(1))
    default = topk_singular_values(a, K, generator=gen(2))
    exact = topk_singular_values(a, K, generator=gen(2), range_dtype=F64)
    assert default.values.dtype == F64
    assert _rel(default.values, s) <= max(10 * _rel(exact.values, s), 1e-12)
    # the residual bound stays a bound on the true error
    assert bool(((default.values - s[:K]).abs() <= default.residual + 1e-14).all())


def test_float32_range_alone_misses_a_steep_spectrum_that_the_guard_recovers():
    i = torch.arange(200, dtype=F64)
    s = torch.exp(-i / 0.5)  # s_10/s_1 = 2e-8, below what a float32 basis resolves
    a = planted(s, 200, 200, gen(3))
    f32 = topk_singular_values(a, K, generator=gen(4), range_dtype=torch.float32)
    default = topk_singular_values(a, K, generator=gen(4))
    assert _rel(f32.values, s) > 1e-2
    assert _rel(default.values, s) < 1e-9


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_entries_outside_float32_range_stay_in_float64(scale):
    i = torch.arange(60, dtype=F64)
    s = torch.exp(-i / 3)
    a = planted(s, 60, 60, gen(5)) * scale
    out = topk_singular_values(a, K, generator=gen(6))
    assert _rel(out.values / scale, s) < 1e-12


def test_float32_input_with_float64_output():
    i = torch.arange(120, dtype=F64)
    a = planted(torch.exp(-i / 4), 120, 120, gen(7)).float()
    ref = torch.linalg.svdvals(a.double())[:K]
    out = topk_singular_values(a, K, generator=gen(8), dtype=F64)
    assert out.values.dtype == F64
    torch.testing.assert_close(out.values, ref, rtol=1e-10, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("range_dtype", [None, torch.float32, F64])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_non_finite_input_raises_on_every_path(bad, range_dtype, dtype):
    a = torch.randn(40, 30, generator=gen(9), dtype=dtype)
    a[3, 5] = bad
    with pytest.raises(ValueError, match=r"input of shape \(40, 30\) contains 1 NaN/Inf"):
        topk_singular_values(a, 3, generator=gen(10), range_dtype=range_dtype)
