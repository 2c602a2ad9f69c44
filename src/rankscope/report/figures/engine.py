"""Figures of the ``scalar-mode`` experiment."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rankscope.report.figures.base import FigureSpec, new_figure
from rankscope.results import Result


def _trajectory(results: Sequence[Result]):
    fig, ax = new_figure(width=6.0, height=4.0)
    for r in results:
        lr = r.config["lr"]
        steps, a = r.records.series("a")
        ax.plot(steps * lr, a, lw=1.6, label=f"seed {r.seed}: GD")
        t_half = r.summary.half_fit_time_exact
        ax.axvline(t_half, color="0.5", ls=":", lw=1)
        if r.config["depth"] == 2:
            y, a0 = r.config["target"], r.summary.a0
            t = steps * lr
            exact = y / (1 + (y / a0 - 1) * np.exp(-2 * y * t))
            ax.plot(t, exact, "k--", lw=1, label=f"seed {r.seed}: exact flow")
    y = results[0].config["target"]
    ax.axhline(y / 2, color="tab:red", lw=0.8, ls="--", label="half the target")
    ax.set_yscale("log")
    ax.set_xlabel("time t = steps · learning rate")
    ax.set_ylabel("mode value a(t) (log scale)")
    ax.set_title(f"One balanced mode, depth {results[0].config['depth']}: GD vs exact flow")
    ax.legend(fontsize=8)
    return fig, ax


FIGURES = {
    "scalar-mode": [
        FigureSpec(
            name="trajectory",
            title="Mode value over time",
            caption="GD (solid) against the exact gradient flow (dashed, L=2); dotted lines mark "
            "the exact half-fit times. The mode sits on a plateau near 0, then escapes.",
            draw=_trajectory,
        )
    ]
}
