"""Claims of `sgd-weight-decay-rank` (docs/results.md pass criteria 1-3), from ``result.summary``.

Each ``invert_*`` returns a copy of a summary perturbed the wrong way (its check then fails).

Spearman's ρ is the Pearson correlation of average-tie ranks; it is undefined (NaN) when the
rank is constant over the grid, which means the effect did not show: the claim fails. The
learning rate used is the one the run ended with (halved after a divergence, docs/results.md
pitfall).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy.stats import rankdata

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = [
    "accuracy",
    "invert_accuracy",
    "invert_no_decay",
    "invert_rank_vs_batch",
    "invert_rank_vs_lr",
    "invert_rank_vs_wd",
    "no_decay",
    "rank_vs_batch",
    "rank_vs_lr",
    "rank_vs_wd",
    "spearman",
]

_SYMBOL = {"batch_size": "B", "lr_used": "μ", "weight_decay": "λ"}


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ with average ranks for ties; NaN if either side is constant."""
    ra, rb = rankdata(np.asarray(a, float)), rankdata(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else math.nan


def _ok(result: Result) -> list:
    return [r for r in result.summary.runs if r.finished]


def _correlation(result: Result, knob: str, sign: int) -> Check:
    runs = _ok(result)
    if len(runs) < 3:
        return inconclusive("fewer than 3 finished runs", finished=len(runs))
    layers = result.summary.layers
    rho = {
        layer: spearman([r.rank[layer] for r in runs], [getattr(r, knob) for r in runs])
        for layer in layers
    }
    positive = [r for r in runs if r.weight_decay > 0]
    rho_decay = (
        {
            layer: spearman([r.rank[layer] for r in positive], [getattr(r, knob) for r in positive])
            for layer in layers
        }
        if knob != "weight_decay" and len(positive) >= 3
        else {}
    )
    measured = {
        "spearman": rho,
        "spearman_over_runs_with_decay": rho_decay,
        "runs": len(runs),
        "diverged": len(result.summary.runs) - len(runs),
    }
    flat = [layer for layer, v in rho.items() if math.isnan(v)]
    wrong = [layer for layer, v in rho.items() if not math.isnan(v) and sign * v < 0.6]
    note = (
        f"rank constant over the grid in {flat} (no effect): counted as not shown" if flat else ""
    )
    why = [f"rank constant in {', '.join(flat)}"] if flat else []
    why += [f"fails at {', '.join(wrong)}"] if wrong else []
    values = " / ".join(f"{layer} {v:.2f}" for layer, v in rho.items())
    limit = "≥ 0.6" if sign > 0 else "≤ −0.6"
    return check(
        not wrong and not flat,
        note=note,
        headline=(
            f"Spearman(rank, {_SYMBOL[knob]}) {values} over {len(runs)} runs; limit {limit} → "
            + ("pass" if not why else "; ".join(why))
        ),
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
    runs = [r for r in _ok(result) if r.weight_decay == 0]
    if not runs:
        return inconclusive("no finished run without weight decay")
    worst = {
        layer: min(r.rank[layer] / r.full_rank[layer] for r in runs)
        for layer in result.summary.layers
    }
    low = [layer for layer, v in worst.items() if v < 0.9]
    values = " / ".join(f"{layer} {v:.2f}" for layer, v in worst.items())
    return check(
        not low,
        headline=(
            f"min rank/full rank at λ = 0: {values}; limit ≥ 0.9 → "
            + ("pass" if not low else f"fails at {', '.join(low)}")
        ),
        min_rank_over_full=worst,
        ranks={r.tag: r.rank for r in runs},
    )


def accuracy(result: Result) -> Check:
    """max over (B, μ) of the test-accuracy range across the λ > 0 of the grid is < 0.03.

    docs/results.md states it for λ ∈ {1e-3, 5e-3}, the non-zero λ of the default grid.
    """
    groups: dict[tuple, dict[float, float]] = {}
    for r in _ok(result):
        groups.setdefault((r.batch_size, r.lr), {})[r.weight_decay] = r.test_acc
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
    worst = max(gaps, key=gaps.get)
    ok = gaps[worst] < 0.03
    return check(
        ok,
        headline=(
            f"max test-accuracy gap across λ > 0: {gaps[worst]:.3f} at {worst} "
            f"({len(gaps)} (B, μ)); limit < 0.03 → {'pass' if ok else 'fails'}"
        ),
        max_gap=gaps[worst],
        gaps=gaps,
        gap_vs_no_decay=gaps_vs_zero,
    )


# ---- inversions: the summary perturbed the wrong way -------------------------------------


def _set_ranks(summary, rank: Callable) -> object:
    runs = [
        replace(r, rank={layer: int(rank(r, layer)) for layer in r.rank}) if r.finished else r
        for r in summary.runs
    ]
    return replace(summary, runs=runs)


def invert_rank_vs_batch(summary):
    """Rank falling with the batch size."""
    return _set_ranks(summary, lambda r, layer: 10_000 - r.batch_size)


def invert_rank_vs_lr(summary):
    """Rank rising with the learning rate used."""
    return _set_ranks(summary, lambda r, layer: round(1e6 * r.lr_used))


def invert_rank_vs_wd(summary):
    """Rank rising with the weight decay."""
    return _set_ranks(summary, lambda r, layer: round(1e6 * r.weight_decay))


def invert_no_decay(summary):
    """Without weight decay every layer at half its full rank."""
    return _set_ranks(
        summary,
        lambda r, layer: r.full_rank[layer] // 2 if r.weight_decay == 0 else r.rank[layer],
    )


def invert_accuracy(summary):
    """Test accuracy 0.9 at the smallest and 0.5 at the other λ > 0 of every (B, μ)."""
    smallest: dict[tuple, float] = {}
    for r in summary.runs:
        if r.finished and r.weight_decay > 0:
            key = (r.batch_size, r.lr)
            smallest[key] = min(smallest.get(key, math.inf), r.weight_decay)
    runs = [
        replace(r, test_acc=0.9 if r.weight_decay == smallest[(r.batch_size, r.lr)] else 0.5)
        if r.finished and r.weight_decay > 0
        else r
        for r in summary.runs
    ]
    return replace(summary, runs=runs)
