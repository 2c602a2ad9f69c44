"""log_steps: sorted, unique, bounded, includes 0 and total, exact count, geometric."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.train import log_steps
from rankscope.train.schedule import resolve_log_at


@pytest.mark.parametrize("spacing", ["log", "linear"])
@pytest.mark.parametrize("total", [0, 1, 2, 7, 30, 99, 1000, 123_457])
@pytest.mark.parametrize("n", [2, 3, 10, 50])
def test_properties(spacing: str, total: int, n: int) -> None:
    steps = log_steps(total, n, spacing)
    assert steps == sorted(set(steps)), steps
    assert steps[0] == 0 and steps[-1] == total
    assert all(isinstance(s, int) for s in steps)
    assert len(steps) == min(n, total + 1)


def test_log_spacing_is_geometric_and_linear_is_even() -> None:
    steps = np.array(log_steps(10**6, 25)[1:], dtype=float)
    ratios = steps[1:] / steps[:-1]
    assert np.allclose(ratios[5:], ratios[-1], rtol=0.02)  # constant ratio once away from 1
    lin = np.diff(log_steps(1000, 11, "linear"))
    assert set(lin.tolist()) == {100}


def test_bad_input_and_log_at_forms() -> None:
    with pytest.raises(ValueError, match="spacing"):
        log_steps(10, 3, "cubic")
    with pytest.raises(ValueError, match="n must be"):
        log_steps(10, 1)
    with pytest.raises(ValueError, match="total must be"):
        log_steps(-1, 3)
    assert resolve_log_at(None, 9) == {0, 9}
    assert resolve_log_at(4, 9) == {0, 4, 8, 9}
    with pytest.raises(ValueError, match="interval"):
        resolve_log_at(0, 9)
