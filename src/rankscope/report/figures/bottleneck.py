"""Figures of the nonlinear bottleneck family (docs/results.md), drawn from stored results only.

Each claim's figure shows the tested quantity with its threshold: singular values of W_ℓ
across layers (heatmaps for several depths), ‖θ‖² against L with the fitted line, the
denoising autoencoder against the clean curve, the Hamiltonian and its kinetic / potential
parts along p, the COI along p with k*, and pruned widths against N with N(N+1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.ticker import NullFormatter

from rankscope.experiments.base import Result
from rankscope.experiments.bottleneck.bottleneck_structure import norm_extrapolation
from rankscope.experiments.bottleneck.feature_sparsity import pruned_cases
from rankscope.report.figures.base import FigureSpec, new_figure

__all__ = ["FIGURES"]


def _log_heatmap(ax, grid: np.ndarray, depth: int):
    """log10 of relative singular values (layer × index), clipped to [1e-3, 1]."""
    return ax.imshow(
        np.log10(np.maximum(grid, 1e-4)),
        aspect="auto",
        cmap="magma",
        vmin=-3,
        vmax=0,
        extent=(0.5, grid.shape[1] + 0.5, depth + 0.5, 0.5),
        interpolation="nearest",
    )


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _sv_heatmaps(res: Result, depths: Sequence[int], layer_of, title: str, rel_line: float):
    """One panel per depth: layer × index heatmap of s_i(W_ℓ)/s_1(W_ℓ) (log colour)."""
    fig, axes = new_figure(1, len(depths), width=3.4, height=3.4, squeeze=False)
    im = None
    for ax, depth in zip(axes[0], depths, strict=True):
        rows = []
        for l in range(1, depth + 1):
            s = res.records.vector("sv", step=depth, layer=layer_of(depth, l))
            rows.append(s / s[0] if s.size and s[0] > 0 else s)
        width = max((r.size for r in rows), default=1)
        grid = np.full((len(rows), width), np.nan)
        for i, r in enumerate(rows):
            grid[i, : r.size] = r
        shown = grid[:, : min(width, 12)]
        im = _log_heatmap(ax, shown, depth)
        ax.set_title(f"L = {depth}")
        ax.set_xlabel("singular value index i")
        ax.set_ylabel("layer ℓ")
        _integer_ticks(ax)
    if im is not None:
        bar = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9)
        bar.set_label("log10 s_i / s_1")
        bar.ax.axhline(np.log10(rel_line), color="cyan", lw=1.5)
    fig.suptitle(f"{title} (seed {res.seed}; cyan: threshold {rel_line:g}·s_1)")
    return fig, axes


def _dr_spectra(results: Sequence[Result]):
    res = results[0]
    depths = [f.depth for f in res.summary.fits]
    pick = sorted({depths[0], depths[len(depths) // 2], depths[-1]})
    return _sv_heatmaps(
        res,
        pick,
        lambda d, l: f"L{d}/W{l}",
        "depth-rank: spectra of W_ℓ",
        res.summary.tau,
    )


def _dr_slope(results: Sequence[Result]):
    fig, ax = new_figure()
    for i, res in enumerate(results):
        s = res.summary
        ls = np.array([f.depth for f in s.fits], dtype=float)
        ax.plot(ls, [f.sq_norm for f in s.fits], "o", color=f"C{i}", label=f"seed {res.seed}")
        grid = np.linspace(ls.min(), ls.max(), 20)
        ax.plot(
            grid,
            s.slope * grid + s.intercept,
            "-",
            color=f"C{i}",
            alpha=0.7,
            label=f"fit: {s.slope:.2f}±{s.slope_stderr:.2f}·L + {s.intercept:.1f}",
        )
    s0 = results[0].summary
    ls = np.array([f.depth for f in s0.fits], dtype=float)
    ax.plot(
        ls,
        2 * ls + (s0.intercept + (s0.slope - 2) * ls.mean()),
        "k--",
        lw=1,
        label="slope Rank_BN = 2 (through the mean)",
    )
    ax.set_xlabel("depth L")
    ax.set_ylabel("‖θ‖² at the end of training")
    ax.set_title("depth-rank: ‖θ‖² grows like R⁽⁰⁾·L (pass band 1.6–2.6)")
    ax.legend(fontsize=7)
    return fig, ax


def _dr_denoise(results: Sequence[Result]):
    res = results[0]
    fig, axes = new_figure(1, 2, width=4.3, height=4.0)
    clean = res.records.matrix("view/clean")[1]
    noisy = res.records.matrix("view/noisy")[1]
    for ax, tag, fit in zip(
        axes, ("deep", "control"), (res.summary.deep, res.summary.control), strict=True
    ):
        out = res.records.matrix(f"view/{tag}")[1]
        ax.plot(clean[0], clean[1], "-", color="k", lw=1.2, label="clean curve")
        ax.scatter(noisy[0], noisy[1], s=5, color="C7", alpha=0.5, label="noisy input")
        ax.scatter(out[0], out[1], s=6, color="C3" if tag == "deep" else "C0", label="output")
        ax.set_title(f"depth {fit.depth}: distance ratio {fit.ratio:.2f}")
        ax.set_xlabel("PC 1 of the curve")
        ax.set_aspect("equal", adjustable="datalim")
    axes[0].set_ylabel("PC 2 of the curve")
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"depth-rank: held-out noisy points through the autoencoders (seed {res.seed})\n"
        f"deep must be < 0.5; depth 2 >= 0.8 × {res.summary.linear_ratio:.2f}, "
        "the ratio of the projection onto the curve's span"
    )
    return fig, axes


def _bs_spectra(results: Sequence[Result]):
    res = results[0]
    depths = [d.depth for d in res.summary.depths]
    return _sv_heatmaps(
        res, depths, lambda d, l: f"L{d}/W{l}", "bottleneck-structure: spectra of W_ℓ", 0.3
    )


def _bs_tail(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=4.3)
    for i, res in enumerate(results):
        s = res.summary
        ls = [d.depth for d in s.depths]
        axes[0].loglog(
            ls,
            [d.mean_tail for d in s.depths],
            "o-",
            color=f"C{i}",
            label=f"seed {res.seed}: slope {s.tail_slope:.2f}",
        )
        for d in s.depths:
            axes[1].scatter(
                [1 / d.depth] * len(d.middle_norms), d.middle_norms, color=f"C{i}", s=12
            )
        fit, _ = norm_extrapolation(s)
        inv = np.linspace(0.0, 1 / min(ls), 20)
        axes[1].plot(
            inv,
            fit.intercept + fit.slope * inv,
            "--",
            color=f"C{i}",
            lw=1,
            label=f"seed {res.seed}: a + b/L, a = {fit.intercept:.2f}",
        )
    ls = np.array([d.depth for d in results[0].summary.depths], dtype=float)
    t0 = results[0].summary.depths[0].mean_tail
    axes[0].loglog(ls, t0 * (ls / ls[0]) ** -0.5, "k--", lw=1, label="slope −0.5 (criterion)")
    axes[0].set_xticks(ls, [f"{v:g}" for v in ls])
    axes[0].xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_xlabel("depth L")
    axes[0].set_ylabel("mean middle-layer Σ_(i>2) s_i²")
    axes[0].legend(fontsize=7)
    axes[1].axhspan(1.5, 2.7, color="C2", alpha=0.15, label="band for a: [1.5, 2.7]")
    axes[1].axhline(2.0, color="C2", lw=1)
    axes[1].set_xlim(left=0.0)
    axes[1].set_xlabel("1 / L  (L → ∞ at the left edge)")
    axes[1].set_ylabel("middle-layer ‖W_ℓ‖_F²")
    axes[1].legend(fontsize=7)
    fig.suptitle("bottleneck-structure: the tail shrinks with L; ‖W_ℓ‖² ≈ R⁽⁰⁾ = 2")
    return fig, axes


def _lr_hamiltonian(results: Sequence[Result]):
    res = results[0]
    runs = res.summary.runs
    fig, axes = new_figure(1, len(runs), width=3.6, squeeze=False)
    for ax, r in zip(axes[0], runs, strict=True):
        p = np.array(r.p)
        scale = -2.0 / r.leak
        ax.plot(p, scale * np.array(r.hamiltonian), "o-", color="k", ms=3, label="−(2/L̃)·H")
        ax.plot(p[1:], scale * np.array(r.kinetic), "s--", color="C0", ms=3, label="−(2/L̃)·kinetic")
        ax.plot(
            p[1:],
            scale * np.array(r.potential),
            "^--",
            color="C3",
            ms=3,
            label="−(2/L̃)·potential = COI",
        )
        ax.axhline(res.summary.k_star, color="C2", lw=1, label=f"k* = {res.summary.k_star}")
        ax.set_title(f"L̃ = {r.leak:g}: median estimate {r.k_estimate:.2f}")
        ax.set_xlabel("p")
        lo = min(0.0, float(np.nanpercentile(scale * np.array(r.kinetic), 5)))
        hi = max(2 * res.summary.k_star, float(np.nanpercentile(scale * np.array(r.potential), 95)))
        ax.set_ylim(lo - 0.5, hi + 0.5)
    axes[0][0].set_ylabel("energy (units of −L̃/2)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("leaky-resnet: Hamiltonian = kinetic + potential along p (LR-2 band [2.5, 3.2])")
    return fig, axes


def _lr_coi(results: Sequence[Result]):
    res = results[0]
    fig, ax = new_figure(width=7.0)
    for i, r in enumerate(res.summary.runs):
        ax.plot(
            r.p,
            r.coi,
            "o-",
            ms=3,
            color=f"C{i}",
            label=f"L̃ = {r.leak:g} (min {r.min_coi:.2f}, −2H/L̃ {r.k_estimate:.2f})",
        )
        ax.axhline(r.k_estimate, color=f"C{i}", ls=":", lw=1)
    ax.axhline(res.summary.k_star, color="k", lw=1.2, label=f"k* = {res.summary.k_star}")
    ax.set_yscale("log")
    ax.set_xlabel("p")
    ax.set_ylabel("COI_γ(A_p)")
    ax.set_title("leaky-resnet: COI along p; dotted: −(2/L̃)H (LR-3: min COI ≥ it)")
    ax.legend(fontsize=7)
    return fig, ax


def _lr_spectra(results: Sequence[Result]):
    res = results[0]
    runs = res.summary.runs
    depth = len(runs[0].large_counts)
    fig, axes = new_figure(1, len(runs), width=3.4, height=3.4, squeeze=False)
    im = None
    for ax, r in zip(axes[0], runs, strict=True):
        tag = f"Lt{r.leak:g}"
        rows = [res.records.vector("sv", step=l, layer=tag) for l in range(1, depth + 1)]
        grid = np.array([row[:12] / row[0] for row in rows])
        im = _log_heatmap(ax, grid, depth)
        ax.set_title(f"L̃ = {r.leak:g}: {r.k_star_count:.0%} middle layers with k*")
        ax.set_xlabel("index i")
        ax.set_ylabel("layer ℓ")
        _integer_ticks(ax)
    if im is not None:
        bar = fig.colorbar(im, ax=axes[0].tolist(), shrink=0.9)
        bar.set_label("log10 s_i / s_max")
        bar.ax.axhline(-1, color="cyan", lw=1.5)
    fig.suptitle(f"leaky-resnet: spectra of W_ℓ (cyan: 0.1·s_max; seed {res.seed})")
    return fig, axes


def _lr_steps(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=4.3)
    eq = results[0].summary.equidistant
    axes[0].plot(eq.p[1:], np.diff(eq.p), "k--", lw=1.2, label="equidistant")
    for i, res in enumerate(results):
        s = res.summary
        ad = s.adaptive
        axes[0].plot(
            ad.p[1:], np.diff(ad.p), "s-", color=f"C{i}", ms=3, label=f"adaptive, seed {res.seed}"
        )
        axes[1].bar(
            [2 * i, 2 * i + 0.8],
            [s.equidistant.test_mse, s.adaptive.test_mse],
            width=0.7,
            color=["C7", f"C{i}"],
        )
    axes[0].axvline(results[0].summary.p_cut, color="k", ls=":", lw=1)
    axes[0].set_xlabel("p_ℓ (dotted: p = 0.2)")
    axes[0].set_ylabel("step ρ_ℓ")
    axes[0].legend(fontsize=6)
    axes[1].set_xticks([2 * i + 0.4 for i in range(len(results))])
    axes[1].set_xticklabels([f"seed {r.seed}" for r in results])
    axes[1].set_ylabel("test MSE (grey: equidistant, colour: adaptive)")
    fig.suptitle(
        f"leaky-resnet: adaptive against equidistant steps at L̃ = {eq.leak:g} "
        "(LR-5: more layers at p <= 0.2; LR-6: test MSE)"
    )
    return fig, axes


def _fs_pruned(results: Sequence[Result]):
    fig, axes = new_figure(1, 2, width=4.5)
    ns_all = []
    for i, res in enumerate(results):
        cases = pruned_cases(res.summary)
        ns_all += [n for n, _, _ in cases]
        forced = [(n, a) for n, b, a in cases if b > n * (n + 1)]
        free = [(n, a) for n, b, a in cases if b <= n * (n + 1)]
        axes[0].scatter(
            [n + 0.15 * i for n, _ in forced],
            [a for _, a in forced],
            color=f"C{i}",
            s=20,
            label=f"seed {res.seed}: pruned from > N(N+1)",
        )
        axes[0].scatter(
            [n + 0.15 * i for n, _ in free],
            [a for _, a in free],
            s=20,
            facecolors="none",
            edgecolors=f"C{i}",
            label=f"seed {res.seed}: started <= N(N+1)",
        )
    grid = np.linspace(min(ns_all) - 1, max(ns_all) + 1, 50)
    axes[0].plot(grid, grid * (grid + 1), "k-", lw=1, label="N(N+1)")
    axes[0].plot(grid, 2 * grid, "k:", lw=1, label="2N")
    axes[0].set_xlabel("number of points N")
    axes[0].set_ylabel("width after pruning")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=7)
    res = results[0]
    by_n: dict[int, list] = {}
    for p in res.summary.sweep:
        by_n.setdefault(p.n_points, []).append(p)
    for j, (n, pts) in enumerate(sorted(by_n.items())):
        pts = sorted(pts, key=lambda p: p.width)
        axes[1].plot(
            [p.width for p in pts],
            [p.best_objective for p in pts],
            "o-",
            color=f"C{j}",
            label=f"N = {n}",
        )
        axes[1].axvline(n * (n + 1), color=f"C{j}", ls=":", lw=1)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("hidden width (dotted: N(N+1))")
    axes[1].set_ylabel("best regularized loss over inits")
    axes[1].legend(fontsize=7)
    fig.suptitle("feature-sparsity: Carathéodory-pruned widths and the width sweep")
    return fig, axes


FIGURES: dict[str, list[FigureSpec]] = {
    "depth-rank": [
        FigureSpec(
            "dr_spectra",
            "Singular values of W_ℓ across layers",
            "s_i(W_ℓ)/s_1 per layer for three depths; threshold τ·s_1 marked.",
            _dr_spectra,
        ),
        FigureSpec(
            "dr_slope", "‖θ‖² against depth", "Fitted line per seed and slope 2.", _dr_slope
        ),
        FigureSpec(
            "dr_denoise",
            "Denoising autoencoder",
            "Held-out noisy points and the outputs of the deep and depth-2 "
            "autoencoders, projected on the curve's top-2 principal components.",
            _dr_denoise,
        ),
    ],
    "bottleneck-structure": [
        FigureSpec(
            "bs_spectra",
            "Singular values of W_ℓ across layers",
            "s_i(W_ℓ)/s_1 per layer at every depth; threshold 0.3·s_1 marked.",
            _bs_spectra,
        ),
        FigureSpec(
            "bs_tail",
            "Tail energy and middle-layer norms",
            "Σ_{i>2}s_i² against L (log-log) with slope −0.5; ‖W_ℓ‖² against 1/L with each "
            "seed's a + b/L fit (BS-3 tests its intercept a against the band).",
            _bs_tail,
        ),
    ],
    "feature-sparsity": [
        FigureSpec(
            "fs_pruned",
            "Pruned width against N",
            "Widths after Carathéodory pruning against N with N(N+1) and 2N; best "
            "loss against width.",
            _fs_pruned,
        ),
    ],
    "leaky-resnet": [
        FigureSpec(
            "lr_hamiltonian",
            "Hamiltonian, kinetic and potential along p",
            "−(2/L̃)·H_ℓ with its kinetic and potential parts per L̃; k* marked.",
            _lr_hamiltonian,
        ),
        FigureSpec("lr_coi", "COI along p", "COI_γ(A_p) per L̃ with k* and −(2/L̃)H.", _lr_coi),
        FigureSpec(
            "lr_spectra",
            "Singular values of W_ℓ across layers",
            "s_i(W_ℓ)/s_max per layer and L̃; 0.1·s_max marked.",
            _lr_spectra,
        ),
        FigureSpec(
            "lr_steps",
            "Adaptive against equidistant steps",
            "ρ_ℓ against p_ℓ, and test MSE per seed.",
            _lr_steps,
        ),
    ],
}
