"""Claim checks of ``mixed-dynamics`` (docs/results.md § mixed-dynamics, pass criteria 1-5;
criteria 2-4 as revised in docs/claims-changelog.md § mixed-dynamics (issue 9)).

Each check reads only the typed ``result.summary``: ``grid`` (one point per (γ_σ², γ_w)),
``fast`` (the fast-check point), ``srank_target``, ``margin`` and the targets' singular
values (``grid_target``, ``fast_target``). Each ``invert_*`` perturbs a summary the wrong way
so that its check fails.

Scale-aware pieces (issue 9):

- *Active by the effective line* (criteria 2 and 4). A direction is active once its singular
  value is well above σ²w. The nominal line σ²w = d stands for the scale of A*, but the
  singular values of A* are ≈ d/√K, so the effective line for the K target directions
  (criterion 2) is σ²w = s_K(A*); criterion 4 compares the K-th with the (K+1)-th direction,
  whose final value is s_{K+1}(Y) ≈ 2√d, so its line is σ²w = s_{K+1}(Y). A point counts as
  active only at the spec's margin (``summary.margin`` = 0.15, criterion 1's, as a Euclidean
  distance in (γσ², γw)) below its effective line: σ²w < s·d^{−√2·margin} (s/2.66 at
  d = 100). The nominally active points above the cut are reported, not tested.
- *Criterion 3* compares the GD run with the simultaneous update order (the Euler step of the
  same gradient flow the self-consistent equation approximates) and scales the threshold by
  √(d/w), the relative Frobenius size of W₂W₂ᵀ − σ²wI at init that the equation drops.
- *Criterion 4* measures the top-K speed-up against its active-regime limit: with rate ≈ 2s*
  per direction, t90 ∝ 1/s*, so t90(top-K)/t90(K+1) ≥ b = s_{K+1}(Y)/s_K(Y) (≈ 0.5 at
  d = 100, 0.21 at d = 500). The achieved fraction of the speed-up, (1 − ratio)/(1 − b), must
  be at least what the paper's "< half" demands at its Fig. 1 scale (d = 500, b = 0.22).
"""

from __future__ import annotations

import dataclasses
import math

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
GAP_PER_FLUCTUATION = 1.0  # criterion 3: max gap < GAP_PER_FLUCTUATION·√(d/w)
PAPER_TOPK_RATIO, PAPER_BOUND = 0.5, 0.22  # criterion 4 at the paper's Fig. 1 scale (d = 500)
SPEEDUP_MIN = (1 - PAPER_TOPK_RATIO) / (1 - PAPER_BOUND)  # ≈ 0.64


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


def _cut(summary, line: float, d: int) -> float:
    """σ²w below which a point lies at ≥ ``summary.margin`` (Euclidean, in (γσ², γw)) below
    the effective line σ²w = ``line``: line·d^{−√2·margin}."""
    return line * float(d) ** (-math.sqrt(2) * float(summary.margin))


def _rank_cut(summary) -> float:
    """Criterion 2: the effective line of the K target directions, σ²w = s_K(A*)."""
    return _cut(summary, float(summary.grid_target.singular_values[summary.rank - 1]), summary.d)


def _topk_cut(summary, target, d: int) -> float:
    """Criterion 4: the effective line of the (K+1)-th direction, σ²w = s_{K+1}(Y)."""
    return _cut(summary, float(target.observed_singular_values[summary.rank]), d)


def _split_active(points, cut: float):
    """(active beyond the cut, the band of nominally active points at σ²w ≥ cut)."""
    active = [p for p in points if p.region == "active"]
    return [p for p in active if p.sigma2_w < cut], [p for p in active if p.sigma2_w >= cut]


def stable_rank_by_region(result: Result) -> Check:
    """Criterion 2: srank at the min within ±1 of srank(A*) at the active points (σ²w at the
    margin below s_K(A*), :func:`_rank_cut`); ≥ srank(A*)+2 at the lazy points (γσ²+γw > 1);
    over every grid point that did not diverge. The band between is reported, not tested."""
    s = result.summary
    nominal, lazy = _classified(result, below_red_only=False, use_margin=False)
    cut = _rank_cut(s)
    active, band = _split_active(nominal, cut)
    target = float(s.srank_target)
    counts = {
        "n_active": len(active),
        "n_lazy": len(lazy),
        "n_band": len(band),
        "active_sigma2w_below": round(cut, 3),
        "srank_target": round(target, 3),
        "band_srank": {_key(p): round(p.stable_rank_at_min, 3) for p in band},
        "diverged": [_key(p) for p in s.grid if p.diverged],
    }
    if not active or not lazy:
        return inconclusive(
            "the grid has no active (σ²w below s_K(A*) by the margin) or no lazy point",
            headline=f"{len(active)} active (σ²w < {cut:.3g}) and {len(lazy)} lazy grid points; "
            "need ≥ 1 of each",
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
        headline=f"srank at the min: active (σ²w < {cut:.3g}, n = {len(active)}) "
        f"{a_lo:.3g}–{a_hi:.3g} (need {target - 1:.3g}–{target + 1:.3g}), lazy (n = "
        f"{len(lazy)}) ≥ {l_lo:.3g} (need ≥ {target + 2:.3g}); srank(A*) = {target:.3g}; "
        f"{len(band)} points in the band not tested → {_pf(ok)}{why}",
        active_srank_range=[round(a_lo, 3), round(a_hi, 3)],
        lazy_srank_min=round(l_lo, 3),
        active_outside=bad_a,
        lazy_below=bad_l,
        **counts,
    )


def gd_matches_self_consistent(result: Result) -> Check:
    """Criterion 3: the GD run with the simultaneous order (``twin_update``) tracks the SC
    dynamics, max_t ‖A_GD − A_SC‖_F/‖A_GD‖_F < GAP_PER_FLUCTUATION·√(d/w), at every grid
    point with γ_w > 1 below the red line."""
    s = result.summary
    pts = [p for p in s.grid if p.gamma_w > 1 and p.below_red]
    if not pts:
        return inconclusive("no grid point with γ_w > 1 below the red line")
    diverged = [_key(p) for p in pts if p.diverged or p.twin_diverged]
    ok_pts = [p for p in pts if not (p.diverged or p.twin_diverged)]

    def limit(p) -> float:
        return GAP_PER_FLUCTUATION * p.width_fluctuation

    worst = max(ok_pts, key=lambda p: p.twin_max_gap / limit(p)) if ok_pts else None
    over = {
        _key(p): [round(p.twin_max_gap, 4), round(limit(p), 4)]
        for p in ok_pts
        if p.twin_max_gap >= limit(p)
    }
    ok = not over and not diverged
    if worst is None:
        headline = f"all {len(pts)} points with γ_w > 1 below the red line diverged → fail"
    else:
        headline = (
            f"{s.twin_update} GD vs SC: worst max gap / √(d/w) = "
            f"{worst.twin_max_gap / worst.width_fluctuation:.3g} ({worst.twin_max_gap:.3g} vs "
            f"{limit(worst):.3g}) at {_key(worst)} over {len(pts)} points (< "
            f"{GAP_PER_FLUCTUATION:g}·√(d/w)); {len(over)} over, {len(diverged)} diverged → "
            f"{_pf(ok)}"
        )
    return check(
        ok,
        headline=headline,
        update=s.twin_update,
        n_points=len(pts),
        worst_gap_over_fluctuation=(
            round(worst.twin_max_gap / worst.width_fluctuation, 4) if worst else None
        ),
        worst_point=_key(worst) if worst else None,
        worst_max_gap=round(worst.twin_max_gap, 4) if worst else None,
        worst_iteration=worst.twin_iter_of_max_gap if worst else None,
        max_gap=round(max(p.twin_max_gap for p in ok_pts), 4) if ok_pts else None,
        over=over,
        diverged=diverged,
        gd_update=s.gd_update,
        gd_update_max_gap=round(max(p.max_gap for p in ok_pts), 4) if ok_pts else None,
    )


def _topk_bound(target, k: int) -> float:
    """b = s_{K+1}(Y)/s_K(Y): the t90 ratio in the fully active limit (t90 ∝ 1/s*)."""
    sy = target.observed_singular_values
    return float(sy[k]) / float(sy[k - 1])


def topk_converges_first(result: Result) -> Check:
    """Criterion 4: in active runs (grid points with σ²w at the margin below s_{K+1}(Y),
    :func:`_topk_cut`, and the fast point if it is one), r = t90(top-K)/t90(K+1) achieves a
    fraction (1 − r)/(1 − b) ≥ SPEEDUP_MIN of its active-regime limit b = s_{K+1}(Y)/s_K(Y)."""
    s = result.summary
    k = s.rank
    nominal, _ = _classified(result, below_red_only=False, use_margin=False)
    cut = _topk_cut(s, s.grid_target, s.d)
    active, band = _split_active(nominal, cut)
    runs = [(p, s.grid_target) for p in active]
    fast = s.fast
    fast_active = (
        fast is not None
        and fast.region == "active"
        and not fast.diverged
        and fast.sigma2_w < _topk_cut(s, s.fast_target, s.fast_d)
    )
    if fast_active:
        runs.append((fast, s.fast_target))
    if not runs:
        return inconclusive("no active run (σ²w below s_K+1(Y) by the margin)")
    ratios, speedups, bounds = {}, {}, {}
    for p, target in runs:
        key = ("fast " if p is fast else "") + _key(p)
        r, b = p.t90_topk / max(p.t90_next, 1), _topk_bound(target, k)
        ratios[key], bounds[key] = round(r, 3), round(b, 3)
        speedups[key] = round((1 - r) / (1 - b), 3)
    failing = {k_: v for k_, v in speedups.items() if v < SPEEDUP_MIN}
    ok = not failing
    worst = min(speedups, key=speedups.get)
    return check(
        ok,
        headline=f"worst speed-up fraction (1 − r)/(1 − b) = {speedups[worst]:.3g} at {worst} "
        f"(r = t90(top-K)/t90(K+1) = {ratios[worst]:.3g}, bound b = s_K+1(Y)/s_K(Y) = "
        f"{bounds[worst]:.3g}) over {len(runs)} active runs (σ²w < {cut:.3g}) vs ≥ "
        f"{SPEEDUP_MIN:.3g}; {len(failing)} fail → {_pf(ok)}",
        n_runs=len(runs),
        active_sigma2w_below=round(cut, 3),
        band_speedup={
            _key(p): round(
                (1 - p.t90_topk / max(p.t90_next, 1)) / (1 - _topk_bound(s.grid_target, k)), 3
            )
            for p in band
        },
        min_speedup=speedups[worst],
        median_speedup=round(float(np.median(list(speedups.values()))), 3),
        max_ratio=max(ratios.values()),
        bound_range=[min(bounds.values()), max(bounds.values())],
        failing=failing,
        ratios=ratios,
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
    """GD far from the SC dynamics (a gap of 0.5, above √(d/w) at any γ_w > 1)."""
    return _map_points(summary, lambda p: dataclasses.replace(p, max_gap=0.5, twin_max_gap=0.5))


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
