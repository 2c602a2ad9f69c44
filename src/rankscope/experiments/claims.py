"""Evaluating claims over the stored results of several seeds."""

from __future__ import annotations

import traceback
from collections.abc import Sequence

from rankscope.experiments.base import Check, Claim, ClaimVerdict, Experiment
from rankscope.results import Result

__all__ = ["evaluate_claim", "evaluate_claims"]


def _safe(fn, arg) -> Check:
    try:
        out = fn(arg)
    except Exception as exc:  # a claim that crashes is reported, not hidden
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Check("inconclusive", {}, f"claim check raised {tb}")
    if not isinstance(out, Check):
        return Check("inconclusive", {}, f"claim check returned {type(out).__name__}, not Check")
    return out


def evaluate_claim(claim: Claim, results: Sequence[Result]) -> ClaimVerdict:
    """Verdict of one claim over all seeds.

    Runs that diverged or failed count as seeds that did not pass. With a per-seed check the
    claim passes when ``passed >= min_fraction * total`` and fails when that is no longer
    reachable among the conclusive seeds; otherwise it is inconclusive.
    """
    usable = [r for r in results if r.status == "ok"]
    total = len(results)
    if claim.across_seeds is not None:
        if not usable:
            return _verdict(claim, Check("inconclusive", {}, "no run finished"), 0, total)
        c = _safe(claim.across_seeds, usable)
        return _verdict(claim, c, total if c.verdict == "pass" else 0, total)
    checks = [_safe(claim.check, r) for r in usable]
    passed = sum(c.verdict == "pass" for c in checks)
    failed = sum(c.verdict == "fail" for c in checks) + (total - len(usable))
    need = claim.min_fraction * total
    if total and passed >= need - 1e-9:
        verdict = "pass"
    elif total and total - failed < need - 1e-9:
        verdict = "fail"
    else:
        verdict = "inconclusive"
    measured = _merge_measured(checks, usable)
    notes = sorted({c.note for c in checks if c.note})
    bad = [r for r in results if r.status != "ok"]
    if bad:
        notes.append(f"{len(bad)} run(s) {', '.join(sorted({r.status for r in bad}))}")
    return _verdict(claim, Check(verdict, measured, "; ".join(notes)), passed, total)


def _merge_measured(checks: Sequence[Check], results: Sequence[Result]) -> dict:
    if len(checks) == 1:
        return dict(checks[0].measured)
    merged: dict = {}
    for c in checks:
        for k, v in c.measured.items():
            merged.setdefault(k, []).append(v)
    merged["seeds"] = [r.seed for r in results]
    merged["verdicts"] = [c.verdict for c in checks]
    return merged


def _verdict(claim: Claim, c: Check, passed: int, total: int) -> ClaimVerdict:
    return ClaimVerdict(
        claim_id=claim.id,
        paper=claim.paper,
        statement=claim.statement,
        expected=claim.expected,
        verdict=c.verdict,
        measured=c.measured,
        seeds_passed=passed,
        seeds_total=total,
        hard=claim.hard,
        note=c.note,
    )


def evaluate_claims(exp: Experiment, results: Sequence[Result]) -> list[ClaimVerdict]:
    return [evaluate_claim(c, results) for c in exp.claims]
