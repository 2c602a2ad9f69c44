"""Claim checks of ``mixed-dynamics`` (docs/results.md § mixed-dynamics, pass criteria 1-5).

Each check reads only the typed ``result.summary``: ``grid`` (one point per (γ_σ², γ_w)),
``fast`` (the fast-check point), ``srank_target`` and ``margin``. Each ``invert_*`` perturbs a
summary the wrong way so that its check fails.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = [
    "active_beats_lazy",
    "fast_check",
    "gd_matches_self_consistent",
    "invert_active_beats_lazy",
    "invert_fast",
    "invert_gap",
    "invert_stable_rank",
    "invert_topk",
    "stable_rank_by_region",
    "topk_converges_first",
]

FAST_POINT = (-1.85, 2.25)
FAST_D = 100
RATIO_MAX = 0.6  # criterion 1
GAP_MAX = 0.1  # criterion 3
TOPK_RATIO = 0.5  # criterion 4


def _key(p) -> str:
    return f"({p.gamma_sigma2:.3g}, {p.gamma_w:.3g})"


def _pf(ok: bool) -> str:
    return "pass" if ok else "fail"


def _classified(result: Result, *, below_red_only: bool, use_margin: bool = True):
    """(active, lazy) grid points that did not diverge; with ``use_margin`` only those at
    distance ≥ margin from γσ²+γw = 1 (criterion 1 names the margin; 2 and 4 do not)."""
    margin = float(result.summary.margin) if use_margin else 0.0
    pts = [
        p
        for p in result.summary.grid
        if not p.diverged and abs(p.line_distance) >= margin and (p.below_red or not below_red_only)
    ]
    return [p for p in pts if p.region == "active"], [p for p in pts if p.region == "lazy"]


def active_beats_lazy(result: Result) -> Check:
    """Criterion 1: median min test error (active) < 0.6 × median (lazy), below the red line."""
    active, lazy = _classified(result, below_red_only=True)
    counts = {"n_active": len(active), "n_lazy": len(lazy)}
    if not active or not lazy:
        return inconclusive(
            "the grid has no active or no lazy point below the red line beyond the margin",
            headline=f"{len(active)} active and {len(lazy)} lazy points below the red line "
            "beyond the margin; need ≥ 1 of each",
            **counts,
        )
    med_a = float(np.median([p.min_test_error for p in active]))
    med_l = float(np.median([p.min_test_error for p in lazy]))
    ok = med_a < RATIO_MAX * med_l
    return check(
        ok,
        headline=f"median min test error {med_a:.3g} (active, n = {len(active)}) / {med_l:.3g} "
        f"(lazy, n = {len(lazy)}) = {med_a / med_l:.3g} vs < {RATIO_MAX:g} → {_pf(ok)}",
        median_active=round(med_a, 4),
        median_lazy=round(med_l, 4),
        ratio=round(med_a / med_l, 4),
        **counts,
    )


def stable_rank_by_region(result: Result) -> Check:
    """Criterion 2: srank at the min within ±1 of srank(A*) (active); ≥ srank(A*)+2 (lazy),
    over every grid point that did not diverge (no margin: the criterion names none)."""
    active, lazy = _classified(result, below_red_only=False, use_margin=False)
    target = float(result.summary.srank_target)
    counts = {
        "n_active": len(active),
        "n_lazy": len(lazy),
        "srank_target": round(target, 3),
        "diverged": [_key(p) for p in result.summary.grid if p.diverged],
    }
    if not active or not lazy:
        return inconclusive(
            "the grid has no active or no lazy point",
            headline=f"{len(active)} active and {len(lazy)} lazy grid points; need ≥ 1 of each",
            **counts,
        )
    bad_a = {
        _key(p): round(p.stable_rank_at_min, 3)
        for p in active
        if abs(p.stable_rank_at_min - target) > 1
    }
    bad_l = {
        _key(p): round(p.stable_rank_at_min, 3) for p in lazy if p.stable_rank_at_min < target + 2
    }
    a_lo = min(p.stable_rank_at_min for p in active)
    a_hi = max(p.stable_rank_at_min for p in active)
    l_lo = min(p.stable_rank_at_min for p in lazy)
    ok = not bad_a and not bad_l
    why = "" if ok else f" ({len(bad_a)} active outside, {len(bad_l)} lazy below)"
    return check(
        ok,
        headline=f"srank at the min: active {a_lo:.3g}–{a_hi:.3g} (need {target - 1:.3g}–"
        f"{target + 1:.3g}), lazy ≥ {l_lo:.3g} (need ≥ {target + 2:.3g}); srank(A*) = "
        f"{target:.3g} → {_pf(ok)}{why}",
        active_srank_range=[round(a_lo, 3), round(a_hi, 3)],
        lazy_srank_min=round(l_lo, 3),
        active_outside=bad_a,
        lazy_below=bad_l,
        **counts,
    )


def gd_matches_self_consistent(result: Result) -> Check:
    """Criterion 3: max_t ‖A_GD − A_SC‖_F/‖A_GD‖_F < 0.1 for γ_w > 1 below the red line."""
    pts = [p for p in result.summary.grid if p.gamma_w > 1 and p.below_red]
    if not pts:
        return inconclusive("no grid point with γ_w > 1 below the red line")
    diverged = [_key(p) for p in pts if p.diverged]
    ok_pts = [p for p in pts if not p.diverged]
    worst = max(ok_pts, key=lambda p: p.max_gap) if ok_pts else None
    over = {_key(p): round(p.max_gap, 4) for p in ok_pts if p.max_gap >= GAP_MAX}
    ok = not over and not diverged
    if worst is None:
        headline = f"all {len(pts)} points with γ_w > 1 below the red line diverged → fail"
    else:
        headline = (
            f"max GD–SC gap {worst.max_gap:.3g} at {_key(worst)} over {len(pts)} points "
            f"(< {GAP_MAX:g}); {len(over)} over, {len(diverged)} diverged → {_pf(ok)}"
        )
    return check(
        ok,
        headline=headline,
        n_points=len(pts),
        max_gap=round(worst.max_gap, 4) if worst else None,
        worst_point=_key(worst) if worst else None,
        worst_iteration=worst.iter_of_max_gap if worst else None,
        n_over_0_1=len(over),
        over=over,
        diverged=diverged,
        max_gap_over_y=round(max(p.max_gap_over_y for p in ok_pts), 4) if ok_pts else None,
    )


def topk_converges_first(result: Result) -> Check:
    """Criterion 4: in active runs, t90(top-K) < 0.5·t90((K+1)-th); grid points and fast point."""
    active, _ = _classified(result, below_red_only=False, use_margin=False)
    runs = list(active)
    fast = result.summary.fast
    if fast and fast.region == "active" and not fast.diverged:
        runs.append(fast)
    if not runs:
        return inconclusive("no active run")
    ratios = {_key(p): round(p.t90_topk / max(p.t90_next, 1), 3) for p in runs}
    failing = {k: v for k, v in ratios.items() if v >= TOPK_RATIO}
    ok = not failing
    worst = max(ratios, key=ratios.get)
    return check(
        ok,
        headline=f"worst t90(top-K)/t90(K+1) {ratios[worst]:.3g} at {worst} over {len(runs)} "
        f"active runs vs < {TOPK_RATIO:g}; {len(failing)} fail → {_pf(ok)}",
        n_runs=len(runs),
        max_ratio=max(ratios.values()),
        median_ratio=round(float(np.median(list(ratios.values()))), 3),
        failing=failing,
        fast_t90_topk=fast.t90_topk if fast else None,
        fast_t90_next=fast.t90_next if fast else None,
    )


def fast_check(result: Result) -> Check:
    """Criterion 5: (−1.85, 2.25) at d = 100: min test error < 0.35, srank at min in [2.5, 3.7]."""
    fast = result.summary.fast
    if not fast:
        return inconclusive("no fast-check run in the summary")
    at = (round(fast.gamma_sigma2, 6), round(fast.gamma_w, 6))
    measured = {
        "d": fast.d,
        "point": list(at),
        "min_test_error": round(fast.min_test_error, 4),
        "stable_rank_at_min": round(fast.stable_rank_at_min, 3),
        "iter_of_min": fast.iter_of_min,
        "srank_target": round(result.summary.fast_target.stable_rank, 3),
    }
    if fast.d != FAST_D or at != FAST_POINT:
        return inconclusive(
            f"the fast check is specified at d = {FAST_D}, point {FAST_POINT}",
            headline=f"the fast check is specified at d = {FAST_D}, point {FAST_POINT}; the run "
            f"used d = {fast.d}, point {at}",
            **measured,
        )
    if fast.diverged:
        return check(
            False,
            note="the fast-check run diverged",
            headline="the fast-check run diverged → fail",
            **measured,
        )
    ok = fast.min_test_error < 0.35 and 2.5 <= fast.stable_rank_at_min <= 3.7
    return check(
        ok,
        headline=f"fast point {FAST_POINT}, d = {fast.d}: min test error "
        f"{fast.min_test_error:.3g} (< 0.35), stable rank at the min "
        f"{fast.stable_rank_at_min:.3g} (in [2.5, 3.7]) at iteration {fast.iter_of_min} → "
        f"{_pf(ok)}",
        **measured,
    )


# ----------------------------------------------------------------- wrong-way perturbations
def _map_points(summary, fn, keep=lambda p: True, fast: bool = False):
    grid = tuple(fn(p) if keep(p) else p for p in summary.grid)
    out = dataclasses.replace(summary, grid=grid)
    if fast and summary.fast is not None and keep(summary.fast):
        out = dataclasses.replace(out, fast=fn(summary.fast))
    return out


def invert_active_beats_lazy(summary):
    """Active points as bad as the worst lazy point."""
    lazy = [p.min_test_error for p in summary.grid if p.region == "lazy"] or [1.0]
    worst = max(lazy)
    return _map_points(
        summary,
        lambda p: dataclasses.replace(p, min_test_error=worst),
        lambda p: p.region == "active",
    )


def invert_stable_rank(summary):
    """Active points that overestimate the rank by 3."""
    high = summary.srank_target + 3
    return _map_points(
        summary,
        lambda p: dataclasses.replace(p, stable_rank_at_min=high),
        lambda p: p.region == "active",
    )


def invert_gap(summary):
    return _map_points(summary, lambda p: dataclasses.replace(p, max_gap=0.5))


def invert_topk(summary):
    """Top-K directions as slow as the (K+1)-th."""
    return _map_points(
        summary,
        lambda p: dataclasses.replace(p, t90_topk=max(p.t90_next, 1)),
        lambda p: p.region == "active",
        fast=True,
    )


def invert_fast(summary):
    if summary.fast is None:
        return summary
    return dataclasses.replace(summary, fast=dataclasses.replace(summary.fast, min_test_error=0.9))
