"""Claims of `saddle-to-saddle` (docs/results.md, pass criteria 1-4; S2S-4/5 as changed in
docs/claims-changelog.md, issue 9).

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
LAZY_CHANGE = 0.10  # S2S-4: unobserved entries within 10% of A_0's at the largest width
LAZY_SLOPE = (-0.7, -0.3)  # S2S-4: log-log slope of that drift in w (theory −1/2)
LAZY_MIN_WIDTH = 800  # S2S-4: the 10% limit is read at a width >= this
ACTIVE_RMSE_RATIO = 0.5  # S2S-5: RMSE below 0.5x the lazy run's
ACTIVE_MAX_SIGMA2_W = 1e-3  # S2S-5: a small init needs σ²w = w^{1−γ} at most this


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


def _not_converged(runs, what: str) -> Check:
    return inconclusive(
        f"a {what} run did not reach the train-loss tolerance",
        headline=f"a {what} run did not reach the train-loss tolerance: "
        + ", ".join(f"{r.tag} loss {r.train_loss:.2g}" for r in runs if not r.converged),
        train_loss={r.tag: r.train_loss for r in runs},
    )


def _gamma_lazy(result: Result) -> Check:
    """Lazy side. In the NTK limit the kernel of A = W_2W_1 is wσ²·identity on the entries,
    so the unobserved entries do not move; at width w the kernel's off-diagonal part (and its
    change in training, ∝ w^{γ−1} = w^{−1/2} at γ = 1/2) is O(w^{−1/2}). The drift is
    tested by its log-log slope in w and by the 10% limit at the largest width."""
    lazy, _ = _gamma_split(result)
    d = result.summary.gamma_dim
    if not lazy:
        return inconclusive("no completion run with gamma < 1")
    if not all(r.converged for r in lazy):
        return _not_converged(lazy, "lazy (γ < 1)")
    lazy = sorted(lazy, key=lambda r: r.width)
    widest = lazy[-1]
    if len(lazy) < 3 or widest.width < LAZY_MIN_WIDTH:
        return inconclusive(
            f"needs >= 3 lazy widths, the largest >= {LAZY_MIN_WIDTH}",
            headline=f"lazy runs at w = {_widths(lazy)}; need ≥ 3 widths, the largest "
            f"≥ {LAZY_MIN_WIDTH}",
            widths=[r.width for r in lazy],
        )
    rank = {r.tag: r.final_rank for r in lazy}
    change = {r.tag: r.unobserved_change for r in lazy}
    slope = _fit_slope(np.log([r.width for r in lazy]), np.log([r.unobserved_change for r in lazy]))
    low_rank = [r.width for r in lazy if r.final_rank < d / 2]
    problems = []
    if low_rank:
        problems.append(f"rank < {d / 2:g} at w = {', '.join(map(str, low_rank))}")
    if not LAZY_SLOPE[0] <= slope <= LAZY_SLOPE[1]:
        problems.append(f"slope {slope:.2f} outside [{LAZY_SLOPE[0]:g}, {LAZY_SLOPE[1]:g}]")
    if widest.unobserved_change > LAZY_CHANGE:
        problems.append(f"change {widest.unobserved_change:.2g} > {LAZY_CHANGE:g}")
    headline = (
        f"γ = {lazy[0].gamma:g}: rank {_fmt([r.final_rank for r in lazy], 'd')} (≥ {d / 2:g}), "
        f"unobserved change {_fmt([r.unobserved_change for r in lazy], '.2g')} at "
        f"w = {_widths(lazy)}: log-log slope {slope:.2f} (range [{LAZY_SLOPE[0]:g}, "
        f"{LAZY_SLOPE[1]:g}]), {widest.unobserved_change:.2g} at w = {widest.width} "
        f"(limit {LAZY_CHANGE:g}) → " + ("fails: " + "; ".join(problems) if problems else "pass")
    )
    return check(
        not problems,
        headline=headline,
        final_rank=rank,
        unobserved_change=change,
        slope=slope,
        slope_range=list(LAZY_SLOPE),
        widest=widest.width,
        widest_change=widest.unobserved_change,
        min_rank=d / 2,
        max_change=LAZY_CHANGE,
    )


def _gamma_active(result: Result) -> Check:
    """Active side at the largest γ: Rank_ε (ε = 0.05·s_min(A*), the spec's pitfall) is the
    target's rank and the unobserved RMSE beats the lazy run's at every width. Runs at
    1 < γ < γ_max are reported (their leading singular values), not tested."""
    lazy, active = _gamma_split(result)
    k = result.summary.gamma_target_rank
    eps = result.summary.gamma_rank_eps
    if not active or not lazy:
        return inconclusive("needs completion runs with gamma < 1 and gamma > 1")
    if not all(r.converged for r in active + lazy):
        return _not_converged(active + lazy, "completion")
    lazy_rmse = {r.width: r.unobserved_rmse for r in lazy}
    unpaired = sorted({r.width for r in active} - set(lazy_rmse))
    if unpaired:  # the RMSE ratio is taken at the same width
        return inconclusive(
            "no γ < 1 run at some active widths",
            headline=f"no γ < 1 run at widths {unpaired} to compare the RMSE with",
            widths=unpaired,
        )
    active = sorted(active, key=lambda r: r.width)
    gmax = active[0].gamma
    big = {r.tag: r.sigma2 * r.width for r in active if r.sigma2 * r.width > ACTIVE_MAX_SIGMA2_W}
    if big:  # e.g. γ = 1.5: σ²w = 0.14 at w = 50 is not a small init
        return inconclusive(
            f"sigma2*w > {ACTIVE_MAX_SIGMA2_W:g} at the largest gamma: not a small init",
            headline=f"γ = {gmax:g} has σ²w "
            + ", ".join(f"{v:.2g} ({t})" for t, v in big.items())
            + f" > {ACTIVE_MAX_SIGMA2_W:g}: not a small init, the active side is not tested",
            sigma2_w=big,
        )
    rank = {r.tag: r.final_rank_eps for r in active}
    ratio = {r.tag: r.unobserved_rmse / lazy_rmse[r.width] for r in active}
    bad = [
        r.width
        for r in active
        if r.final_rank_eps != k or r.unobserved_rmse / lazy_rmse[r.width] >= ACTIVE_RMSE_RATIO
    ]
    rmse = {r.tag: r.unobserved_rmse for r in active + lazy}
    between = [r for r in result.summary.gamma_runs if 1 < r.gamma < gmax]
    headline = (
        f"γ = {gmax:g} (σ²w ≤ {max(r.sigma2 * r.width for r in active):.1g}): Rank_ε "
        f"{_fmt([r.final_rank_eps for r in active], 'd')} (target {k}, ε = {eps:g}; "
        f"s_{k + 1} = {_fmt([r.final_sv[k] for r in active], '.2g')}), RMSE ratio to "
        f"γ = {lazy[0].gamma:g} {_fmt(ratio.values(), '.2g')} (< {ACTIVE_RMSE_RATIO:g}) at "
        f"w = {_widths(active)} → "
        + (f"fails at w = {', '.join(map(str, bad))}" if bad else "pass")
    )
    return check(
        not bad,
        headline=headline,
        final_rank_eps=rank,
        target_rank=k,
        rank_eps=eps,
        sv_next={r.tag: r.final_sv[k] for r in active},
        sigma2_w={r.tag: r.sigma2 * r.width for r in active},
        rmse_ratio=ratio,
        rmse=rmse,
        max_ratio=ACTIVE_RMSE_RATIO,
        untested_rank_eps={r.tag: r.final_rank_eps for r in between},
        untested_sv_next={r.tag: r.final_sv[k] for r in between},
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
        statement="γ-transition, lazy side (completion, L = 2, σ² = w^{−0.5}): the final rank "
        "(τ = 1e-2) is ≥ d/2 and the unobserved entries stay near A_0's: their relative change "
        "is a finite-width effect falling like w^{−1/2} (log-log slope in [−0.7, −0.3]) and is "
        "≤ 10% at the largest width (≥ 800).",
        expected="rank ≥ d/2 at every width; slope of log ‖ΔA_unobs‖/‖A0_unobs‖ vs log w in "
        "[−0.7, −0.3]; ≤ 0.1 at the largest width",
        check=_gamma_lazy,
        invert=_invert_lazy,
    ),
    Claim(
        id="S2S-5",
        paper=PAPER,
        statement="γ-transition, active side (largest γ > 1, σ²w ≤ 1e-3 at every width): the "
        "final Rank_ε (ε = 0.05·s_min(A*)) is the target's (2) and the unobserved-entry RMSE "
        "is < 0.5× that of γ = 0.5 at the same width.",
        expected="Rank_ε = 2 and RMSE ratio < 0.5 at every width",
        check=_gamma_active,
        invert=_invert_active,
    ),
)
