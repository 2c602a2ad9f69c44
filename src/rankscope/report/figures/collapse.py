"""Figures of the classification family: `neural-rank-collapse`, `sgd-weight-decay-rank`,
`rank-diminishing`. Pure functions of stored results (summary + records)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rankscope.report.figures.base import FigureSpec, new_figure
from rankscope.results import Result

__all__ = ["FIGURES"]

_PROTOCOLS = (("lbfgs", "L-BFGS", "-", "o"), ("adam", "Adam→GD budget", "--", "s"))


def _ok(results: Sequence[Result]) -> list[Result]:
    good = [r for r in results if r.status == "ok"]
    if not good:
        raise ValueError("no finished run to draw")
    return good


def _lam_runs(res: Result, protocol: str) -> list:
    runs = getattr(res.summary, protocol)
    return sorted((r for r in runs if r.layers), key=lambda r: r.lam)


def _grid(nrows: int, ncols: int, width: float, height: float):
    fig, axes = new_figure(nrows, ncols, width=width, height=height)
    return fig, np.atleast_2d(np.asarray(axes).reshape(nrows, ncols))


def _lam_colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.8 * i / max(n - 1, 1)) for i in range(n)]


def _lam_color_map(res: Result) -> dict[float, tuple]:
    """One colour per λ across both protocols (ordered by λ)."""
    lams = sorted({r.lam for p, *_ in _PROTOCOLS for r in _lam_runs(res, p)})
    return dict(zip(lams, _lam_colors(len(lams))))


# ------------------------------------------------------------------ neural-rank-collapse
def _nrc_spectra(results: Sequence[Result]):
    res = _ok(results)[0]
    k = res.summary.K
    protocols = [p for p in _PROTOCOLS if _lam_runs(res, p[0])]
    n_layers = len(_lam_runs(res, protocols[0][0])[0].layers)
    fig, axes = _grid(len(protocols), n_layers, 3.3, 3.0)
    for row, (protocol, label, _, _) in enumerate(protocols):
        runs = _lam_runs(res, protocol)
        colors = _lam_color_map(res)
        for col in range(n_layers):
            ax = axes[row, col]
            for run in runs:
                color = colors[run.lam]
                s = res.records.vector("sv", layer=f"{run.tag}/W{col + 1}")
                s = s / s[0] if s.size and s[0] > 0 else s
                ax.plot(
                    np.arange(1, s.size + 1),
                    np.maximum(s, 1e-18),
                    color=color,
                    lw=1.4,
                    label=f"λ = {run.lam:g}",
                )
            ax.axvline(k + 0.5, color="tab:red", ls="--", lw=1, label=f"K = {k}")
            ax.axhline(1e-2, color="0.5", ls=":", lw=1, label="rank threshold 1e-2")
            ax.set_yscale("log")
            ax.set_xlabel("index i")
            ax.set_ylabel("$s_i / s_1$ (log)")
            ax.set_title(f"{label}: W{col + 1}", fontsize=9)
        axes[row, -1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Normalized singular values per layer and weight decay λ (red: index K)")
    return fig, axes


def _nrc_tail(results: Sequence[Result]):
    fig, ax = new_figure(1, 1, width=5.6, height=4.2)
    res = _ok(results)[0]
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
    for protocol, label, ls, marker in _PROTOCOLS:
        runs = _lam_runs(res, protocol)
        if not runs:
            continue
        lams = [r.lam for r in runs]
        for i in range(len(runs[0].layers) - 1):  # the last layer has rank ≤ K anyway
            tails = [max(r.layers[i].rel_tail, 1e-18) for r in runs]
            ax.plot(
                lams,
                tails,
                ls=ls,
                marker=marker,
                color=colors[i % len(colors)],
                label=f"W{i + 1}, {label}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight decay λ (log)")
    ax.set_ylabel("relative tail $d_K^F(W)/\\|W\\|_F$ (log)")
    ax.legend(fontsize=7)
    ax.set_title("Relative distance to rank K vs weight decay")
    return fig, ax


def _bound_points(res: Result):
    groups = {"lbfgs": [], "adam": [], "mixtures": []}
    for protocol in ("lbfgs", "adam"):
        groups[protocol] = [e for r in _lam_runs(res, protocol) for e in r.layers]
    mixtures = [*res.summary.gmm, *res.summary.gmm_overlap]
    groups["mixtures"] = [e for r in mixtures for e in r.layers]
    return groups


def _nrc_bound(results: Sequence[Result]):
    fig, ax = new_figure(1, 1, width=5.6, height=4.6)
    styles = {
        "lbfgs": ("tab:blue", "o", "L-BFGS digits"),
        "adam": ("tab:orange", "s", "Adam digits"),
        "mixtures": ("tab:green", "^", "Gaussian mixtures"),
    }
    lo, hi = np.inf, 0.0
    for res in _ok(results):
        for key, entries in _bound_points(res).items():
            pts = [
                (e.bound.bound_op, e.bound.s_k1, e.relative_residual < 0.05)
                for e in entries
                if e.bound.s_k1 > 0 and e.bound.bound_op > 0
            ]
            if not pts:
                continue
            b, s, near = (np.asarray(v) for v in zip(*pts))
            color, marker, label = styles[key]
            if near.any():
                ax.scatter(
                    b[near],
                    s[near],
                    color=color,
                    marker=marker,
                    label=f"{label}, near-critical (‖R‖₂/s₁ < 0.05)",
                )
            if (~near).any():
                ax.scatter(
                    b[~near],
                    s[~near],
                    facecolors="none",
                    edgecolors=color,
                    marker=marker,
                    label=f"{label}, not near-critical",
                )
            lo, hi = min(lo, b.min(), s.min()), max(hi, b.max(), s.max())
            styles[key] = (color, marker, "_nolegend_")
    if hi > 0:
        line = np.array([lo / 2, hi * 2])
        ax.plot(line, line, color="0.3", lw=1, ls="--", label="y = x (bound tight)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("bound $\\|R_l\\|_2 + \\|\\Delta_l(H-M)^T\\|_2/(\\lambda N)$ (log)")
    ax.set_ylabel("measured $s_{K+1}(W_l)$ (log)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(
        "Non-stationary bound vs measured $s_{K+1}$ (the bound holds below y = x)", fontsize=10
    )
    return fig, ax


def _nrc_collapse(results: Sequence[Result]):
    res = _ok(results)[0]
    keys = (
        ("tcv1", "TCV$_1$"),
        ("nc1_quotient", "NC1 quotient tr Σ_W / tr Σ_B"),
        ("nc1_pinv", "NC1 pinv (1/K) tr Σ_W Σ_B$^†$"),
    )
    fig, axes = _grid(1, len(keys), 4.2, 3.6)
    for col, (key, label) in enumerate(keys):
        ax = axes[0, col]
        for protocol, plabel, ls, marker in _PROTOCOLS:
            for run in _lam_runs(res, protocol):
                vals = [getattr(e.nc_prev, key) for e in run.layers]
                ax.plot(
                    range(len(vals)),
                    vals,
                    ls=ls,
                    marker=marker,
                    color=_lam_color_map(res)[run.lam],
                    label=f"λ = {run.lam:g}, {plabel}",
                )
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_yscale("log")
        ax.set_xlabel("representation $H_l$ (0 = input)")
        ax.set_ylabel(f"{label} (log)")
        ax.set_title(label, fontsize=9)
    axes[0, -1].legend(fontsize=6)
    fig.suptitle("Within-class variability per layer (training set, sample global mean)")
    return fig, axes


# ------------------------------------------------------------------ sgd-weight-decay-rank
def _galanti_knobs(results: Sequence[Result]):
    res = _ok(results)[0]
    layers = res.summary.layers
    runs = [r for r in res.summary.runs if r.finished]
    wds = sorted({r.weight_decay for r in runs})
    lrs = sorted({r.lr for r in runs})
    fig, axes = _grid(1, len(layers), 4.2, 3.8)
    colors = _lam_colors(len(wds))
    for col, layer in enumerate(layers):
        ax = axes[0, col]
        full = runs[0].full_rank[layer]
        for wd, color in zip(wds, colors):
            for mu, ls, marker in zip(lrs, ("-", "--", ":"), ("o", "s", "^")):
                sel = sorted(
                    (r for r in runs if r.weight_decay == wd and r.lr == mu),
                    key=lambda r: r.batch_size,
                )
                ax.plot(
                    [r.batch_size for r in sel],
                    [r.rank[layer] for r in sel],
                    ls=ls,
                    marker=marker,
                    color=color,
                    label=f"λ = {wd:g}, μ = {mu:g}",
                )
        ax.axhline(0.9 * full, color="tab:red", ls="--", lw=1, label="0.9·full rank (λ = 0)")
        ax.set_xscale("log", base=2)
        sizes = sorted({r.batch_size for r in runs})
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_ylim(0, 1.05 * full)
        ax.set_xlabel("batch size B (log)")
        ax.set_ylabel("rank, s_i > 1e-3·‖W‖_F")
        ax.set_title(f"{layer} (full rank {full})", fontsize=9)
    axes[0, -1].legend(fontsize=7)
    fig.suptitle("SGD + weight decay: rank vs batch size B, learning rate μ, weight decay λ")
    return fig, axes


# ------------------------------------------------------------------ rank-diminishing
def _feng_depth(results: Sequence[Result]):
    res = _ok(results)[0]
    nets = res.summary.networks
    fig, axes = _grid(1, len(nets), 3.6, 3.4)
    for col, net in enumerate(nets):
        ax = axes[0, col]
        steps, ranks = res.records.matrix("jac_rank_torch", layer=net.tag)  # (depth, input)
        for b in range(ranks.shape[1]):
            ax.plot(steps, ranks[:, b], color="0.7", lw=0.6, alpha=0.6)
        q10, q50, q90 = np.nanquantile(ranks, [0.1, 0.5, 0.9], axis=1)
        ax.fill_between(steps, q10, q90, color="tab:blue", alpha=0.25, label="10-90% of inputs")
        ax.plot(steps, q50, color="tab:blue", lw=2, label="median")
        if net.tag.endswith("bottleneck"):
            ax.axhline(
                res.summary.bottleneck_width,
                color="tab:red",
                ls="--",
                lw=1,
                label="bottleneck width",
            )
        ax.set_xlabel("depth l (0 = input, last = logits)")
        ax.set_ylabel("rank $J_l(x)$, torch preset")
        ax.set_title(f"{net.tag} {net.dims}", fontsize=8)
    axes[0, 0].plot([], [], color="0.7", lw=0.6, label="one input")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Rank of the Jacobian ∂h_l/∂x vs depth per input (float64, torch preset)")
    return fig, axes


FIGURES = {
    "neural-rank-collapse": [
        FigureSpec(
            "nrc_spectra",
            "Singular values per layer and λ",
            "s_i/s_1 of every weight matrix for each weight decay λ, under both protocols; "
            "red dashed: the class count K; dotted: the 1e-2 rank threshold.",
            _nrc_spectra,
        ),
        FigureSpec(
            "nrc_tail",
            "Relative tail vs λ",
            "d_K^F(W_l)/‖W_l‖_F against λ for each hidden layer; solid: L-BFGS, dashed: "
            "Adam then GD.",
            _nrc_tail,
        ),
        FigureSpec(
            "nrc_bound",
            "Bound vs measured s_{K+1}",
            "Non-stationary bound against the measured s_{K+1}(W_l) for every layer, λ and "
            "sub-run (all seeds); filled: near-critical (‖R‖₂/s₁ < 0.05).",
            _nrc_bound,
        ),
        FigureSpec(
            "nrc_collapse",
            "NC1 and TCV per layer",
            "Within-class variability of each representation feeding a weight matrix.",
            _nrc_collapse,
        ),
    ],
    "sgd-weight-decay-rank": [
        FigureSpec(
            "galanti_knobs",
            "Rank vs batch size, learning rate and weight decay",
            "Final `galanti` rank of each hidden layer over the grid (first seed).",
            _galanti_knobs,
        ),
    ],
    "rank-diminishing": [
        FigureSpec(
            "feng_depth",
            "Jacobian rank vs depth",
            "Rank of ∂h_l/∂x per probe input (grey) with median and 10-90% band, at init "
            "and after training, plain and with a width-8 bottleneck.",
            _feng_depth,
        ),
    ],
}
