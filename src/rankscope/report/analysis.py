"""Figures of a :class:`rankscope.probe.Analysis`: per-layer singular-value spectra.

Pure consumers of the analysis: they draw on a fresh ``matplotlib.figure.Figure`` (or a
given ``ax``), return ``(fig, ax)`` and never call ``show()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankscope.report.figures.base import new_figure

__all__ = ["plot_spectra"]

_LEGEND_MAX = 8  # above this many layers, a colorbar of layer order replaces the legend


def plot_spectra(analysis: Any, ax: Any = None, *, which: str = "weights") -> tuple[Any, Any]:
    """s_i / s_1 against i for every layer, both axes logarithmic.

    ``which='weights'`` draws ``analysis.spectra`` (dashed: randomized top-k, only the
    leading values are known); ``'representations'`` draws ``analysis.rep_spectra`` (the
    singular values of each layer's centred outputs). Layers are coloured by their order in
    the model. Exact zeros are left out (they have no logarithm).
    """
    if which not in ("weights", "representations"):
        raise ValueError(f"unknown which={which!r}; expected 'weights' or 'representations'")
    spectra = analysis.spectra if which == "weights" else analysis.rep_spectra
    methods = {r["name"]: r.get("method", "full") for r in analysis.layers}
    if ax is None:
        fig, ax = new_figure(1, 1, width=6.4, height=4.4)
    else:
        fig = ax.figure
    items = [(n, s.detach().cpu().double().numpy()) for n, s in spectra.items() if s.numel()]
    if not items:
        ax.text(0.5, 0.5, "no spectra to draw", ha="center", va="center", transform=ax.transAxes)
        return fig, ax
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cmap = colormaps["viridis"]
    norm = Normalize(vmin=0, vmax=max(len(items) - 1, 1))
    for i, (name, s) in enumerate(items):
        if s[0] <= 0:
            continue
        rel = s / s[0]
        idx = np.arange(1, rel.size + 1)
        keep = rel > 0
        style = "--" if methods.get(name) == "randomized" else "-"
        ax.plot(idx[keep], rel[keep], style, color=cmap(norm(i)), lw=1.2, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("singular value index i")
    ax.set_ylabel("s_i / s_1")
    what = "weight matrices" if which == "weights" else "layer outputs (centred)"
    ax.set_title(f"Per-layer spectra of {len(items)} {what}")
    ax.grid(True, which="major", alpha=0.3)
    if any(methods.get(n) == "randomized" for n, _ in items):
        ax.text(0.02, 0.02, "dashed: randomized top-k", transform=ax.transAxes, fontsize="small")
    if len(items) <= _LEGEND_MAX:
        ax.legend(fontsize="small", title="layer")
    else:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        bar.set_label("layer order in the model (0 = first)")
    return fig, ax
