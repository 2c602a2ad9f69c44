"""Figures of ``mixed-dynamics`` and ``sgd-rank-jumps`` (pure functions of stored results)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rankscope.experiments.base import Result
from rankscope.report.figures.base import FigureSpec, new_figure

__all__ = ["FIGURES"]

_FLOOR = 1e-16  # log axes: exact zeros are drawn at this floor


# --------------------------------------------------------------------------- mixed-dynamics
def _grid_field(results: Sequence[Result], key: str):
    """(γσ² values, γw values, seed-mean of ``key`` as a (n_w, n_σ) array)."""
    pts = [p for r in results for p in r.summary.grid]
    gs = sorted({round(p.gamma_sigma2, 9) for p in pts})
    gw = sorted({round(p.gamma_w, 9) for p in pts})
    acc = np.zeros((len(gw), len(gs)))
    cnt = np.zeros_like(acc)
    for p in pts:
        if p.diverged:
            continue
        i, j = gw.index(round(p.gamma_w, 9)), gs.index(round(p.gamma_sigma2, 9))
        acc[i, j] += getattr(p, key)
        cnt[i, j] += 1
    with np.errstate(invalid="ignore"):
        return np.array(gs), np.array(gw), np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)


def _edges(c: np.ndarray) -> np.ndarray:
    if c.size == 1:
        return np.array([c[0] - 0.1, c[0] + 0.1])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _theory_lines(ax, xlim, ylim, d: int, k: int, fast) -> None:
    x = np.linspace(*xlim, 50)
    ax.plot(x, 1 - x, color="black", lw=1.5, label="lazy/active: γσ²+γw = 1")
    ax.plot(x, -2 * x, color="#d62728", lw=1.5, label="red line: γw = −2γσ²")
    under = math.log(k) / math.log(d)
    style = {"color": "#ff8c00", "lw": 1.5}
    if ylim[0] <= under <= ylim[1]:
        ax.axhline(under, label=f"under-param.: γw = log_d K = {under:.2f}", **style)
    else:
        ax.plot([], [], label=f"under-param. γw = {under:.2f} (below range)", **style)
    if fast is not None:
        ax.plot(*fast, marker="*", ms=12, color="white", mec="black", ls="", label="fast point")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)


def _draw_phase_diagram(results: Sequence[Result]):
    panels = [
        ("min_test_error", "min test error ‖A−A*‖²/d²", "viridis", False),
        ("stable_rank_at_min", "stable rank at the min", "magma", False),
        ("iter_of_min", "iterations to the min", "cividis", True),
        ("max_gap", "max_t ‖A_GD − A_SC‖_F/‖A_GD‖_F", "plasma", True),
    ]
    fig, axes = new_figure(2, 2, width=5.4, height=4.4)
    s0 = results[0].summary
    fast = s0.fast
    fast_xy = (fast.gamma_sigma2, fast.gamma_w) if fast else None
    for ax, (key, label, cmap, log) in zip(axes.flat, panels):
        gs, gw, z = _grid_field(results, key)
        xe, ye = _edges(gs), _edges(gw)
        shown = np.log10(np.maximum(z, 1e-12)) if log else z
        mesh = ax.pcolormesh(xe, ye, shown, cmap=cmap, shading="flat")
        fig.colorbar(mesh, ax=ax, label=f"log10({label})" if log else label)
        _theory_lines(ax, (xe[0], xe[-1]), (ye[0], ye[-1]), s0.d, s0.rank, fast_xy)
        ax.set_xlabel("γσ²  (σ² = d^γσ²)")
        ax.set_ylabel("γw  (w = d^γw)")
        ax.set_title(label)
    srank = float(np.mean([r.summary.srank_target for r in results]))
    axes.flat[1].text(
        0.02,
        0.02,
        f"srank(A*) = {srank:.2f}",
        transform=axes.flat[1].transAxes,
        color="white",
        fontsize=9,
    )
    for ax in axes.flat:
        ax.text(
            0.03,
            0.93,
            "active",
            transform=ax.transAxes,
            color="white",
            fontsize=9,
            fontweight="bold",
        )
        ax.text(
            0.86, 0.93, "lazy", transform=ax.transAxes, color="black", fontsize=9, fontweight="bold"
        )
    axes.flat[0].legend(fontsize=7, loc="lower left", framealpha=0.85)
    fig.suptitle(
        f"Mixed-dynamics phase diagram, d = {s0.d}, K = {s0.rank} "
        f"(mean over {len(results)} seed(s))"
    )
    return fig, axes


def _draw_fast_spectrum(results: Sequence[Result]):
    r = results[0]
    fast = r.summary.fast
    tag = f"fast:gs={fast.gamma_sigma2:.4g},gw={fast.gamma_w:.4g}"
    fig, (ax, ax2) = new_figure(1, 2, width=5.6, height=4.2)
    steps, sv = r.records.matrix("sv", layer=tag)
    _, sc = r.records.matrix("sc_sv", layer=tag)
    k = r.summary.rank
    for i in range(sv.shape[1]):
        color = "C0" if i < k else "C7"
        ax.plot(
            steps,
            np.maximum(sv[:, i], _FLOOR),
            color=color,
            lw=1.2,
            label=("GD, top K" if i == 0 else ("GD, others" if i == k else None)),
        )
        ax.plot(
            steps,
            np.maximum(sc[:, i], _FLOOR),
            color="C3",
            lw=1,
            ls="--",
            label="self-consistent" if i == 0 else None,
        )
    ax.axhline(fast.sigma2_w, color="black", ls=":", label=f"σ²w = {fast.sigma2_w:.2f}")
    ax.axvline(
        fast.iter_of_min,
        color="C2",
        ls="-.",
        label=f"min test error (it. {fast.iter_of_min})",
    )
    ax.set_yscale("log")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, steps[-1])
    ax.set_xlabel("GD iteration")
    ax.set_ylabel("singular values of A")
    ax.set_title(f"(γσ², γw) = ({fast.gamma_sigma2}, {fast.gamma_w}), d = {fast.d}")
    ax.legend(fontsize=7, loc="lower right")
    for name, style, lab in (
        ("train", "-", "train GD"),
        ("test", "-", "test GD"),
        ("sc_test", "--", "test SC"),
    ):
        st, v = r.records.series(name, layer=tag)
        ax2.plot(st, v, ls=style, label=lab)
    ax2.axvline(fast.iter_of_min, color="C2", ls="-.")
    ax2.set_xscale("symlog", linthresh=1)
    ax2.set_xlim(0, steps[-1])
    ax2.set_xlabel("GD iteration")
    ax2.set_ylabel("loss ‖A − ·‖_F²/d²")
    ax2.set_title(
        f"min test error {fast.min_test_error:.3f}, stable rank there {fast.stable_rank_at_min:.2f}"
    )
    ax2.legend(fontsize=8)
    return fig, (ax, ax2)


# --------------------------------------------------------------------------- sgd-rank-jumps
def _scale(summary) -> float:
    chosen = summary.chosen_scale
    return chosen if chosen is not None else min(m.scale for m in summary.members)


def _draw_rank_trajectories(results: Sequence[Result]):
    fig, axes = new_figure(1, 3, width=4.6, height=4.0, sharey=True)
    tau = results[0].summary.taus[0]
    titles = {
        "gd": "full-batch GD",
        "sgd": "SGD, batch size 1",
        "flip": "flip test: SGD from rank 2",
    }
    for ax, kind in zip(axes, ("gd", "sgd", "flip")):
        for n, r in enumerate(results):
            tag = f"{kind},scale={_scale(r.summary):g}"
            steps, ranks = r.records.series(f"rank@{tau}", layer=tag)
            if steps.size:
                jitter = 0.12 * (n - (len(results) - 1) / 2) / max(len(results), 1)
                ax.step(
                    steps,
                    ranks + jitter,
                    where="post",
                    lw=1,
                    color=f"C{n % 10}",
                    label=f"seed {r.seed}",
                )
        for b in results[0].summary.phase_boundaries[:-1]:
            ax.axvline(b, color="black", ls=":", lw=1)
        ax.axhline(results[0].summary.target_rank, color="grey", ls="--", lw=0.8)
        ax.set_title(titles[kind])
        switches = len(results[0].summary.phase_boundaries) > 1
        ax.set_xlabel("stage-1 step" + (" (dotted: λ/η phase switch)" if switches else ""))
    top = max(max(m.rank_seq[tau]) for r in results for m in r.summary.members)
    axes[0].set_ylim(-0.3, top + 0.7)
    axes[0].set_ylabel(f"numerical rank, s_i > {tau}·s₁ (raw logs)")
    if len(results) <= 10:
        axes[1].legend(fontsize=7, ncol=2)
    scales = sorted({_scale(r.summary) for r in results})
    fig.suptitle(
        f"Rank trajectories per seed at λ scale {', '.join(f'{s:g}' for s in scales)} "
        "(grey: target rank)"
    )
    return fig, axes


def _draw_final_spectra(results: Sequence[Result]):
    fig, ax = new_figure(1, 1, width=6.5, height=4.4)
    for n, r in enumerate(results):
        s = r.summary
        scale = _scale(s)
        idx = np.arange(1, len(s.stage0.singular_values) + 1)
        gd, sgd = (
            next(m for m in s.members if m.kind == k and m.scale == scale) for k in ("gd", "sgd")
        )
        lab = n == 0
        ax.plot(
            idx,
            np.maximum(s.stage0.singular_values, _FLOOR),
            color="grey",
            lw=0.8,
            alpha=0.6,
            label="stage 0 (GD, λ=1e-4)" if lab else None,
        )
        ax.plot(
            idx - 0.1,
            np.maximum(gd.final_singular_values, _FLOOR),
            "o",
            color="C0",
            ms=3,
            label="GD, end of stage 1" if lab else None,
        )
        ax.plot(
            idx + 0.1,
            np.maximum(sgd.final_singular_values, _FLOOR),
            "x",
            color="C3",
            ms=4,
            label="SGD, end of stage 1" if lab else None,
        )
    tau = float(results[0].summary.taus[0])
    s1 = results[0].summary.target_values[0]
    ax.axhline(
        tau * s1, color="black", ls=":", lw=1, label=f"{tau:g}·s₁(A*) (rank threshold scale)"
    )
    ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value s_i of A (zeros drawn at 1e-16)")
    scales = sorted({_scale(r.summary) for r in results})
    ax.set_title(
        f"Final spectra, {len(results)} seed(s), λ scale {', '.join(f'{x:g}' for x in scales)}"
    )
    ax.legend(fontsize=8)
    return fig, ax


FIGURES: dict[str, list[FigureSpec]] = {
    "mixed-dynamics": [
        FigureSpec(
            "phase-diagram",
            "Phase diagram over (γσ², γw)",
            "Minimal test error, stable rank at the minimum, iterations to it, and the "
            "largest relative gap between GD and the discretized self-consistent "
            "dynamics; black: lazy/active line, red: infinite-noise line.",
            _draw_phase_diagram,
        ),
        FigureSpec(
            "fast-check-spectrum",
            "Singular values at the fast-check point",
            "Top singular values of GD (solid) and of the self-consistent dynamics "
            "(dashed) against the iteration, with σ²w dotted: the top K speed up once "
            "they cross σ²w; right, train and test losses.",
            _draw_fast_spectrum,
        ),
    ],
    "sgd-rank-jumps": [
        FigureSpec(
            "rank-trajectories",
            "Rank trajectories per seed",
            "Numerical rank during stage 1 for GD, SGD and the flip test, one line per "
            "seed (slightly offset), at the λ scale the claims read.",
            _draw_rank_trajectories,
        ),
        FigureSpec(
            "final-spectra",
            "Final singular values",
            "Stage-0 spectrum and the spectra at the end of stage 1 for GD and SGD.",
            _draw_final_spectra,
        ),
    ],
}
