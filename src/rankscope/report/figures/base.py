"""Figure contract: pure functions of stored results, drawn on a fresh matplotlib Figure.

A figure never calls ``show()`` and never touches pyplot's global state: it builds a
``matplotlib.figure.Figure`` (object API), draws, and returns ``(fig, ax)`` (``ax`` may be an
array of axes). The report saves it as PNG and PDF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rankscope.experiments.base import Result

__all__ = ["FigureSpec", "new_figure"]


@dataclass(frozen=True)
class FigureSpec:
    """``draw(results)`` gets every stored result (all seeds) of one experiment and preset."""

    name: str
    title: str
    caption: str
    draw: Callable[[Sequence[Result]], tuple[Any, Any]]


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = 5.0,
    height: float = 3.8,
    squeeze: bool = True,
    **kw,
):
    """A Figure with a grid of axes, independent of pyplot (safe in worker processes)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    return fig, axes
