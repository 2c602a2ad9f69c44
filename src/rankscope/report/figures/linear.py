"""Figures of the deep-linear-network family: `saddle-to-saddle`, `schatten-l2`, `mc-not-norms`.

Pure functions of stored results (summary + records); time is steps·η throughout.
(`mixed-dynamics` and `sgd-rank-jumps` draw theirs in :mod:`.linear_mixed_sgd`.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rankscope.report.figures.base import FigureSpec, new_figure
from rankscope.results import Result

__all__ = ["FIGURES"]

_MODE_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _row(n: int, width: float, height: float):
    """A figure with one row of ``n`` panels; axes as a 1-D array even for n = 1."""
    fig, axes = new_figure(1, n, width=width, height=height)
    return fig, np.atleast_1d(axes)


def _depths(result: Result) -> list[int]:
    return sorted({r.depth for r in result.summary.depth_runs})


def _runs_at(result: Result, depth: int) -> list:
    return sorted(
        (r for r in result.summary.depth_runs if r.depth == depth), key=lambda r: r.sigma2
    )


# --------------------------------------------------------------------------- saddle-to-saddle
def _s2s_singular_values(results: Sequence[Result]):
    res = results[0]
    depths = _depths(res)
    fig, axes = _row(len(depths), 4.6, 3.9)
    target = res.summary.target
    for ax, depth in zip(axes, depths):
        run = _runs_at(res, depth)[0]  # smallest σ²: the longest plateaus
        steps, sv = res.records.matrix("sv", layer=run.tag)
        t = np.maximum(steps * run.lr, run.lr)
        for i in range(sv.shape[1]):
            color = _MODE_COLORS[i % len(_MODE_COLORS)]
            ax.plot(t, sv[:, i], color=color, lw=1.6, label=f"$s_{i + 1}(A_t)$")
            if i < len(target):
                ax.axhline(target[i], color=color, ls="--", lw=0.8)
                if math.isfinite(run.half_fit[i]):
                    ax.axvline(run.half_fit[i], color=color, ls=":", lw=0.8)
        ax.axhline(res.summary.rank_eps, color="0.4", lw=0.8, ls="-.", label="rank tolerance ε")
        if depth > 2:  # plateaus last ∝ σ^-(L-2): log time; at L = 2 they last ∝ ln(1/σ²)
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(max(np.nanmin(sv[sv > 0]), 1e-9) if (sv > 0).any() else 1e-9, 2 * max(target))
        ax.set_xlabel("time t = steps·η" + (" (log)" if depth > 2 else ""))
        ax.set_ylabel("singular value of $A_t$ (log)")
        ax.set_title(f"L = {depth}, σ² = {run.sigma2:.0e}")
    axes[-1].legend(fontsize=7, loc="center right")
    fig.suptitle("Modes are learned one at a time (dashed: targets 10, 5, 2.5; dotted: half-fit)")
    return fig, axes


def _theory_line(ax, x, y, slope, color, log_y: bool) -> None:
    """A line of the given slope through the centroid of the points (x in ln σ⁻² or ln σ)."""
    x = np.asarray(x)
    if log_y:
        c = np.mean(np.log(y)) - slope * np.mean(x)
        ys = np.exp(c + slope * x)
    else:
        c = np.mean(y) - slope * np.mean(x)
        ys = c + slope * x
    return ax.plot(np.exp(-x) if not log_y else np.exp(2 * x), ys, color=color, lw=1, ls="--")


def _s2s_half_fit(results: Sequence[Result]):
    depths = _depths(results[0])
    target = results[0].summary.target
    fig, axes = _row(len(depths), 4.4, 3.8)
    for ax, depth in zip(axes, depths):
        for i, s in enumerate(target):
            color = _MODE_COLORS[i]
            xs, ys = [], []
            for res in results:
                for r in _runs_at(res, depth):
                    if math.isfinite(r.half_fit[i]) and r.half_fit[i] > 0:
                        xs.append(r.sigma2)
                        ys.append(r.half_fit[i])
            if not xs:
                continue
            ax.plot(xs, ys, "o", color=color, ms=4, label=f"mode {i + 1} (s = {s:g})")
            if depth == 2:  # t = ln(1/σ²)/(2s) + c: slope 1/(2s) in ln(1/σ²)
                _theory_line(ax, np.log(1 / np.array(xs)), ys, 1 / (2 * s), color, log_y=False)
            else:  # t ∝ σ^{−(L−2)}: slope −(L−2) in ln σ
                _theory_line(ax, 0.5 * np.log(xs), ys, -(depth - 2), color, log_y=True)
        ax.set_xscale("log")
        if depth > 2:
            ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("init variance σ² (log, decreasing →)")
        ax.set_ylabel("half-fit time $t_i$ (steps·η)" + (" (log)" if depth > 2 else ""))
        law = "ln(1/σ²)/(2s_i)" if depth == 2 else f"σ^-{depth - 2}"
        ax.set_title(f"L = {depth}: dashed = theory slope ({law})")
        ax.legend(fontsize=7)
    return fig, axes


def _s2s_ranks(results: Sequence[Result]):
    res = results[0]
    depths = _depths(res)
    fig, axes = _row(len(depths), 4.4, 3.6)
    for ax, depth in zip(axes, depths):
        runs = _runs_at(res, depth)
        colors = [f"C{k}" for k in range(len(runs))]
        for run, color in zip(runs, colors):
            steps, rank = res.records.series("rank", layer=run.tag)
            t = np.maximum(steps * run.lr, run.lr)
            ax.step(t, rank, where="post", color=color, lw=1.4, label=f"σ² = {run.sigma2:.0e}")
        ax.set_xscale("log")
        ax.set_ylim(-0.3, len(res.summary.target) + 2.5)
        ax.set_xlabel("time t = steps·η (log)")
        ax.set_ylabel("Rank_ε($A_t$), ε = 0.05·s_min(A*)")
        ax.set_title(f"L = {depth}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Rank trajectories (σ² = 1e-2 starts above the plotted range: A_0 is not small)")
    return fig, axes


def _s2s_gamma(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=4.4, height=3.6)
    for res in results:
        runs = res.summary.gamma_runs
        gmax = max(r.gamma for r in runs)
        for gamma in sorted({r.gamma for r in runs}):
            rows = sorted((r for r in runs if r.gamma == gamma), key=lambda r: r.width)
            w = [r.width for r in rows]
            color = "tab:red" if gamma < 1 else "tab:blue" if gamma == gmax else "tab:cyan"
            kind = "lazy" if gamma < 1 else "active" if gamma == gmax else "not tested"
            label = f"γ = {gamma:g} ({kind})"
            first = res is results[0]
            axes[0].plot(
                w,  # lazy: s_i > 1e-2·s_1 (S2S-4); γ > 1: Rank_ε (S2S-5)
                [r.final_rank if gamma < 1 else r.final_rank_eps for r in rows],
                "o-",
                color=color,
                label=label if first else None,
            )
            axes[1].plot(
                w,
                [r.unobserved_rmse for r in rows],
                "o-",
                color=color,
                label=label if first else None,
            )
    d = results[0].summary.gamma_dim
    axes[0].axhline(d / 2, color="tab:red", ls=":", lw=1, label="d/2 (lazy pass line)")
    axes[0].axhline(
        results[0].summary.gamma_target_rank, color="tab:blue", ls=":", lw=1, label="target rank"
    )
    lazy = sorted((r for r in results[0].summary.gamma_runs if r.gamma < 1), key=lambda r: r.width)
    if lazy:
        axes[1].plot(
            [r.width for r in lazy],
            [0.5 * r.unobserved_rmse for r in lazy],
            ":",
            color="tab:blue",
            label="0.5 × lazy RMSE (active pass line)",
        )
    axes[0].set_ylim(0, d + 1)
    axes[1].set_ylim(0, None)
    axes[0].set_ylabel("final rank (γ < 1: s_i > 1e-2·s_1; γ > 1: Rank_ε)")
    axes[1].set_ylabel("RMSE on unobserved entries")
    widths = sorted({r.width for r in results[0].summary.gamma_runs})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.minorticks_off()
        ax.set_xlabel("width w (log)")
        ax.legend(fontsize=7)
    fig.suptitle("Matrix completion, σ² = w^-γ: lazy vs active")
    return fig, axes


# --------------------------------------------------------------------------- schatten-l2
def _sl2_values(results: Sequence[Result]):
    res = results[0]
    fits = res.summary.fits
    k = len(res.summary.y) + 1
    fig, axes = _row(len(fits), 4.3, 3.7)
    for ax, f in zip(axes, fits):
        idx = np.arange(1, k + 1)
        ax.plot(idx, f.y[:k], "s", mfc="none", color="0.5", label="target y_i")
        ax.plot(
            idx,
            f.global_min[:k],
            "D",
            mfc="none",
            ms=9,
            color="tab:green",
            label="global min of f",
        )
        for j in range(k):
            roots = f.stationary_points[j]
            ax.plot(
                [j + 1] * len(roots),
                roots,
                "x",
                color="tab:orange",
                ms=7,
                label="stationary points of f" if j == 0 else None,
            )
        ax.plot(idx, f.projected[:k], "o", color="tab:blue", label="learned $u_i^T A v_i$")
        ax.set_xticks(idx)
        ax.set_xlabel("singular direction i of Y")
        ax.set_ylabel("singular value")
        ax.set_title(f"L = {f.depth}, λ = {f.lam:g}")
    axes[0].legend(fontsize=7)
    fig.suptitle("Learned singular values vs the scalar problem f(a) = ½(a − y)² + λL·a^(2/L)")
    return fig, axes


def _sl2_expansion(results: Sequence[Result]):
    fig, ax = new_figure(width=5.6, height=4.0)
    for res in results:
        rows = sorted(res.summary.expansion, key=lambda r: r.depth)
        depth = np.array([r.depth for r in rows], dtype=float)
        first = res is results[0]
        ax.plot(
            depth,
            [r.residual for r in rows],
            "o-",
            color="tab:blue",
            label="trained DLN: |‖θ‖² − (L·R0 + R1 + R2/L)|" if first else None,
        )
        ax.plot(
            depth,
            [r.residual_exact for r in rows],
            "x",
            color="k",
            ms=8,
            label="exact L·Σs^(2/L) in place of ‖θ‖²" if first else None,
        )
    rows = sorted(results[0].summary.expansion, key=lambda r: r.depth)
    d0, r0 = rows[0].depth, rows[0].residual
    grid = np.array([r.depth for r in rows], dtype=float)
    ax.plot(grid, r0 * (d0 / grid) ** 2, "--", color="tab:red", label="∝ L⁻²")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth L (log₂)")
    ax.set_ylabel("expansion residual (log)")
    ax.set_title("Depth expansion of the representation cost")
    ax.legend(fontsize=8)
    return fig, ax


def _sl2_training(results: Sequence[Result]):
    res = results[0]
    fits = res.summary.fits
    fig, axes = _row(len(fits), 4.3, 3.6)
    for ax, f in zip(axes, fits):
        steps, sv = res.records.matrix("sv", layer=f"L={f.depth}")
        t = np.maximum(steps * f.lr, f.lr)
        for i in range(min(sv.shape[1], len(res.summary.y) + 1)):
            ax.plot(
                t,
                np.maximum(sv[:, i], 1e-18),
                color=_MODE_COLORS[i % 6],
                lw=1.4,
                label=f"$s_{i + 1}$",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(1e-12, 10)
        ax.set_xlabel("time t = steps·η (log)")
        ax.set_ylabel("singular value of A (log)")
        ax.set_title(f"L = {f.depth}, λ = {f.lam:g}")
    axes[0].legend(fontsize=7)
    fig.suptitle("GD with λ‖θ‖²: directions below threshold decay to 0")
    return fig, axes


# --------------------------------------------------------------------------- mc-not-norms
def _mc_norms(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=5.0, height=4.0)
    for res in results:
        first = res is results[0]
        _, loss = res.records.series("loss", layer="MC-1")
        for name, color, label in (
            ("w11", "tab:blue", "|W₁₁|"),
            ("nuclear", "tab:orange", "‖W‖_*"),
            ("frobenius", "tab:green", "‖W‖_F"),
        ):
            _, v = res.records.series(name, layer="MC-1")
            axes[0].plot(loss, v, color=color, lw=1.3, label=f"det > 0: {label}" if first else None)
        _, ratio = res.records.series("s_ratio", layer="MC-1")
        axes[1].plot(loss, ratio, color="tab:purple", lw=1.3, label="det > 0" if first else None)
        if "MC-2" in res.records.layers("loss"):
            _, loss2 = res.records.series("loss", layer="MC-2")
            _, w2 = res.records.series("w11", layer="MC-2")
            axes[0].plot(
                loss2,
                w2,
                color="tab:red",
                ls="--",
                lw=1.2,
                label="det < 0: |W₁₁|" if first else None,
            )
            _, r2 = res.records.series("s_ratio", layer="MC-2")
            axes[1].plot(
                loss2, r2, color="tab:red", ls="--", lw=1.2, label="det < 0" if first else None
            )
    grid = np.geomspace(1e-9, 0.45, 400)
    axes[0].plot(
        grid,
        (1 - np.sqrt(2 * grid)) ** 2 / np.sqrt(2 * grid),
        "k:",
        lw=1.5,
        label="bound (1 − √2ℓ)²/√2ℓ",
    )
    lowest = min(float(np.min(r.records.select(name="loss").value)) for r in results)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.6, 0.5 * lowest)  # reversed: training runs left to right
        ax.set_xlabel("loss ℓ (log, decreasing → training time)")
        ax.legend(fontsize=7)
    axes[0].set_ylim(1e-3, None)
    axes[0].set_ylabel("norm (log)")
    axes[0].set_title("Norms grow without bound as ℓ → 0")
    axes[1].set_ylabel("$s_1/s_2$ (log)")
    axes[1].set_title("…while W approaches rank 1")
    return fig, axes


def _mc_det(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=4.6, height=3.7)
    from matplotlib import colormaps

    for k, res in enumerate(results):
        shade = 0.45 + 0.55 * k / max(len(results) - 1, 1)
        for ax, tag, cmap in ((axes[0], "MC-1", "Blues"), (axes[1], "MC-2", "Reds")):
            if tag not in res.records.layers("det"):
                continue
            _, t = res.records.series("t", layer=tag)
            _, det = res.records.series("det", layer=tag)
            ax.plot(
                np.maximum(t, 1e-3),
                det,
                color=colormaps[cmap](shade),
                lw=1.3,
                label=f"seed {res.seed}",
            )
    axes[0].set_yscale("log")
    axes[0].set_title("det W(0) > 0: det stays positive")
    axes[0].set_ylabel("det W(t) (log)")
    axes[1].axhline(-1, color="k", ls=":", lw=1, label="det of every exact solution (−1)")
    axes[1].set_title("det W(0) < 0: det → −1")
    axes[1].set_ylabel("det W(t)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("gradient-flow time t (log)")
        ax.legend(fontsize=7)
    return fig, axes


FIGURES = {
    "saddle-to-saddle": [
        FigureSpec(
            "singular-values",
            "Singular values of A_t over time",
            "Top singular values of the end-to-end matrix at the smallest σ² of each "
            "depth (log-log). Plateaus near saddles alternate with fast escapes; dashed "
            "lines are the target singular values, dotted lines the half-fit times.",
            _s2s_singular_values,
        ),
        FigureSpec(
            "half-fit-times",
            "Half-fit time against σ²",
            "Half-fit time of each mode (all seeds) against the init variance; dashed "
            "lines have the theory slope: 1/(2s_i) per unit of ln(1/σ²) for L = 2, and "
            "t ∝ σ^{−(L−2)} for L ≥ 3.",
            _s2s_half_fit,
        ),
        FigureSpec(
            "rank-trajectories",
            "Rank_ε(A_t) over time",
            "Numerical rank with ε = 0.05·s_min(A*) for every σ²: from small init it "
            "steps 0 → 1 → 2 → 3 and never decreases.",
            _s2s_ranks,
        ),
        FigureSpec(
            "gamma-transition",
            "Lazy vs active matrix completion",
            "Final rank and unobserved-entry RMSE against width for σ² = w^−γ: γ = 0.5 "
            "stays near A_0 (high rank), γ = 1.5 starts near the saddle at 0.",
            _s2s_gamma,
        ),
    ],
    "schatten-l2": [
        FigureSpec(
            "learned-vs-predicted",
            "Learned vs predicted singular values",
            "Learned value on each singular direction of Y (dots) against the target, "
            "the stationary points and the global minimum of the per-value problem. "
            "At L ≥ 3 a direction can sit at the local minimum 0.",
            _sl2_values,
        ),
        FigureSpec(
            "expansion-residual",
            "Depth-expansion residual",
            "|‖θ‖² − (L·Rank + 2Σlog s + (2/L)Σ(log s)²)| of DLNs fitted to a known A, "
            "against depth, with an L⁻² reference line.",
            _sl2_expansion,
        ),
        FigureSpec(
            "training",
            "Singular values during training",
            "Singular values of A under GD with weight decay, per depth. Directions whose target "
            "is below threshold decay to 0; at L = 2 the one exactly at y = 2λ decays "
            "only like 1/(2t).",
            _sl2_training,
        ),
    ],
    "mc-not-norms": [
        FigureSpec(
            "norms-vs-loss",
            "Norms and s1/s2 against the loss",
            "Exact gradient flow on the 2×2 completion. Left: |W₁₁|, nuclear and "
            "Frobenius norms track the lower bound (dotted) up to ∞ when det > 0, but "
            "stay bounded when det < 0 (dashed). Right: s₁/s₂ grows: rank → 1.",
            _mc_norms,
        ),
        FigureSpec(
            "det-over-time",
            "Determinant over time",
            "det W(t) under gradient flow: it never crosses 0 from a balanced init.",
            _mc_det,
        ),
    ],
}
