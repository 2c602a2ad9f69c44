"""The per-singular-value problem of L2-regularized deep linear nets (docs/results.md).

Full observation, C = ½‖A − Y‖², Y = U diag(y) Vᵀ; the minimizer shares U and V, so each
singular value solves a ≥ 0 ↦ f(a) = ½(a − y)² + λL·a^{2/L}, with f′(a) = a − y + 2λ·a^{(2−L)/L}.

- L = 2: soft thresholding a* = max(y − 2λ, 0) (convex, no spurious minima).
- L ≥ 3: f′(0+) = +∞, so a = 0 is always a local minimum; f′ is convex on (0, ∞) and has at
  most two positive roots (a local maximum and, the larger one, a local minimum of f). The
  global minimum is the better of 0 and the larger root.
"""

from __future__ import annotations

from scipy.optimize import brentq

__all__ = [
    "global_minimizer",
    "is_stationary_value",
    "scalar_objective",
    "soft_threshold",
    "stationary_points",
]


def scalar_objective(a: float, y: float, lam: float, depth: int) -> float:
    """f(a) = ½(a − y)² + λL·a^{2/L} (a ≥ 0)."""
    return 0.5 * (a - y) ** 2 + lam * depth * a ** (2.0 / depth)


def soft_threshold(y: float, lam: float) -> float:
    """The L = 2 minimizer max(y − 2λ, 0)."""
    return max(y - 2 * lam, 0.0)


def stationary_points(y: float, lam: float, depth: int) -> list[float]:
    """The positive roots of f′, ascending (0, 1 or 2 values)."""
    if depth == 2:
        root = y - 2 * lam
        return [root] if root > 0 else []
    p = (depth - 2) / depth

    def g(a: float) -> float:  # f′(a)
        return a - y + 2 * lam * a ** (-p)

    a_min = (2 * lam * p) ** (1.0 / (p + 1))  # where f′ is smallest
    if g(a_min) >= 0:
        return [a_min] if g(a_min) == 0 else []
    lo = a_min
    while g(lo) < 0:  # walk left until f′ is positive again (f′ → +∞ at 0+)
        lo /= 2
    hi = max(2 * a_min, abs(y) + 1.0)
    small = brentq(g, lo, a_min, xtol=1e-14, rtol=1e-14)
    large = brentq(g, a_min, hi, xtol=1e-14, rtol=1e-14)
    return [small, large]


def global_minimizer(y: float, lam: float, depth: int) -> float:
    """argmin_{a ≥ 0} f(a): 0 or the largest positive stationary point."""
    if depth == 2:
        return soft_threshold(y, lam)
    roots = stationary_points(y, lam, depth)
    if not roots:
        return 0.0
    best = roots[-1]
    return (
        best
        if scalar_objective(best, y, lam, depth) < scalar_objective(0.0, y, lam, depth)
        else 0.0
    )


def is_stationary_value(a: float, y: float, lam: float, depth: int, tol: float) -> bool:
    """True when ``a`` is within ``tol`` of 0 or of a positive stationary point of f."""
    if abs(a) <= tol:
        return True
    return any(abs(a - r) <= tol for r in stationary_points(y, lam, depth))
