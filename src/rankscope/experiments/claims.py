"""Evaluating claims over the stored results of several seeds."""

from __future__ import annotations

from collections.abc import Sequence

from rankscope.experiments.base import Check, Claim, ClaimVerdict, Experiment
from rankscope.results import Result

__all__ = ["ClaimError", "evaluate_claim", "evaluate_claims"]


class ClaimError(RuntimeError):
    """A claim's check crashed or returned something other than a Check: a bug, not a verdict."""


def _safe(claim: Claim, fn, arg) -> Check:
    try:
        out = fn(arg)
    except Exception as exc:  # a crashing check is a bug in the claim: never "inconclusive"
        raise ClaimError(f"claim {claim.id!r} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(out, Check):
        raise ClaimError(f"claim {claim.id!r} returned {type(out).__name__}, not Check")
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
            none = Check("inconclusive", {}, "no run finished", "no run finished")
            return _verdict(claim, none, 0, total)
        c = _safe(claim, claim.across_seeds, usable)
        return _verdict(claim, c, total if c.verdict == "pass" else 0, total)
    checks = [_safe(claim, claim.check, r) for r in usable]
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
    headline = _headline(verdict, checks, passed, total, notes)
    return _verdict(claim, Check(verdict, measured, "; ".join(notes), headline), passed, total)


def _headline(verdict: str, checks: Sequence[Check], passed: int, total: int, notes) -> str:
    """One line: a representative seed's headline (a failing one when the claim fails)."""
    if not checks:
        return "; ".join(notes) or "no run finished"
    pick = next((c for c in checks if c.verdict == verdict), checks[0])
    line = pick.headline or pick.note
    if total > 1:
        line = f"{line}; {passed}/{total} seeds pass" if line else f"{passed}/{total} seeds pass"
    return line


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
        headline=c.headline,
    )


def evaluate_claims(exp: Experiment, results: Sequence[Result]) -> list[ClaimVerdict]:
    """Every claim of ``exp`` over ``results``, their summaries rebuilt as ``exp.summary_cls``."""
    typed = [exp.typed(r) for r in results]
    return [evaluate_claim(c, typed) for c in exp.claims]
