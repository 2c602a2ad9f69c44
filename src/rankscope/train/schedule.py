"""Logging schedules: which steps the callbacks see."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["log_steps", "resolve_log_at"]

_SPACINGS = ("log", "linear")


def log_steps(total: int, n: int, spacing: str = "log") -> list[int]:
    """Up to ``n`` unique sorted steps in [0, total], always including 0 and ``total``.

    ``spacing="log"`` spaces steps 1…total geometrically (plus step 0), so early dynamics
    (plateaus, fast first modes) are resolved; ``"linear"`` spaces them evenly. Exactly
    ``min(n, total + 1)`` steps are returned: when rounding merges geometric points the
    grid is refined until enough distinct steps exist.

    >>> log_steps(1000, 5)
    [0, 1, 10, 100, 1000]
    >>> log_steps(10, 3, spacing="linear")
    [0, 5, 10]
    """
    if isinstance(total, bool) or not isinstance(total, int | np.integer) or total < 0:
        raise ValueError(f"total must be an int >= 0, got {total!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 2:
        raise ValueError(f"n must be an int >= 2 (0 and total are always included), got {n!r}")
    if spacing not in _SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {_SPACINGS}")
    total, n = int(total), int(n)
    want = min(n, total + 1)
    if want == total + 1:
        return list(range(total + 1))
    if spacing == "linear":
        return sorted({round(v) for v in np.linspace(0, total, want)})
    m = want - 1
    while True:  # geometric points on 1..total; refine until rounding leaves `want` distinct
        pts = {0, total} | {round(v) for v in np.geomspace(1, total, m)}
        if len(pts) >= want:
            break
        m += 1
    pts = sorted(pts)
    if len(pts) > want:  # drop surplus interior points evenly, keeping 0 and total
        keep = np.unique(np.round(np.linspace(0, len(pts) - 1, want)).astype(int))
        pts = [pts[i] for i in keep]
    return pts


def resolve_log_at(log_at: int | Iterable[int] | None, steps: int) -> frozenset[int]:
    """The set of logging steps: ``None`` -> {0, steps}; an int k -> every k-th step plus
    ``steps``; an iterable -> those steps (each must lie in [0, steps])."""
    if log_at is None:
        return frozenset({0, steps})
    if isinstance(log_at, int | np.integer) and not isinstance(log_at, bool):
        if log_at < 1:
            raise ValueError(f"log_at as an int is a logging interval >= 1, got {log_at}")
        return frozenset(range(0, steps + 1, int(log_at))) | {steps}
    try:
        out = frozenset(int(s) for s in log_at)
    except TypeError:
        raise TypeError(
            f"log_at must be None, an int interval or an iterable of steps, got {log_at!r}"
        ) from None
    bad = sorted(s for s in out if s < 0 or s > steps)
    if bad:
        raise ValueError(f"log_at steps must lie in [0, {steps}], got {bad[:5]}")
    return out
