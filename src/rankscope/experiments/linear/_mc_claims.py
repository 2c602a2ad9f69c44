"""Claims of `mc-not-norms` (docs/results.md: MC-1 criteria 1-4, MC-2); typed summary only.

Each ``_invert_*`` perturbs a summary the wrong way so that its check fails.
"""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise

from rankscope.experiments.base import Check, Claim, Result, check, inconclusive

__all__ = ["CLAIMS"]

PAPER = "arXiv:2005.06398"
BOUND_SLACK = 1e-6  # criterion 2
W11_AT_1E3 = 20.0  # criterion 3
W11_AT_1E4 = 60.0
LEVEL_1E4 = 1e-4  # criterion 3: the loss at which |W_11| >= 60
CONTRAST_CHECK = 1e-6  # MC-2: |W_11| at ℓ = 1e-6 against its value at ℓ = 1e-4
CONTRAST_FACTOR = 2.0  # MC-2


def _mc1(result: Result):
    run = result.summary.mc1
    return run if run.reached else None


def _not_reached(result: Result) -> Check:
    run = result.summary.mc1
    return inconclusive(
        "the flow did not reach the stop loss",
        headline=f"the flow stopped at ℓ = {run.final_loss:.3g} (t = {run.final_t:.3g}) before "
        "the stop loss",
        final_loss=run.final_loss,
        final_t=run.final_t,
    )


def _pf(ok: bool) -> str:
    return "pass" if ok else "fail"


def _det_positive(result: Result) -> Check:
    run = _mc1(result)
    if run is None:
        return _not_reached(result)
    ok = run.min_det > 0
    return check(
        ok,
        headline=f"min det W(t) {run.min_det:.3g} over {run.n_steps} solver steps "
        f"(det W(0) = {run.init_det:.3g}); must stay > 0 → {_pf(ok)}",
        min_det=run.min_det,
        init_det=run.init_det,
        solver_steps=run.n_steps,
    )


def _bound(result: Result) -> Check:
    run = _mc1(result)
    if run is None:
        return _not_reached(result)
    ok = run.n_bound_violations == 0
    return check(
        ok,
        headline=f"{run.n_bound_violations} violations of |W_11| ≥ (1 − √(2ℓ))²/√(2ℓ) − "
        f"{BOUND_SLACK:g} in {run.n_bound_checked} steps (min margin "
        f"{run.min_bound_margin:.3g}) → {_pf(ok)}",
        violations=run.n_bound_violations,
        steps_checked=run.n_bound_checked,
        min_margin=run.min_bound_margin,
        final_w11=run.final_w11,
        final_bound=run.final_bound,
    )


def _w11_large(result: Result) -> Check:
    run = _mc1(result)
    if run is None:
        return _not_reached(result)
    low = run.min_w11_below_1e_3
    at = [p for p in run.checkpoints if math.isclose(p.loss, LEVEL_1E4) and p.reached]
    if not at:  # criterion 3 reads |W_11| at ℓ = 1e-4 itself, not at a later stop loss
        return inconclusive(
            "the flow has no checkpoint at ℓ = 1e-4",
            checkpoints=[p.loss for p in run.checkpoints],
        )
    w11 = at[0].w11
    ok = math.isfinite(low) and low >= W11_AT_1E3 and w11 >= W11_AT_1E4
    return check(
        ok,
        headline=f"|W_11| ≥ {low:.3g} once ℓ ≤ 1e-3 (need ≥ {W11_AT_1E3:g}) and {w11:.3g} at "
        f"ℓ = 1e-4 (need ≥ {W11_AT_1E4:g}) → {_pf(ok)}",
        min_w11_once_loss_le_1e3=low,
        w11_at_1e4=w11,
        stop_loss=run.checkpoints[-1].loss,
    )


def _norms_grow(result: Result) -> Check:
    run = _mc1(result)
    if run is None:
        return _not_reached(result)
    pts = sorted(run.checkpoints, key=lambda p: -p.loss)  # training order
    if len(pts) < 2 or not all(p.reached for p in pts):
        missed = [p.loss for p in pts if not p.reached]
        return inconclusive(
            "a checkpoint loss was not reached",
            headline=f"checkpoint losses {missed} were not reached (need ≥ 2 checkpoints)",
            checkpoints=[dataclasses.asdict(p) for p in pts],
        )
    nuc = [p.nuclear for p in pts]
    ratio = [p.s_ratio for p in pts]
    ok = all(b > a for a, b in pairwise(nuc)) and all(b > a for a, b in pairwise(ratio))
    levels = " / ".join(f"{p.loss:g}" for p in pts)
    return check(
        ok,
        headline=f"‖W‖_* {' / '.join(f'{v:.3g}' for v in nuc)} and s_1/s_2 "
        f"{' / '.join(f'{v:.3g}' for v in ratio)} at ℓ = {levels}; both must increase → {_pf(ok)}",
        loss=[p.loss for p in pts],
        nuclear=nuc,
        s1_over_s2=ratio,
        w11=[p.w11 for p in pts],
    )


def _contrast(result: Result) -> Check:
    run = result.summary.mc2
    if run is None:
        return inconclusive("the contrast run (contrast.enabled=false) was not made")
    at_check = run.w11_at_check
    levels_ok = math.isclose(run.check_loss, CONTRAST_CHECK) and math.isclose(run.level, LEVEL_1E4)
    if not levels_ok:
        return inconclusive(
            "MC-2 compares ℓ = 1e-6 with ℓ = 1e-4; the run used other losses",
            headline=f"MC-2 compares ℓ = 1e-6 with ℓ = 1e-4; the run used {run.check_loss:g} "
            f"and {run.level:g}",
            check_loss=run.check_loss,
            level=run.level,
        )
    if not math.isfinite(at_check) or not math.isfinite(run.w11_at_level):
        return inconclusive(
            "the det < 0 flow did not reach its losses",
            headline=f"the det < 0 flow stopped at ℓ = {run.final_loss:.3g}, before 1e-6",
            final_loss=run.final_loss,
        )
    ratio = at_check / run.w11_at_level
    ok = ratio < CONTRAST_FACTOR
    return check(
        ok,
        headline=f"det < 0: |W_11| {at_check:.3g} at ℓ = 1e-6 vs {run.w11_at_level:.3g} at "
        f"ℓ = 1e-4, ratio {ratio:.3g} (< {CONTRAST_FACTOR:g}) → {_pf(ok)}",
        w11_at_1e4=run.w11_at_level,
        w11_at_1e6=at_check,
        ratio=ratio,
        stop_loss=run.stop_loss,
        final_det=run.final_det,
        init_det=run.init_det,
    )


# ----------------------------------------------------------------- wrong-way perturbations
def _with_mc1(summary, **changes):
    return dataclasses.replace(summary, mc1=dataclasses.replace(summary.mc1, **changes))


def _invert_det(summary):
    return _with_mc1(summary, min_det=-0.4)


def _invert_bound(summary):
    return _with_mc1(summary, n_bound_violations=3)


def _invert_w11(summary):
    """|W_11| that stays moderate (43 at ℓ = 1e-4, as an unbalanced GD run)."""
    pts = tuple(
        dataclasses.replace(p, w11=min(p.w11, 43.0)) if p.loss <= LEVEL_1E4 else p
        for p in summary.mc1.checkpoints
    )
    return _with_mc1(summary, checkpoints=pts)


def _invert_norms(summary):
    """The nuclear norm stays flat along the checkpoints."""
    pts = tuple(dataclasses.replace(p, nuclear=2.0) for p in summary.mc1.checkpoints)
    return _with_mc1(summary, checkpoints=pts)


def _invert_contrast(summary):
    """|W_11| keeps growing after ℓ = 1e-4 in the det < 0 run."""
    if summary.mc2 is None:
        return summary
    mc2 = dataclasses.replace(summary.mc2, w11_at_check=3 * summary.mc2.w11_at_level)
    return dataclasses.replace(summary, mc2=mc2)


CLAIMS = (
    Claim(
        id="MC-1.1",
        paper=PAPER,
        check=_det_positive,
        invert=_invert_det,
        statement="From a balanced init with det W(0) > 0, det W(t) > 0 at every step of the "
        "exact gradient flow (LSODA, rtol 1e-10) down to ℓ = 1e-4.",
        expected="min det > 0",
    ),
    Claim(
        id="MC-1.2",
        paper=PAPER,
        check=_bound,
        invert=_invert_bound,
        statement="|W_11(t)| ≥ (1 − √(2ℓ))²/√(2ℓ) − 1e-6 at every solver step with ℓ < ½.",
        expected="0 violations",
    ),
    Claim(
        id="MC-1.3",
        paper=PAPER,
        check=_w11_large,
        invert=_invert_w11,
        statement="The unobserved entry blows up: |W_11| ≥ 20 once ℓ ≤ 1e-3 and ≥ 60 at "
        "ℓ = 1e-4 (the minimum-norm completion has W_11 = 0).",
        expected="≥ 20 and ≥ 60 (reference 22.4 and 70.7)",
    ),
    Claim(
        id="MC-1.4",
        paper=PAPER,
        check=_norms_grow,
        invert=_invert_norms,
        statement="At ℓ = 1e-1, 1e-2, 1e-3, 1e-4 the nuclear norm and s_1/s_2 both increase "
        "as ℓ decreases: norms grow while the solution approaches rank 1.",
        expected="both strictly increasing (reference ‖W‖_* 2.24, 7.07, 22.46, 70.71)",
    ),
    Claim(
        id="MC-2",
        paper=PAPER,
        check=_contrast,
        invert=_invert_contrast,
        statement="Contrast: from det W(0) < 0, solutions with det = −1 are reachable and "
        "|W_11| at ℓ = 1e-6 is < 2× its value at ℓ = 1e-4.",
        expected="ratio < 2",
    ),
)
