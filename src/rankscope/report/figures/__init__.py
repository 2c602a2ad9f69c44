"""Figure registry: experiment id -> list of :class:`FigureSpec`.

Each family module defines ``FIGURES: dict[str, list[FigureSpec]]``; add its path here.
"""

from __future__ import annotations

import importlib

from rankscope.report.figures.base import FigureSpec, new_figure

__all__ = ["FigureSpec", "figures_for", "new_figure"]

_MODULES: tuple[str, ...] = (
    "rankscope.report.figures.engine",
    "rankscope.report.figures.linear",
    "rankscope.report.figures.linear_mixed_sgd",
    "rankscope.report.figures.collapse",
    "rankscope.report.figures.tensor_graph",
    "rankscope.report.figures.compression",
    "rankscope.report.figures.bottleneck",
    "rankscope.report.figures.spectral",
)


def figures_for(exp_id: str) -> list[FigureSpec]:
    out: list[FigureSpec] = []
    for path in _MODULES:
        mod = importlib.import_module(path)
        out.extend(mod.FIGURES.get(exp_id, []))
    return out
