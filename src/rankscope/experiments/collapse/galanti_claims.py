"""Claims of `sgd-weight-decay-rank` (docs/results.md pass criteria 1-3), from ``result.summary``.

GAL-B, GAL-lr and GAL-wd are matched-pair sign tests over all seeds (``across_seeds``): a pair
is two grid points of one seed that differ in one factor only (B, μ or λ), at consecutive
levels of it, both with λ > 0; it is a success when the point the paper predicts to be lower
(smaller B, larger μ, larger λ) has a strictly lower `galanti` rank. Ties count as non-
successes, so the one-sided p-value P(Binom(n, 1/2) ≥ successes) is conservative (under no
effect a success has probability ≤ 1/2; consecutive pairs sharing a run are negatively
correlated under exchangeability, which makes the binomial tail conservative too). A factor
passes when p < α = 0.05 in every hidden layer; with too few pairs to reach α even at n/n
the claim is inconclusive. The learning rate of a pair is the one each run ended with
(halved after a divergence, docs/results.md pitfall); a pair whose runs ended at the same μ
is left out. Reported, not used: the classic sign test that drops the ties, the stable-rank
direction of the same pairs, and Spearman's ρ pooled over the λ > 0 runs.

GAL-noWD and GAL-acc are per-seed checks; each ``invert_*`` returns a copy of a summary
perturbed the wrong way (the check then fails).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from scipy.stats import rankdata

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = [
    "ALPHA",
    "accuracy",
    "invert_accuracy",
    "invert_no_decay",
    "invert_rank_vs_batch",
    "invert_rank_vs_lr",
    "invert_rank_vs_wd",
    "matched_pairs",
    "no_decay",
    "rank_vs_batch",
    "rank_vs_lr",
    "rank_vs_wd",
    "sign_test_p",
    "spearman",
]

ALPHA = 0.05  # one-sided level of each layer's sign test
_SYMBOL = {"batch_size": "B", "lr": "μ", "weight_decay": "λ"}
_KNOBS = ("batch_size", "lr", "weight_decay")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ with average ranks for ties; NaN if either side is constant."""
    ra, rb = rankdata(np.asarray(a, float)), rankdata(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float((ra**2).sum() * (rb**2).sum()))
    return float((ra * rb).sum() / den) if den > 0 else math.nan


def sign_test_p(successes: int, n: int) -> float:
    """One-sided sign-test p-value P(X ≥ successes) for X ~ Binom(n, 1/2) (exact)."""
    if not (isinstance(n, int | np.integer) and isinstance(successes, int | np.integer)):
        raise TypeError(f"successes and n must be ints, got {successes!r}, {n!r}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 ≤ successes ≤ n, got successes={successes}, n={n}")
    return sum(math.comb(int(n), k) for k in range(int(successes), int(n) + 1)) / 2 ** int(n)


def _ok(result: Result) -> list:
    return [r for r in result.summary.runs if r.finished]


def matched_pairs(results: Sequence[Result], knob: str) -> tuple[list[tuple], int]:
    """Pairs (lower, higher) of finished λ > 0 runs of one seed that differ only in ``knob``
    (consecutive levels of it): ``lower`` is the run the paper predicts to have the lower rank.
    Also returns how many pairs were left out because both runs ended at the same μ."""
    if knob not in _KNOBS:
        raise ValueError(f"knob must be one of {_KNOBS}, got {knob!r}")
    pairs, same_lr = [], 0
    others = [k for k in _KNOBS if k != knob]
    for res in results:
        groups: dict[tuple, list] = {}
        for r in _ok(res):
            if r.weight_decay > 0:
                groups.setdefault(tuple(getattr(r, k) for k in others), []).append(r)
        for key in sorted(groups):
            runs = sorted(groups[key], key=lambda r: getattr(r, knob))
            for a, b in itertools.pairwise(runs):  # a has the smaller grid value of the knob
                if knob == "batch_size":
                    pairs.append((res.seed, a, b))  # smaller B: lower rank
                elif knob == "weight_decay":
                    pairs.append((res.seed, b, a))  # larger λ: lower rank
                elif a.lr_used == b.lr_used:
                    same_lr += 1
                else:  # larger μ used: lower rank
                    pairs.append((res.seed, *sorted((a, b), key=lambda r: -r.lr_used)))
    return pairs, same_lr


def _pair_tag(seed, low, high, knob) -> str:
    fmt = {"batch_size": "B={:g}", "lr": "μ={:g}", "weight_decay": "λ={:g}"}[knob]
    attr = "lr_used" if knob == "lr" else knob
    fixed = [k for k in _KNOBS if k != knob]
    where = ",".join(f"{_SYMBOL[k]}={getattr(low, k):g}" for k in fixed)
    lo, hi = fmt.format(getattr(low, attr)), fmt.format(getattr(high, attr))
    return f"seed {seed} {where}: {lo} vs {hi}"


def _sign_test(results: Sequence[Result], knob: str) -> Check:
    results = list(results)
    if not results:
        return inconclusive("no finished result")
    layers = results[0].summary.layers
    pairs, same_lr = matched_pairs(results, knob)
    n = len(pairs)
    need = math.ceil(math.log2(1 / ALPHA))  # n/n successes give p = 2^−n < α only from here
    counts, p, p_untied, srank = {}, {}, {}, {}
    for layer in layers:
        lower = sum(lo.rank[layer] < hi.rank[layer] for _, lo, hi in pairs)
        tied = sum(lo.rank[layer] == hi.rank[layer] for _, lo, hi in pairs)
        counts[layer] = {"predicted": lower, "tied": tied, "opposite": n - lower - tied}
        p[layer] = sign_test_p(lower, n) if n else math.nan
        p_untied[layer] = sign_test_p(lower, n - tied) if n - tied else math.nan
        srank[layer] = sum(lo.stable_rank[layer] < hi.stable_rank[layer] for _, lo, hi in pairs)
    rank_pairs = {
        _pair_tag(seed, lo, hi, knob): [[lo.rank[x] for x in layers], [hi.rank[x] for x in layers]]
        for seed, lo, hi in pairs
    }
    decayed = [r for res in results for r in _ok(res) if r.weight_decay > 0]
    attr = "lr_used" if knob == "lr" else knob
    rho = (
        {
            x: spearman([r.rank[x] for r in decayed], [getattr(r, attr) for r in decayed])
            for x in layers
        }
        if len(decayed) >= 3
        else {}
    )
    measured = {
        "pairs": n,
        "seeds": [r.seed for r in results],
        "alpha": ALPHA,
        "counts": counts,
        "p_value": p,
        "pairs_left_out_same_lr": same_lr,
        # reported, not used: the classic sign test that drops ties, and the stable rank
        "p_value_ties_dropped": p_untied,
        "stable_rank_lower_where_predicted": srank,
        "ranks_lower_vs_higher": rank_pairs,
        "spearman_over_runs_with_decay": rho,  # pooled over seeds; reported, not used
        "diverged": sum(not r.finished for res in results for r in res.summary.runs),
    }
    sym = _SYMBOL[knob]
    if n < need:
        return inconclusive(
            f"{n} matched {sym} pairs over {len(results)} seed(s): even {n}/{n} successes "
            f"give p = {2.0**-n:.3g} ≥ α = {ALPHA}",
            **measured,
        )
    values = " / ".join(
        f"{x} {c['predicted']}/{n} (tied {c['tied']}) p = {p[x]:.2g}" for x, c in counts.items()
    )
    bad = [x for x in layers if not p[x] < ALPHA]
    return check(
        not bad,
        headline=(
            f"sign test over {n} matched {sym} pairs ({len(results)} seeds), rank lower "
            f"where predicted: {values}; limit p < {ALPHA} → "
            + ("pass" if not bad else f"fails at {', '.join(bad)}")
        ),
        **measured,
    )


def rank_vs_batch(results: Sequence[Result]) -> Check:
    """Smaller B gives a lower rank (matched pairs over seeds, λ > 0)."""
    return _sign_test(results, "batch_size")


def rank_vs_lr(results: Sequence[Result]) -> Check:
    """Larger μ (used) gives a lower rank (matched pairs over seeds, λ > 0)."""
    return _sign_test(results, "lr")


def rank_vs_wd(results: Sequence[Result]) -> Check:
    """Larger λ gives a lower rank (matched pairs over seeds, λ > 0)."""
    return _sign_test(results, "weight_decay")


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

    The spec states it for λ ∈ {1e-3, 5e-3}; the default grid has λ ∈ {5e-3, 1e-2}.
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
