"""Claims of `sgd-weight-decay-rank` (collapse.md pass criteria 1-3), from ``result.summary``.

Spearman's ρ is the Pearson correlation of average-tie ranks; it is undefined (NaN) when the
rank is constant over the grid, which means the effect did not show: the claim fails. The
learning rate used is the one the run ended with (halved after a divergence, collapse.md
pitfall).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = ["accuracy", "no_decay", "rank_vs_batch", "rank_vs_lr", "rank_vs_wd", "spearman"]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ with average ranks for ties; NaN if either side is constant."""
    ra, rb = rankdata(np.asarray(a, float)), rankdata(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else math.nan


def _ok(result: Result) -> list[dict]:
    return [r for r in result.summary["runs"] if "rank" in r]


def _correlation(result: Result, knob: str, sign: int) -> Check:
    runs = _ok(result)
    if len(runs) < 3:
        return inconclusive("fewer than 3 finished runs", finished=len(runs))
    rho = {}
    for layer in result.summary["layers"]:
        rho[layer] = spearman([r["rank"][layer] for r in runs], [r[knob] for r in runs])
    positive = [r for r in runs if r["weight_decay"] > 0]
    rho_decay = (
        {
            layer: spearman([r["rank"][layer] for r in positive], [r[knob] for r in positive])
            for layer in result.summary["layers"]
        }
        if knob != "weight_decay" and len(positive) >= 3
        else {}
    )
    measured = {
        "spearman": rho,
        "spearman_over_runs_with_decay": rho_decay,
        "runs": len(runs),
        "diverged": len(result.summary["runs"]) - len(runs),
    }
    flat = [layer for layer, v in rho.items() if math.isnan(v)]
    note = (
        f"rank constant over the grid in {flat} (no effect): counted as not shown" if flat else ""
    )
    return check(
        all(sign * v >= 0.6 for v in rho.values() if not math.isnan(v)) and not flat,
        note=note,
        **measured,
    )


def rank_vs_batch(result: Result) -> Check:
    return _correlation(result, "batch_size", +1)


def rank_vs_lr(result: Result) -> Check:
    return _correlation(result, "lr_used", -1)


def rank_vs_wd(result: Result) -> Check:
    return _correlation(result, "weight_decay", -1)


def no_decay(result: Result) -> Check:
    """With λ = 0 every hidden layer keeps rank ≥ 0.9·min(m, n)."""
    runs = [r for r in _ok(result) if r["weight_decay"] == 0]
    if not runs:
        return inconclusive("no finished run without weight decay")
    worst = {
        layer: min(r["rank"][layer] / r["full_rank"][layer] for r in runs)
        for layer in result.summary["layers"]
    }
    return check(
        all(v >= 0.9 for v in worst.values()),
        min_rank_over_full=worst,
        ranks={r["tag"]: r["rank"] for r in runs},
    )


def accuracy(result: Result) -> Check:
    """max over (B, μ) of the test-accuracy range across the λ > 0 of the grid is < 0.03.

    collapse.md states it for λ ∈ {1e-3, 5e-3}, the non-zero λ of the default grid.
    """
    groups: dict[tuple, dict[float, float]] = {}
    for r in _ok(result):
        groups.setdefault((r["batch_size"], r["lr"]), {})[r["weight_decay"]] = r["test_acc"]
    gaps, gaps_vs_zero = {}, {}
    for (b, mu), accs in groups.items():
        key = f"B={b},lr={mu:g}"
        decayed = [v for wd, v in accs.items() if wd > 0]
        if len(decayed) >= 2:
            gaps[key] = max(decayed) - min(decayed)
        if 0.0 in accs and decayed:
            gaps_vs_zero[key] = max(abs(v - accs[0.0]) for v in decayed)
    if not gaps:
        return inconclusive("no (B, μ) finished with two λ > 0", gap_vs_no_decay=gaps_vs_zero)
    return check(
        max(gaps.values()) < 0.03,
        max_gap=max(gaps.values()),
        gaps=gaps,
        gap_vs_no_decay=gaps_vs_zero,
    )
