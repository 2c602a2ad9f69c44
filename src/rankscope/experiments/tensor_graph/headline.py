"""Formatting of claim headlines for the tensor/graph family: numbers joined, outcome words."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["nums", "outcome"]


def nums(values: Iterable[float], fmt: str = ".3g", sep: str = " / ") -> str:
    """``values`` formatted with ``fmt`` and joined by ``sep``.

    >>> nums([0.08012, 0.002, 1e-4])
    '0.0801 / 0.002 / 0.0001'
    """
    return sep.join(format(int(v) if fmt.endswith("d") else float(v), fmt) for v in values)


def outcome(ok: bool, why_not: str = "") -> str:
    """``"pass"``, or ``"fails"`` with the reason when given.

    >>> outcome(True), outcome(False, "tie at init 0.01")
    ('pass', 'fails: tie at init 0.01')
    """
    if ok:
        return "pass"
    return f"fails: {why_not}" if why_not else "fails"
