"""Claims of `saddle-to-saddle` (docs/results.md, pass criteria 1-4).

Each check reads only the typed ``result.summary`` (``depth_runs``, ``gamma_runs``,
``target``); each ``_invert_*`` perturbs a summary the wrong way so that its check fails.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rankscope.experiments.base import Check, Claim, Result, check, inconclusive

__all__ = ["CLAIMS"]

PAPER = "arXiv:2106.15933"
SLOPE_TOL = 0.15  # criteria 2 and 3: within 15% of the theory slope
LAZY_CHANGE = 0.10  # criterion 4: unobserved entries within 10% of A_0's
ACTIVE_RMSE_RATIO = 0.5  # criterion 4: RMSE below 0.5x the lazy run's


def _runs(result: Result, depth: int | None = None) -> list:
    return [r for r in result.summary.depth_runs if depth is None or r.depth == depth]


def _fmt(values, spec: str = ".3g") -> str:
    return " / ".join(format(v, spec) for v in values)


def _seq(seq) -> str:
    return ",".join(str(v) for v in seq)


def _rank_sequence(result: Result) -> Check:
    """Runs from Rank_ε(A_0) = 0 must read 0, 1, …, k; a run stopped before learning every
    mode must read a prefix of it (no skipped or lost rank so far). Runs that start above
    rank 0 (large σ²) are outside the claim and listed as skipped."""
    k = len(result.summary.target)
    want = list(range(k + 1))
    from_zero = [r for r in _runs(result) if r.initial_rank == 0]
    complete = [r for r in from_zero if all(math.isfinite(t) for t in r.half_fit)]
    skipped = [r.tag for r in _runs(result) if r.initial_rank != 0]
    incomplete = [r.tag for r in from_zero if r not in complete]
    if not complete:
        return inconclusive(
            "no run started at rank 0 and learned every mode",
            headline=f"no run started at rank 0 and learned all {k} modes "
            f"({len(skipped)} started above rank 0, {len(incomplete)} unfinished)",
            skipped=skipped,
            incomplete=incomplete,
            expected=want,
        )
    seqs = {r.tag: list(r.rank_sequence) for r in from_zero}
    bad = {}
    for r in from_zero:
        seq = list(r.rank_sequence)
        if seq != (want if r in complete else want[: len(seq)]):
            bad[r.tag] = seq
    if bad:
        tag, seq = next(iter(bad.items()))
        headline = (
            f"{len(bad)}/{len(seqs)} runs from rank 0 break the order, e.g. {tag} reads "
            f"{_seq(seq)}; expected {_seq(want)} → fail"
        )
    else:
        headline = (
            f"Rank_ε reads {_seq(want)} in {len(complete)}/{len(seqs)} runs from rank 0 "
            f"({len(incomplete)} unfinished read a prefix; {len(skipped)} start above 0, "
            "skipped) → pass"
        )
    return check(
        not bad,
        headline=headline,
        sequences=seqs,
        mismatches=bad,
        runs_checked=len(seqs),
        skipped=skipped,
        incomplete=incomplete,
    )


def _fit_slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _shallow_slopes(result: Result) -> Check:
    runs = _runs(result, 2)
    target = result.summary.target
    if len(runs) < 3:
        return inconclusive(
            "needs depth 2 with >= 3 values of sigma2",
            headline=f"depth 2 has {len(runs)} values of σ²; need ≥ 3",
            n_sigma2=len(runs),
        )
    measured, theory, ok = [], [], []
    for i, s in enumerate(target):
        pts = [(r.sigma2, r.half_fit[i]) for r in runs if math.isfinite(r.half_fit[i])]
        if len(pts) < 3:
            return inconclusive(
                f"mode {i + 1} learned at < 3 values of sigma2",
                headline=f"mode {i + 1} learned at {len(pts)} values of σ²; need ≥ 3",
                points=len(pts),
            )
        x = np.log(1.0 / np.array([p[0] for p in pts]))
        slope = _fit_slope(x, np.array([p[1] for p in pts]))
        measured.append(slope)
        theory.append(1.0 / (2 * s))
        ok.append(abs(slope / theory[-1] - 1) <= SLOPE_TOL)
    rel = [m / t - 1 for m, t in zip(measured, theory)]
    off = [f"mode {i + 1}" for i, good in enumerate(ok) if not good]
    headline = (
        f"L = 2 slopes of t_i vs ln(1/σ²) {_fmt(measured)} vs 1/(2s_i) = {_fmt(theory)} "
        f"(±{SLOPE_TOL:.0%}) → " + (f"fails at {', '.join(off)}" if off else "pass")
    )
    return check(
        all(ok),
        headline=headline,
        slope=measured,
        theory=theory,
        rel_error=rel,
        tolerance=SLOPE_TOL,
    )


def _deep_slopes(result: Result) -> Check:
    depths = sorted({r.depth for r in _runs(result) if r.depth >= 3})
    if not depths:
        return inconclusive("no depth >= 3 in the config")
    measured, ok = {}, []
    for depth in depths:
        pts = [(r.sigma2, r.half_fit[0]) for r in _runs(result, depth)]
        pts = [p for p in pts if math.isfinite(p[1]) and p[1] > 0]
        if len(pts) < 3:
            return inconclusive(
                f"depth {depth}: t_1 measured at < 3 values of sigma2",
                headline=f"depth {depth}: t_1 measured at {len(pts)} values of σ²; need ≥ 3",
                half_fit_t1={r.tag: r.half_fit[0] for r in _runs(result, depth)},
            )
        log_sigma = 0.5 * np.log([p[0] for p in pts])
        slope = _fit_slope(log_sigma, np.log([p[1] for p in pts]))
        want = -(depth - 2)
        measured[f"L={depth}"] = {"slope": slope, "theory": want, "rel_error": slope / want - 1}
        ok.append(abs(slope / want - 1) <= SLOPE_TOL)
    parts = ", ".join(f"{m['slope']:.3g} ({k})" for k, m in measured.items())
    want = ", ".join(f"{-(d - 2)}" for d in depths)
    off = [f"L = {d}" for d, good in zip(depths, ok) if not good]
    headline = f"slope of log t_1 vs log σ {parts} vs −(L−2) = {want} (±{SLOPE_TOL:.0%}) → " + (
        f"fails at {', '.join(off)}" if off else "pass"
    )
    return check(all(ok), headline=headline, slopes=measured, tolerance=SLOPE_TOL)


def _gamma_split(result: Result) -> tuple[list, list]:
    runs = result.summary.gamma_runs
    lazy = [r for r in runs if r.gamma < 1]
    active = [r for r in runs if r.gamma > 1]
    if lazy:
        g = min(r.gamma for r in lazy)
        lazy = [r for r in lazy if r.gamma == g]
    if active:
        g = max(r.gamma for r in active)
        active = [r for r in active if r.gamma == g]
    return lazy, active


def _widths(runs) -> str:
    return " / ".join(str(r.width) for r in runs)


def _gamma_lazy(result: Result) -> Check:
    lazy, _ = _gamma_split(result)
    d = result.summary.gamma_dim
    if not lazy:
        return inconclusive("no completion run with gamma < 1")
    if not all(r.converged for r in lazy):
        return inconclusive(
            "a lazy run did not reach the train-loss tolerance",
            headline="a lazy (γ < 1) run did not reach the train-loss tolerance: "
            + ", ".join(f"{r.tag} loss {r.train_loss:.2g}" for r in lazy if not r.converged),
            train_loss={r.tag: r.train_loss for r in lazy},
        )
    rank = {r.tag: r.final_rank for r in lazy}
    change = {r.tag: r.unobserved_change for r in lazy}
    bad = [r.width for r in lazy if r.final_rank < d / 2 or r.unobserved_change > LAZY_CHANGE]
    headline = (
        f"γ = {lazy[0].gamma:g}: rank {_fmt([r.final_rank for r in lazy], 'd')} (≥ {d / 2:g}), "
        f"unobserved change {_fmt([r.unobserved_change for r in lazy], '.2g')} "
        f"(≤ {LAZY_CHANGE:g}) at w = {_widths(lazy)} → "
        + (f"fails at w = {', '.join(map(str, bad))}" if bad else "pass")
    )
    return check(
        not bad,
        headline=headline,
        final_rank=rank,
        unobserved_change=change,
        min_rank=d / 2,
        max_change=LAZY_CHANGE,
    )


def _gamma_active(result: Result) -> Check:
    lazy, active = _gamma_split(result)
    k = result.summary.gamma_target_rank
    if not active or not lazy:
        return inconclusive("needs completion runs with gamma < 1 and gamma > 1")
    if not all(r.converged for r in active + lazy):
        return inconclusive(
            "a completion run did not reach the train-loss tolerance",
            headline="a completion run did not reach the train-loss tolerance: "
            + ", ".join(
                f"{r.tag} loss {r.train_loss:.2g}" for r in active + lazy if not r.converged
            ),
            train_loss={r.tag: r.train_loss for r in active + lazy},
        )
    lazy_rmse = {r.width: r.unobserved_rmse for r in lazy}
    unpaired = sorted({r.width for r in active} - set(lazy_rmse))
    if unpaired:  # the RMSE ratio is taken at the same width
        return inconclusive(
            "no γ < 1 run at some active widths",
            headline=f"no γ < 1 run at widths {unpaired} to compare the RMSE with",
            widths=unpaired,
        )
    rank = {r.tag: r.final_rank for r in active}
    ratio = {r.tag: r.unobserved_rmse / lazy_rmse[r.width] for r in active}
    bad = [
        r.width
        for r in active
        if r.final_rank != k or r.unobserved_rmse / lazy_rmse[r.width] >= ACTIVE_RMSE_RATIO
    ]
    rmse = {r.tag: r.unobserved_rmse for r in active + lazy}
    headline = (
        f"γ = {active[0].gamma:g}: rank {_fmt([r.final_rank for r in active], 'd')} (target {k}), "
        f"RMSE ratio to γ = {lazy[0].gamma:g} {_fmt(ratio.values(), '.2g')} "
        f"(< {ACTIVE_RMSE_RATIO:g}) at w = {_widths(active)} → "
        + (f"fails at w = {', '.join(map(str, bad))}" if bad else "pass")
    )
    return check(
        not bad,
        headline=headline,
        final_rank=rank,
        target_rank=k,
        rmse_ratio=ratio,
        rmse=rmse,
        max_ratio=ACTIVE_RMSE_RATIO,
    )


# ----------------------------------------------------------------- wrong-way perturbations
def _map_runs(summary, field: str, fn, keep=lambda r: True):
    runs = getattr(summary, field)
    new = tuple(fn(r) if keep(r) else r for r in runs)
    return dataclasses.replace(summary, **{field: new})


def _invert_rank_sequence(summary):
    """Every run from rank 0 learns its modes in reverse (rank read k, …, 1, 0)."""
    return _map_runs(
        summary,
        "depth_runs",
        lambda r: dataclasses.replace(r, rank_sequence=(0, *reversed(r.rank_sequence))),
        lambda r: r.initial_rank == 0,
    )


def _invert_shallow(summary):
    """Depth-2 plateaus twice as long per decade of σ² (slopes 2× the theory)."""
    return _map_runs(
        summary,
        "depth_runs",
        lambda r: dataclasses.replace(r, half_fit=tuple(2 * t for t in r.half_fit)),
        lambda r: r.depth == 2,
    )


def _invert_deep(summary):
    """t_1 → √t_1 at depth ≥ 3: the slope in log σ halves."""
    return _map_runs(
        summary,
        "depth_runs",
        lambda r: dataclasses.replace(r, half_fit=(math.sqrt(r.half_fit[0]), *r.half_fit[1:])),
        lambda r: r.depth >= 3 and r.half_fit[0] > 0,
    )


def _invert_lazy(summary):
    """The lazy runs move their unobserved entries as much as A_0 has."""
    return _map_runs(
        summary,
        "gamma_runs",
        lambda r: dataclasses.replace(r, unobserved_change=1.0),
        lambda r: r.gamma < 1,
    )


def _invert_active(summary):
    """The active runs generalize no better than the lazy runs at the same width."""
    lazy = {r.width: r.unobserved_rmse for r in summary.gamma_runs if r.gamma < 1}
    return _map_runs(
        summary,
        "gamma_runs",
        lambda r: dataclasses.replace(r, unobserved_rmse=lazy.get(r.width, r.unobserved_rmse)),
        lambda r: r.gamma > 1,
    )


CLAIMS = (
    Claim(
        id="S2S-1",
        paper=PAPER,
        statement="From small init (Rank_ε(A_0) = 0) modes are learned one at a time: Rank_ε(A_t), "
        "ε = 0.05·s_min(A*), takes the values 0, 1, 2, 3 in order and never decreases.",
        expected="sequence 0,1,2,3 in every run that starts at rank 0",
        check=_rank_sequence,
        invert=_invert_rank_sequence,
    ),
    Claim(
        id="S2S-2",
        paper=PAPER,
        statement="Depth 2: the half-fit time t_i grows like ln(1/σ²)/(2s_i); the slope of t_i "
        "against ln(1/σ²) is within 15% of 1/(2s_i) for every mode.",
        expected="slopes 1/(2s_i) = 0.05, 0.1, 0.2 (±15%)",
        check=_shallow_slopes,
        invert=_invert_shallow,
    ),
    Claim(
        id="S2S-3",
        paper=PAPER,
        statement="Depth L ≥ 3: the first plateau grows like σ^{−(L−2)}; the slope of log t_1 "
        "against log σ is within 15% of −(L−2).",
        expected="slope −1 (L = 3), −2 (L = 4), ±15%",
        check=_deep_slopes,
        invert=_invert_deep,
    ),
    Claim(
        id="S2S-4",
        paper=PAPER,
        statement="γ-transition, lazy side (completion, L = 2, 30% observed, σ² = w^{−0.5}): the "
        "final rank (τ = 1e-2) is ≥ d/2 and the unobserved entries stay within 10% of A_0's.",
        expected="rank ≥ 10 and ‖ΔA_unobs‖/‖A0_unobs‖ ≤ 0.1 at every width",
        check=_gamma_lazy,
        invert=_invert_lazy,
    ),
    Claim(
        id="S2S-5",
        paper=PAPER,
        statement="γ-transition, active side (σ² = w^{−1.5}): the final rank is the target's (2) "
        "and the unobserved-entry RMSE is < 0.5× that of γ = 0.5 at the same width.",
        expected="rank 2 and RMSE ratio < 0.5 at every width",
        check=_gamma_active,
        invert=_invert_active,
    ),
)
