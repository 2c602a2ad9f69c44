"""Scaling-law exponents: the slope of log test error against log sample size."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ExponentFit", "scaling_exponent"]


@dataclass(frozen=True)
class ExponentFit:
    """err ≈ C·N^{−exponent}: ``exponent`` = −slope of the least-squares line of log err on
    log N, ``intercept`` its value at log N = 0, ``r2`` the fit's coefficient of determination."""

    exponent: float
    intercept: float
    r2: float


def scaling_exponent(n: Sequence[float], err: Sequence[float]) -> ExponentFit:
    """Fit log err = intercept − exponent·log N by least squares (natural logs).

    >>> round(scaling_exponent([100, 200, 400], [1.0, 0.5, 0.25]).exponent, 6)
    1.0
    """
    x = np.asarray(n, dtype=np.float64)
    y = np.asarray(err, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or x.size < 2:
        raise ValueError(
            f"need matching 1-D sample sizes and errors with >= 2 points, got {x.shape}, {y.shape}"
        )
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or x.min() <= 0 or y.min() <= 0:
        raise ValueError(f"sample sizes and errors must be finite and > 0, got N={x}, err={y}")
    if np.unique(x).size < 2:
        raise ValueError(f"need at least two distinct sample sizes, got {x}")
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    ss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss if ss > 0 else 1.0
    return ExponentFit(float(-slope), float(intercept), r2)
