"""Figures of the tensor and graph family (docs/results.md), drawn from stored results only."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from rankscope.experiments.base import Result
from rankscope.report.figures.base import FigureSpec, new_figure

__all__ = ["FIGURES"]

_TOP = 5


def _norm_panels(results: Sequence[Result], name: str, key: str, ylabel: str, title: str):
    """One panel per init: the top-5 (by final value) norms over steps, log y."""
    res = results[0]
    runs = getattr(res.summary, key)
    fig, axes = new_figure(1, len(runs), width=4.2)
    axes = np.atleast_1d(axes)
    for ax, run in zip(axes, runs):
        init = float(run.init)
        steps, vals = res.records.matrix(name, layer=f"init={init:g}")
        if vals.size:
            order = np.argsort(-np.nan_to_num(vals[-1]))[:_TOP]
            for rank, r in enumerate(order):
                ax.plot(steps, np.maximum(vals[:, r], 1e-300), label=f"#{rank + 1}")
            # zoom on the rises: up to 3x the last rise step (the rest is flat)
            ax.set_xlim(0, min(int(steps[-1]), max(3 * max(run.rise_steps), 500)))
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(f"init std {init:g} ({run.steps} steps run)")
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(title="by final norm", fontsize=7)
    fig.suptitle(f"{title} (seed {res.seed})")
    return fig, axes


def _cp_norms(results):
    return _norm_panels(
        results,
        "component_norm",
        "tc1",
        "component norm ‖W_r‖ (log)",
        "CP completion: components are learned one at a time",
    )


def _error_vs_init(results):
    fig, ax = new_figure()
    by_init: dict[float, list[float]] = {}
    for res in results:
        for r in res.summary.tc1:
            by_init.setdefault(float(r.init), []).append(r.rel_error_unobserved)
    inits = sorted(by_init)
    for init in inits:
        ax.scatter([init] * len(by_init[init]), by_init[init], color="C0", alpha=0.6, s=18)
    ax.plot(inits, [np.mean(by_init[i]) for i in inits], "o-", color="C1", label="mean over seeds")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("init std")
    ax.set_ylabel("relative error on unobserved entries")
    ax.set_title("Tensor completion error vs initialization scale")
    ax.legend()
    return fig, ax


def _tc2(results):
    fig, axes = new_figure(1, 2, width=4.5)
    study = results[0].summary.tc2
    for ax, split in zip(axes, ("train", "test")):
        for k, f in enumerate(dataclasses.fields(study)):
            r = getattr(study, f.name)
            ax.plot(r.ranks, getattr(r, f"{split}_mse"), "o-", color=f"C{k}", label=f.name)
            ax.axhline(getattr(r, f"var_{split}"), color=f"C{k}", ls=":", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("CP rank R")
        ax.set_ylabel(f"{split} MSE (log; dotted: Var(y))")
        ax.set_title(f"{split}")
    axes[0].legend(fontsize=7)
    fig.suptitle("Digits as an order-64 tensor: natural vs random data")
    return fig, axes


def _ht_norms(results):
    return _norm_panels(
        results,
        "local_component_norm",
        "htf1",
        "root local-component norm (log)",
        "HT completion: local components are learned one at a time",
    )


def _accuracy_vs_gap(results):
    fig, ax = new_figure()
    runs = [r for res in results for r in res.summary.igc1.runs]
    for k, lam in enumerate(sorted({r.lam for r in runs})):
        gaps = sorted({r.gap for r in runs if r.lam == lam})
        accs = [[r.test_accuracy for r in runs if r.lam == lam and r.gap == g] for g in gaps]
        ax.errorbar(
            gaps,
            [np.mean(a) for a in accs],
            yerr=[np.std(a) for a in accs],
            fmt="o-",
            capsize=3,
            color=f"C{k}",
            label=f"λ_IGC = {lam:g}",
        )
    ax.axhline(50, color="gray", ls=":", label="chance")
    rf = results[0].summary.igc1.receptive_field
    ax.set_xlabel("horizontal gap between the digits (pixels)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title(f"IsSameClass on digits (CNN receptive field {rf} px)")
    ax.legend()
    return fig, ax


def _accuracy_vs_removed(results):
    fig, ax = new_figure(width=5.5)
    r = results[0].summary.gnn3
    none = [res.summary.gnn3.none_removed for res in results]
    base = float(np.mean(none))
    levels = [0.0, *r.levels]
    for k, method in enumerate(r.accuracy):
        arr = np.array([res.summary.gnn3.accuracy[method] for res in results], dtype=float).T
        mean = [base, *np.nanmean(arr, axis=1)]  # arr: (levels, seeds)
        std = [float(np.std(none)), *np.nanstd(arr, axis=1)]
        ax.errorbar(
            100 * np.array(levels), mean, yerr=std, fmt="o-", capsize=3, color=f"C{k}", label=method
        )
    ax.set_xlabel("edges removed (%)")
    ax.set_ylabel("test accuracy (%), mean ± std over seeds")
    ax.set_title(f"GCN, degree-corrected SBM ({r.num_nodes} vertices, {r.num_edges} edges)")
    ax.legend(title="removal method")
    return fig, ax


FIGURES = {
    "tensor-factorization": [
        FigureSpec(
            "component-norms",
            "CP component norms over training",
            "Top-5 component norms per init scale (x axis zoomed on the rises): with small "
            "init they rise one after another (incremental rank learning).",
            _cp_norms,
        ),
        FigureSpec(
            "error-vs-init",
            "Unobserved error vs init",
            "Relative error on unobserved entries falls as the init shrinks.",
            _error_vs_init,
        ),
        FigureSpec(
            "digits-tensor-rank",
            "Digits fit at low CP rank",
            "Train/test MSE vs CP rank on original digits, random images and shuffled "
            "labels; dotted lines are Var(y).",
            _tc2,
        ),
    ],
    "htf-locality": [
        FigureSpec(
            "local-component-norms",
            "HT local-component norms over training",
            "Root-layer local-component norms per init: incremental hierarchical-rank learning.",
            _ht_norms,
        ),
        FigureSpec(
            "accuracy-vs-gap",
            "IsSameClass accuracy vs gap per λ",
            "Test accuracy as the digits move apart, without and with the IGC regularizer.",
            _accuracy_vs_gap,
        ),
    ],
    "gnn-walk-index": [
        FigureSpec(
            "accuracy-vs-removed",
            "Accuracy vs fraction of edges removed",
            "GCN test accuracy after removing edges by each method (WIS keeps walk indices high).",
            _accuracy_vs_removed,
        ),
    ],
}
