"""Claims of `neural-rank-collapse` (criteria P1, P3′, P5, P3, P2, NRC-2, NRC-2b; docs/results.md).

Each check reads only the typed ``result.summary`` and reports the numbers it compared; each
``invert_*`` returns a copy of a summary perturbed the wrong way, on which its check fails.
"nrank" is the ``rel_1e-2`` rank (s_i > 1e-2·s_1); "relative tail" is d_K^F(W)/‖W‖_F
(definitions §7).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import replace

from rankscope.experiments.base import Check, Result, check, inconclusive
from rankscope.experiments.collapse.measure import LayerMeasure
from rankscope.experiments.collapse.nrc_runs import NetworkRun

__all__ = [
    "invert_nrc2",
    "invert_nrc2b",
    "invert_p1",
    "invert_p2",
    "invert_p3",
    "invert_p3_prime",
    "invert_p5",
    "nrc2",
    "nrc2b",
    "p1",
    "p2",
    "p3",
    "p3_prime",
    "p5",
]

_SUBRUNS = ("lbfgs", "adam", "gmm", "gmm_overlap")
_MIN_TRAIN_ACC = 0.9  # premise of the Adam-protocol claims: the networks were trained


def _runs(summary, protocol: str) -> list[NetworkRun]:
    return [r for r in getattr(summary, protocol) if r.layers]


def _at(runs: list[NetworkRun], lam: float) -> NetworkRun | None:
    for r in runs:
        if math.isclose(r.lam, lam, rel_tol=1e-9):
            return r
    return None


def _nrank(run: NetworkRun, name: str) -> int:
    return run.layer(name).ranks["rel_1e-2"]


def _undertrained(runs: list[NetworkRun]) -> dict[str, float]:
    return {f"{r.lam:g}": r.train_acc for r in runs if r.train_acc < _MIN_TRAIN_ACC}


def _g(values) -> str:
    return " / ".join(f"{v:.2g}" for v in values)


def p1(result: Result) -> Check:
    """Both non-stationary inequalities hold for every layer and λ (every sub-run)."""
    s = result.summary
    rows = [(r.tag, e) for p in _SUBRUNS for r in _runs(s, p) for e in r.layers]
    if not rows:
        return inconclusive("no trained network was measured")
    bad = [f"{tag}/{e.layer}" for tag, e in rows if not e.holds]
    ratios = [e.bound.s_k1 / e.bound.bound_op for _, e in rows if e.bound.bound_op > 0]
    lo, hi = (min(ratios), max(ratios)) if ratios else (0.0, 0.0)
    verdict = f"fails at {', '.join(bad[:3])}" + (" …" if len(bad) > 3 else "") if bad else "pass"
    return check(
        not bad,
        headline=(
            f"bound holds in {len(rows) - len(bad)}/{len(rows)} (layer, λ, sub-run) cases; "
            f"s_K+1/bound in [{lo:.2g}, {hi:.2g}], limit 1 → {verdict}"
        ),
        cases=len(rows),
        violations=bad,
        max_sk1_over_bound=hi,
        min_sk1_over_bound=lo,
    )


def _tails(run: NetworkRun) -> dict[str, float]:
    return {name: run.layer(name).rel_tail for name in ("W2", "W3")}


def p3_prime(result: Result) -> Check:
    """rel. tail of W2, W3 strictly smaller at λ = 1e-2 than at 1e-3, in every protocol run."""
    measured, ok, parts = {}, [], []
    for protocol in ("lbfgs", "adam"):
        runs = _runs(result.summary, protocol)
        lo, hi = _at(runs, 1e-3), _at(runs, 1e-2)
        if lo is None or hi is None:
            continue
        if _undertrained([lo, hi]):
            measured[protocol] = {"skipped": "not trained", "train_acc": _undertrained([lo, hi])}
            parts.append(f"{protocol} skipped (train acc < {_MIN_TRAIN_ACC})")
            continue
        t_lo, t_hi = _tails(lo), _tails(hi)
        measured[protocol] = {"tail_at_lam_1e-3": t_lo, "tail_at_lam_1e-2": t_hi}
        ok.append(all(t_hi[n] < t_lo[n] for n in t_lo))
        parts.append(f"{protocol} {_g(t_lo.values())} → {_g(t_hi.values())}")
    if not ok:
        return inconclusive(
            "no protocol trained both λ = 1e-3 and λ = 1e-2",
            headline="no protocol trained both λ = 1e-3 and λ = 1e-2 → inconclusive",
            **measured,
        )
    return check(
        all(ok),
        headline=(
            f"tail W2 / W3 at λ = 1e-3 → 1e-2: {'; '.join(parts)}; must fall → "
            + ("pass" if all(ok) else "fails: a tail did not fall")
        ),
        **measured,
    )


def p5(result: Result) -> Check:
    """Under L-BFGS, nrank_{1e-2}(W3) ≤ K for every λ ≥ 1e-3."""
    k = result.summary.K
    runs = [r for r in _runs(result.summary, "lbfgs") if r.lam >= 1e-3 - 1e-15]
    if not runs:
        return inconclusive("no L-BFGS run with λ >= 1e-3")
    ranks = {f"{r.lam:g}": _nrank(r, "W3") for r in runs}
    resid = {f"{r.lam:g}": r.layer("W3").relative_residual for r in runs}
    at = ", ".join(f"λ = {lam}: {v}" for lam, v in ranks.items())
    if not all(v < 0.05 for v in resid.values()):
        return inconclusive(
            "L-BFGS did not reach a near-critical point (‖R‖₂/s_1 >= 0.05)",
            headline=(
                f"‖R‖₂/s_1 of W3 {_g(resid.values())} ≥ 0.05: not near-critical "
                f"(nrank W3 {at}) → inconclusive"
            ),
            nrank_W3=ranks,
            relative_residual_W3=resid,
            K=k,
        )
    ok = all(v <= k for v in ranks.values())
    return check(
        ok,
        headline=f"nrank W3 {at}; limit K = {k} → {'pass' if ok else 'fails'}",
        nrank_W3=ranks,
        relative_residual_W3=resid,
        K=k,
    )


def p3(result: Result) -> Check:
    """Adam protocol: rel. tail of W2 and W3 falls by >= 10× from λ = 1e-4 to λ = 1e-2."""
    runs = _runs(result.summary, "adam")
    lo, hi = _at(runs, 1e-4), _at(runs, 1e-2)
    if lo is None or hi is None:
        return inconclusive("the Adam protocol did not run both λ = 1e-4 and λ = 1e-2")
    if _undertrained([lo, hi]):
        return inconclusive(
            f"networks not trained (train accuracy < {_MIN_TRAIN_ACC})",
            train_acc=_undertrained([lo, hi]),
        )
    t_lo, t_hi = _tails(lo), _tails(hi)
    factor = {n: (t_lo[n] / t_hi[n] if t_hi[n] > 0 else math.inf) for n in t_lo}
    ok = all(f >= 10 for f in factor.values())
    short = [n for n, f in factor.items() if f < 10]
    return check(
        ok,
        headline=(
            f"tail falls {' / '.join(f'{f:.3g}×' for f in factor.values())} (W2 / W3) from "
            f"λ = 1e-4 to 1e-2; limit 10× → {'pass' if ok else 'fails at ' + ', '.join(short)}"
        ),
        fall_factor=factor,
        tail_at_lam_1e_4=t_lo,
        tail_at_lam_1e_2=t_hi,
    )


def p2(result: Result) -> Check:
    """Adam protocol: nrank(W2), nrank(W3) strictly decrease along λ; nrank(W3) ≤ K+2 at 1e-2."""
    k = result.summary.K
    runs = sorted(_runs(result.summary, "adam"), key=lambda r: r.lam)
    hi = _at(runs, 1e-2)
    if len(runs) < 3 or hi is None:
        return inconclusive("the Adam protocol needs >= 3 λ values including 1e-2")
    if _undertrained(runs):
        return inconclusive(
            f"networks not trained (train accuracy < {_MIN_TRAIN_ACC})",
            train_acc=_undertrained(runs),
        )
    seq = {n: [_nrank(r, n) for r in runs] for n in ("W2", "W3")}
    flat = [n for n, s in seq.items() if not all(a > b for a, b in itertools.pairwise(s))]
    w3 = _nrank(hi, "W3")
    why = [f"{', '.join(flat)} not strictly decreasing"] if flat else []
    why += [f"W3 = {w3} > K + 2 = {k + 2}"] if w3 > k + 2 else []
    lams = " / ".join(f"{r.lam:g}" for r in runs)
    return check(
        not why,
        headline=(
            f"nrank W2 {'/'.join(map(str, seq['W2']))}, W3 {'/'.join(map(str, seq['W3']))} "
            f"at λ = {lams}; must fall strictly, W3 ≤ {k + 2} → "
            + ("pass" if not why else "fails: " + "; ".join(why))
        ),
        lams=[r.lam for r in runs],
        nrank=seq,
        nrank_W3_at_lam_1e_2=w3,
        K=k,
    )


def nrc2(result: Result) -> Check:
    """Separable mixture: nrank(W1) ≤ K at s = 0, and the bound holds for every s."""
    runs = _runs(result.summary, "gmm")
    zero = [r for r in runs if r.spread == 0.0]
    if not zero:
        return inconclusive("the separable mixture was not run at s = 0")
    k = zero[0].num_classes
    ranks = {f"{r.spread:g}": _nrank(r, "W1") for r in runs}
    holds = {f"{r.spread:g}": all(e.holds for e in r.layers) for r in runs}
    sk1 = {f"{r.spread:g}": r.layer("W1").bound.s_k1 for r in runs}
    ce = {f"{r.spread:g}": r.train_ce for r in runs}
    r0 = _nrank(zero[0], "W1")
    broken = [s for s, h in holds.items() if not h]
    why = [f"nrank {r0} > K"] if r0 > k else []
    why += [f"bound fails at s = {', '.join(broken)}"] if broken else []
    return check(
        not why,
        headline=(
            f"nrank W1 = {r0} at s = 0 (limit K = {k}); bound holds at "
            f"{len(holds) - len(broken)}/{len(holds)} spreads → "
            + ("pass" if not why else "fails: " + "; ".join(why))
        ),
        nrank_W1=ranks,
        bound_holds=holds,
        s_k1_W1=sk1,
        train_ce=ce,
        K=k,
    )


def nrc2b(result: Result) -> Check:
    """Overlapping mixture (outcome unknown): the rel. tail of W1 rises with the spread s."""
    runs = sorted(_runs(result.summary, "gmm_overlap"), key=lambda r: r.spread)
    if len(runs) < 2:
        return inconclusive("the overlapping mixture needs >= 2 spreads")
    tails = [r.layer("W1").rel_tail for r in runs]
    ok = all(b > a for a, b in itertools.pairwise(tails))
    spreads = " / ".join(f"{r.spread:g}" for r in runs)
    return check(
        ok,
        headline=(
            f"tail W1 {_g(tails)} at s = {spreads}; must rise → "
            + ("pass" if ok else "fails: not increasing")
        ),
        spreads=[r.spread for r in runs],
        rel_tail_W1=tails,
        nrank_W1=[_nrank(r, "W1") for r in runs],
        tcv1_inputs=[r.layer("W1").nc_prev.tcv1 for r in runs],
        train_ce=[r.train_ce for r in runs],
        bound_holds=[all(e.holds for e in r.layers) for r in runs],
    )


# ---- inversions: the summary perturbed the wrong way -------------------------------------


def _edit_layers(
    run: NetworkRun, fn: Callable[[LayerMeasure], LayerMeasure], names=None
) -> NetworkRun:
    layers = [fn(e) if names is None or e.layer in names else e for e in run.layers]
    return replace(run, layers=layers)


def _edit_runs(summary, protocol: str, fn: Callable[[NetworkRun], NetworkRun], when=None):
    runs = [
        fn(r) if r.layers and (when is None or when(r)) else r for r in getattr(summary, protocol)
    ]
    return replace(summary, **{protocol: runs})


def _with_rank(e: LayerMeasure, rank: int) -> LayerMeasure:
    return replace(e, ranks={**e.ranks, "rel_1e-2": rank})


def invert_p1(summary):
    """s_{K+1} of every layer of every sub-run pushed above its bound."""

    def above(e: LayerMeasure) -> LayerMeasure:
        b = e.bound
        return replace(e, bound=replace(b, s_k1=2 * b.bound_op + b.s1 + 1.0))

    for p in _SUBRUNS:
        summary = _edit_runs(summary, p, lambda r: _edit_layers(r, above))
    return summary


def invert_p3_prime(summary):
    """At λ = 1e-2 the tails of W2, W3 become twice those at λ = 1e-3 (trained networks)."""
    for p in ("lbfgs", "adam"):
        summary = _edit_runs(summary, p, lambda r: replace(r, train_acc=1.0))
        lo = _at(_runs(summary, p), 1e-3)
        if lo is None:
            continue
        t = _tails(lo)
        summary = _edit_runs(
            summary,
            p,
            lambda r, t=t: _edit_layers(
                r, lambda e: replace(e, rel_tail=2 * t[e.layer] + 1e-3), ("W2", "W3")
            ),
            when=lambda r: math.isclose(r.lam, 1e-2, rel_tol=1e-9),
        )
    return summary


def invert_p5(summary):
    """Every L-BFGS W3 near-critical (‖R‖₂ = 0.01·s_1) with nrank K + 5."""
    k = summary.K

    def high(e: LayerMeasure) -> LayerMeasure:
        return _with_rank(replace(e, bound=replace(e.bound, residual_op=0.01 * e.bound.s1)), k + 5)

    return _edit_runs(summary, "lbfgs", lambda r: _edit_layers(r, high, ("W3",)))


def invert_p3(summary):
    """The Adam tails at λ = 1e-2 equal those at λ = 1e-4 (no fall), networks trained."""
    lo = _at(_runs(summary, "adam"), 1e-4)
    if lo is None:
        return summary
    t = _tails(lo)
    summary = _edit_runs(summary, "adam", lambda r: replace(r, train_acc=1.0))
    return _edit_runs(
        summary,
        "adam",
        lambda r: _edit_layers(r, lambda e: replace(e, rel_tail=t[e.layer]), ("W2", "W3")),
        when=lambda r: math.isclose(r.lam, 1e-2, rel_tol=1e-9),
    )


def invert_p2(summary):
    """Adam ranks of W2, W3 rising with λ (trained networks)."""
    lams = sorted(r.lam for r in _runs(summary, "adam"))

    def rising(r: NetworkRun) -> NetworkRun:
        rank = 20 + 10 * lams.index(r.lam)
        return _edit_layers(replace(r, train_acc=1.0), lambda e: _with_rank(e, rank), ("W2", "W3"))

    return _edit_runs(summary, "adam", rising)


def invert_nrc2(summary):
    """The separable mixture's W1 at rank K + 3 at every spread."""
    return _edit_runs(
        summary,
        "gmm",
        lambda r: _edit_layers(r, lambda e: _with_rank(e, r.num_classes + 3), ("W1",)),
    )


def invert_nrc2b(summary):
    """The overlapping mixture's W1 tail falling with the spread s."""
    spreads = sorted(r.spread for r in _runs(summary, "gmm_overlap"))

    def falling(r: NetworkRun) -> NetworkRun:
        tail = 1.0 / (1 + spreads.index(r.spread))
        return _edit_layers(r, lambda e: replace(e, rel_tail=tail), ("W1",))

    return _edit_runs(summary, "gmm_overlap", falling)
