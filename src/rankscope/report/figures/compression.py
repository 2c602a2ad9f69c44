"""Figures of `low-rank-compression`: accuracy against kept parameters per λ (with the claim's
threshold), and the weight spectra that chose the ranks. Pure functions of stored results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rankscope.report.figures.base import FigureSpec, new_figure
from rankscope.results import Result

__all__ = ["FIGURES"]


def _ok(results: Sequence[Result]) -> list[Result]:
    good = [r for r in results if r.status == "ok"]
    if not good:
        raise ValueError("no finished run to draw")
    return good


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.8 * i / max(n - 1, 1)) for i in range(n)]


def _accuracy_curves(results: Sequence[Result]):
    from rankscope.experiments.compression.low_rank_compression import CLAIM_BUDGET, KEEP

    res = _ok(results)
    archs = sorted({x.arch for r in res for x in r.summary.runs})
    fig, axes = new_figure(1, len(archs), width=4.4, height=3.4, squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        wds = sorted({x.weight_decay for r in res for x in r.summary.runs if x.arch == arch})
        for wd, color in zip(wds, _colors(len(wds)), strict=True):
            rows = [
                x for r in res for x in r.summary.runs if x.arch == arch and x.weight_decay == wd
            ]
            kept = np.mean([x.kept_at for x in rows], axis=0)
            ratio = np.array([[a / x.test_acc for a in x.acc_at] for x in rows])
            mean = ratio.mean(0)
            ax.plot(kept, mean, "o-", color=color, label=f"λ = {wd:g}")
            if len(rows) > 1:
                ax.fill_between(kept, ratio.min(0), ratio.max(0), color=color, alpha=0.15)
        ax.axhline(KEEP, color="k", ls="--", lw=0.8, label=f"{KEEP:.0%} kept")
        ax.axvline(CLAIM_BUDGET, color="grey", ls=":", lw=0.8)
        ax.set_xlabel("kept fraction of Linear/Conv parameters")
        ax.set_ylabel("accuracy truncated / accuracy")
        ax.set_title(f"{arch} ({len(res)} seeds; band: min–max)")
        ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.02)
        ax.legend(fontsize=7)
    return fig, axes


def _spectra(results: Sequence[Result]):
    res = _ok(results)[0]
    recs = res.records
    names = recs.name == "sv"
    layers = list(dict.fromkeys(recs.layer[names].tolist()))
    archs = sorted({tag.split(",")[0] for tag in layers})
    per_arch = {a: [t for t in layers if t.startswith(a + ",")] for a in archs}
    n_layers = max(len({t.split("/", 1)[1] for t in per_arch[a]}) for a in archs)
    fig, axes = new_figure(len(archs), n_layers, width=3.2, height=2.8, squeeze=False)
    for row, arch in enumerate(archs):
        lnames = list(dict.fromkeys(t.split("/", 1)[1] for t in per_arch[arch]))
        tags = list(dict.fromkeys(t.split("/", 1)[0] for t in per_arch[arch]))
        for col, lname in enumerate(lnames):
            ax = axes[row, col]
            for tag, color in zip(tags, _colors(len(tags)), strict=True):
                sel = names & (recs.layer == f"{tag}/{lname}")
                s = recs.value[sel][np.argsort(recs.index[sel])]
                ax.semilogy(
                    np.arange(1, s.size + 1), s / s[0], color=color, label=tag.split(",")[1]
                )
            ax.set_title(f"{arch} layer {lname}", fontsize=9)
            ax.set_xlabel("index i")
            ax.set_ylabel("s_i / s_1")
            if col == 0:
                ax.legend(fontsize=7)
        for col in range(len(lnames), n_layers):
            axes[row, col].set_visible(False)
    return fig, axes


FIGURES = {
    "low-rank-compression": [
        FigureSpec(
            "accuracy_vs_kept_params",
            "Accuracy kept against parameters kept, per weight decay λ",
            "Test accuracy of the truncated net over its own, against the kept fraction of its "
            "Linear/Conv parameters (global SVD allocation from the weight spectra). Dashed: "
            "the 99% criterion of LRC-1/LRC-2; dotted: the 30% budget they are checked at.",
            _accuracy_curves,
        ),
        FigureSpec(
            "weight_spectra",
            "The weight spectra that chose the ranks",
            "Normalised singular values s_i/s_1 of every layer (seed 0), one line per λ: weight "
            "decay pushes the tail down, which is what makes truncation cheap.",
            _spectra,
        ),
    ]
}
