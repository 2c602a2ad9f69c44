"""Figures of the convolution and spectral family (docs/results.md), from stored results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import NullFormatter

from rankscope.experiments.base import Result
from rankscope.report.figures.base import FigureSpec, new_figure

__all__ = ["FIGURES"]


# ---- cnn-bottleneck ----------------------------------------------------------------------


def _heatmap(ax, top: list[list[float]], title: str, middle: list[int], fig) -> None:
    a = np.asarray(top, dtype=np.float64)  # layer × frequency
    a = a / max(a.max(), 1e-300)
    im = ax.imshow(np.log10(np.maximum(a, 1e-4)), aspect="auto", origin="lower",
                   cmap="viridis", vmin=-4, vmax=0,
                   extent=(-0.5, a.shape[1] - 0.5, 0.5, a.shape[0] + 0.5))  # fmt: skip
    ax.axhspan(min(middle) - 0.5, max(middle) + 0.5, fill=False, edgecolor="w", linestyle="--")
    ax.set_xlabel("frequency m")
    ax.set_ylabel("layer ℓ")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="log10 s_1(Ŵ_ℓ(m)) / max")


def _cnn_heatmaps(results: Sequence[Result]):
    res = results[0]
    s = res.summary
    fig, axes = new_figure(1, 3, width=4.3)
    _heatmap(axes[0], s.linear.top_sv, f"(a) linear CNN, kept m = {s.linear.kept}",
             s.linear.middle, fig)  # fmt: skip
    _heatmap(axes[1], s.penalty.top_sv, f"(b) ReLU CNN, penalty λ = {s.penalty.l2:g}",
             s.penalty.middle, fig)  # fmt: skip
    _heatmap(axes[2], s.control.top_sv, "(b) ReLU CNN, no penalty", s.control.middle, fig)
    fig.suptitle(
        f"Per-frequency top singular value by layer, dashed box = middle layers (seed {res.seed})"
    )
    return fig, axes


def _cnn_mass(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=4.6)
    crit = results[0].summary.criteria
    for res in results:
        s = res.summary
        for run, color in ((s.penalty, "C0"), (s.control, "C3")):
            layers = np.arange(1, len(run.mass0) + 1)
            lab = f"{run.label}" if res is results[0] else None
            axes[0].plot(layers, run.mass0, "o-", color=color, alpha=0.7, label=lab)
            axes[1].plot(layers, run.act_const, "o-", color=color, alpha=0.7, label=lab)
    mid = results[0].summary.penalty.middle
    for ax, thr, name in ((axes[0], crit.mass_threshold, "kernel mass at m = 0, F_ℓ(0)"),
                          (axes[1], crit.activation_threshold,
                           "spatially-constant fraction of h_ℓ")):  # fmt: skip
        ax.axhline(thr, color="k", linestyle=":", label=f"threshold {thr}")
        ax.axvspan(min(mid) - 0.5, max(mid) + 0.5, color="0.9", zorder=0)
        ax.set_xlabel("layer ℓ (shaded: middle layers)")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ReLU CNN on a translation-invariant task, {len(results)} seed(s)")
    return fig, axes


# ---- layerwise-spectral-bias -------------------------------------------------------------


def _lsb_ratios(results: Sequence[Result]):
    s = results[0].summary
    case = next((c for c in s.analytic if c.depth == 5 and c.d == 10), s.analytic[0])
    ratios = np.asarray(case.ratios)  # layer × k = 2 …
    fig, ax = new_figure(width=5.5)
    layers = np.arange(1, ratios.shape[0] + 1)
    for j in range(ratios.shape[1]):
        ax.plot(layers, ratios[:, j], "o-", label=f"k = {j + 2}")
    ax.set_yscale("log")
    ax.set_xticks(layers)
    ax.set_xlabel("layer ℓ")
    ax.set_ylabel("μ_k^(ℓ) / μ_1^(ℓ)")
    bad = sum(c.violations for c in s.analytic)
    ax.set_title(f"Analytic ReLU NTK layers, d = {case.d}, L = {case.depth}; increases over all "
                 f"{len(s.analytic)} (L, d) cases: {bad}", fontsize=9)  # fmt: skip
    ax.legend(fontsize=7, ncol=2)
    return fig, ax


def _lsb_shares(results: Sequence[Result]):
    s0 = results[0].summary
    thr = s0.criteria.spearman
    fig, axes = new_figure(1, 2, width=4.8)
    k = np.asarray(s0.degrees)
    limit = np.asarray(s0.limit_shares)
    n_layers = limit.shape[0]
    for l in range(n_layers):
        color = f"C{l}"
        axes[1].plot(k, limit[l], "--", color=color, label=f"ℓ = {l + 1}")
        for res in results:
            axes[0].plot(k, np.asarray(res.summary.shares)[l], "o-", color=color, alpha=0.6,
                         label=f"ℓ = {l + 1}" if res is results[0] else None)  # fmt: skip
    axes[0].set_title(f"width-1000 Grams, {len(results)} seed(s); claim: ρ(S_1) > {thr}, "
                      f"ρ(S_L) < −{thr}", fontsize=9)  # fmt: skip
    axes[1].set_title("infinite width, N → ∞: μ_k^(ℓ) / Σ_ℓ′ μ_k^(ℓ′)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("target degree k")
        ax.set_ylabel("layer share S_ℓ(k)")
        ax.set_xticks(k)
    axes[0].legend(fontsize=7)
    return fig, axes


# ---- compositionality --------------------------------------------------------------------


def _comp_curves(results: Sequence[Result]):
    names = [r.name for r in results[0].summary.regimes]
    fig, axes = new_figure(1, len(names), width=4.0, squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, names):
        for attr, exp_attr, color, label in (("accnet_test", "accnet_exponent", "C0", "AccNet"),
                                             ("kernel_test", "kernel_exponent", "C1",
                                              "kernel ridge")):  # fmt: skip
            slopes = []
            for res in results:
                run = next(r for r in res.summary.regimes if r.name == name)
                n = np.asarray(run.sizes, dtype=np.float64)
                err = np.asarray(getattr(run, attr))
                ax.plot(n, err, "o", color=color, alpha=0.5)
                slope = getattr(run, exp_attr)
                c = np.exp(np.mean(np.log(err) + slope * np.log(n)))
                ax.plot(n, c * n**-slope, "-", color=color, alpha=0.5)
                slopes.append(slope)
            ax.plot([], [], "o-", color=color,
                    label=f"{label}: exponent {np.mean(slopes):.3f} ± "
                          f"{np.std(slopes, ddof=1) if len(slopes) > 1 else 0:.3f}")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(run.sizes, [str(n) for n in run.sizes])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training size N")
        ax.set_ylabel("test MSE")
        ax.set_title(f"regime {name}: ν_g = {run.nu_g:g}, ν_h = {run.nu_h:g}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Test error vs N with fitted power laws ({len(results)} seed(s))")
    return fig, axes


def _comp_exponents(results: Sequence[Result]):
    names = [r.name for r in results[0].summary.regimes]
    fig, ax = new_figure(width=5.5)
    x = np.arange(len(names))
    for off, attr, color, label in ((-0.2, "accnet_exponent", "C0", "AccNet"),
                                    (0.2, "kernel_exponent", "C1", "kernel ridge")):  # fmt: skip
        vals = np.array([[getattr(next(r for r in res.summary.regimes if r.name == n), attr)
                          for n in names] for res in results])  # fmt: skip
        ax.bar(x + off, vals.mean(0), width=0.38, color=color, alpha=0.7, label=label,
               yerr=vals.std(0, ddof=1) if len(results) > 1 else None, capsize=3)  # fmt: skip
        for row in vals:
            ax.plot(x + off, row, "k.", alpha=0.6)
    pred = [r.predicted for r in results[0].summary.regimes]
    ax.plot(x, pred, "k_", markersize=30, mew=2, label="min(½, ν_g/15, ν_h/3) [unverified]")
    ax.set_xticks(x, [f"{n}\n(ν_g={r.nu_g:g}, ν_h={r.nu_h:g})"
                      for n, r in zip(names, results[0].summary.regimes)])  # fmt: skip
    ax.set_ylabel("scaling exponent (−slope of log MSE vs log N)")
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.set_title("Claims: AccNet A ≥ B > C; in B AccNet − kernel ≥ 0.05", fontsize=9)
    ax.set_ylim(0, max(0.6, ax.get_ylim()[1]))  # room for the legend above the 0.5 rate
    ax.legend(fontsize=7, markerscale=0.4, ncol=3, loc="upper center")  # the 30-px "_" marker
    return fig, ax


FIGURES = {
    "cnn-bottleneck": [
        FigureSpec("frequency-heatmaps", "Per-frequency singular values by layer",
                   "s_1(Ŵ_ℓ(m)) for every layer and frequency: the linear CNN keeps m ∈ {0, 3, "
                   "13}; the penalized ReLU CNN's middle layers keep m = 0, the control does not.",
                   _cnn_heatmaps),
        FigureSpec("frequency-zero-mass", "Frequency-0 mass and constant activations by layer",
                   "F_ℓ(0) and the spatially-constant fraction of h_ℓ with and without the "
                   "penalty; dotted: the 0.9 thresholds of CBN-b1/b2.", _cnn_mass),
    ],
    "layerwise-spectral-bias": [
        FigureSpec("eigenvalue-ratios", "μ_k/μ_1 by layer",
                   "Gegenbauer eigenvalue ratios of the analytic per-layer NTK fall with ℓ for "
                   "every k (LSB-a1).", _lsb_ratios),
        FigureSpec("layer-shares", "Layer shares S_ℓ(k)",
                   "Finite-width shares (left) against the infinite-width limit (right).",
                   _lsb_shares),
    ],
    "compositionality": [
        FigureSpec("error-vs-n", "Test error vs N per regime",
                   "Log-log test MSE with fitted slopes, AccNet and kernel ridge.", _comp_curves),
        FigureSpec("exponents", "Scaling exponents by model and regime",
                   "Mean ± sd over seeds, dots per seed; the [unverified] rate formula for "
                   "reference.", _comp_exponents),
    ],
}  # fmt: skip
