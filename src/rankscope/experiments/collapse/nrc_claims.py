"""Claims of `neural-rank-collapse` (collapse.md pass criteria P1, P3′, P5, P3, P2, NRC-2, NRC-2b).

Each check reads only ``result.summary`` and reports the numbers it compared. "nrank" is the
``rel_1e-2`` preset (s_i > 1e-2·s_1); "relative tail" is d_K^F(W)/‖W‖_F (definitions §7).
"""

from __future__ import annotations

import itertools
import math

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = ["nrc2", "nrc2b", "p1", "p2", "p3", "p3_prime", "p5"]


def _runs(result: Result, protocol: str) -> list[dict]:
    return [r for r in result.summary.get("protocols", {}).get(protocol, []) if r.get("layers")]


def _at(runs: list[dict], lam: float) -> dict | None:
    for r in runs:
        if math.isclose(r["lam"], lam, rel_tol=1e-9):
            return r
    return None


def _layer(run: dict, name: str) -> dict:
    return next(entry for entry in run["layers"] if entry["layer"] == name)


_MIN_TRAIN_ACC = 0.9  # premise of the Adam-protocol claims: the networks were trained


def _undertrained(runs: list[dict]) -> dict[str, float]:
    return {f"{r['lam']:g}": r["train_acc"] for r in runs if r["train_acc"] < _MIN_TRAIN_ACC}


def _all_runs(result: Result) -> list[dict]:
    s = result.summary
    runs = [r for rs in s.get("protocols", {}).values() for r in rs]
    return [r for r in runs + s.get("gmm", []) + s.get("gmm_overlap", []) if r.get("layers")]


def p1(result: Result) -> Check:
    """Both non-stationary inequalities hold for every layer and λ (every sub-run)."""
    rows = [(r["tag"], e) for r in _all_runs(result) for e in r["layers"]]
    if not rows:
        return inconclusive("no trained network was measured")
    bad = [f"{tag}/{e['layer']}" for tag, e in rows if not e["holds"]]
    ratios = [e["s_k1"] / e["bound_op"] for _, e in rows if e["bound_op"] > 0]
    return check(
        not bad,
        cases=len(rows),
        violations=bad,
        max_sk1_over_bound=max(ratios) if ratios else 0.0,
        min_sk1_over_bound=min(ratios) if ratios else 0.0,
    )


def _tails(run: dict) -> dict[str, float]:
    return {name: _layer(run, name)["rel_tail"] for name in ("W2", "W3")}


def p3_prime(result: Result) -> Check:
    """rel. tail of W2, W3 strictly smaller at λ = 1e-2 than at 1e-3, in every protocol run."""
    measured, ok = {}, []
    for protocol in ("lbfgs", "adam"):
        runs = _runs(result, protocol)
        lo, hi = _at(runs, 1e-3), _at(runs, 1e-2)
        if lo is None or hi is None:
            continue
        if _undertrained([lo, hi]):
            measured[protocol] = {"skipped": "not trained", "train_acc": _undertrained([lo, hi])}
            continue
        t_lo, t_hi = _tails(lo), _tails(hi)
        measured[protocol] = {"tail_at_lam_1e-3": t_lo, "tail_at_lam_1e-2": t_hi}
        ok.append(all(t_hi[n] < t_lo[n] for n in t_lo))
    if not ok:
        return inconclusive("no protocol trained both λ = 1e-3 and λ = 1e-2", **measured)
    return check(all(ok), **measured)


def p5(result: Result) -> Check:
    """Under L-BFGS, nrank_{1e-2}(W3) ≤ K for every λ ≥ 1e-3."""
    k = result.summary["K"]
    runs = [r for r in _runs(result, "lbfgs") if r["lam"] >= 1e-3 - 1e-15]
    if not runs:
        return inconclusive("no L-BFGS run with λ >= 1e-3")
    ranks = {f"{r['lam']:g}": _layer(r, "W3")["ranks"]["rel_1e-2"] for r in runs}
    resid = {f"{r['lam']:g}": _layer(r, "W3")["relative_residual"] for r in runs}
    if not all(v < 0.05 for v in resid.values()):
        return inconclusive(
            "L-BFGS did not reach a near-critical point (‖R‖₂/s_1 >= 0.05)",
            nrank_W3=ranks,
            relative_residual_W3=resid,
            K=k,
        )
    return check(
        all(v <= k for v in ranks.values()), nrank_W3=ranks, relative_residual_W3=resid, K=k
    )


def p3(result: Result) -> Check:
    """Adam protocol: rel. tail of W2 and W3 falls by >= 10× from λ = 1e-4 to λ = 1e-2."""
    runs = _runs(result, "adam")
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
    return check(
        all(f >= 10 for f in factor.values()),
        fall_factor=factor,
        tail_at_lam_1e_4=t_lo,
        tail_at_lam_1e_2=t_hi,
    )


def p2(result: Result) -> Check:
    """Adam protocol: nrank(W2), nrank(W3) strictly decrease along λ; nrank(W3) ≤ K+2 at 1e-2."""
    k = result.summary["K"]
    runs = sorted(_runs(result, "adam"), key=lambda r: r["lam"])
    hi = _at(runs, 1e-2)
    if len(runs) < 3 or hi is None:
        return inconclusive("the Adam protocol needs >= 3 λ values including 1e-2")
    if _undertrained(runs):
        return inconclusive(
            f"networks not trained (train accuracy < {_MIN_TRAIN_ACC})",
            train_acc=_undertrained(runs),
        )
    seq = {n: [_layer(r, n)["ranks"]["rel_1e-2"] for r in runs] for n in ("W2", "W3")}
    decreasing = all(a > b for s in seq.values() for a, b in itertools.pairwise(s))
    w3 = _layer(hi, "W3")["ranks"]["rel_1e-2"]
    return check(
        decreasing and w3 <= k + 2,
        lams=[r["lam"] for r in runs],
        nrank=seq,
        nrank_W3_at_lam_1e_2=w3,
        K=k,
    )


def nrc2(result: Result) -> Check:
    """Separable mixture: nrank(W1) ≤ K at s = 0, and the bound holds for every s."""
    runs = [r for r in result.summary.get("gmm", []) if r.get("layers")]
    zero = [r for r in runs if r["spread"] == 0.0]
    if not zero:
        return inconclusive("the separable mixture was not run at s = 0")
    k = result.summary["gmm_K"]
    ranks = {f"{r['spread']:g}": _layer(r, "W1")["ranks"]["rel_1e-2"] for r in runs}
    holds = {f"{r['spread']:g}": all(e["holds"] for e in r["layers"]) for r in runs}
    sk1 = {f"{r['spread']:g}": _layer(r, "W1")["s_k1"] for r in runs}
    ce = {f"{r['spread']:g}": r["train_ce"] for r in runs}
    r0 = _layer(zero[0], "W1")["ranks"]["rel_1e-2"]
    return check(
        r0 <= k and all(holds.values()),
        nrank_W1=ranks,
        bound_holds=holds,
        s_k1_W1=sk1,
        train_ce=ce,
        K=k,
    )


def nrc2b(result: Result) -> Check:
    """Overlapping mixture (outcome unknown): the rel. tail of W1 rises with the spread s."""
    runs = sorted(
        (r for r in result.summary.get("gmm_overlap", []) if r.get("layers")),
        key=lambda r: r["spread"],
    )
    if len(runs) < 2:
        return inconclusive("the overlapping mixture needs >= 2 spreads")
    tails = [_layer(r, "W1")["rel_tail"] for r in runs]
    return check(
        all(b > a for a, b in itertools.pairwise(tails)),
        spreads=[r["spread"] for r in runs],
        rel_tail_W1=tails,
        nrank_W1=[_layer(r, "W1")["ranks"]["rel_1e-2"] for r in runs],
        tcv1_inputs=[_layer(r, "W1")["nc_prev"]["tcv1"] for r in runs],
        train_ce=[r["train_ce"] for r in runs],
        bound_holds=[all(e["holds"] for e in r["layers"]) for r in runs],
    )
