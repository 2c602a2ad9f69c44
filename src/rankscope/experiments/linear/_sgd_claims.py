"""Claim checks of ``sgd-rank-jumps`` (docs/results.md § sgd-rank-jumps, pass criteria 1-4).

They read the typed ``result.summary``: ``stage0``, ``members`` (one per (kind, λ scale) with
raw rank sequences per τ), ``taus`` (the first is the claims' tolerance), ``persist``,
``target_rank`` and ``chosen_scale`` (the largest λ scale at which GD kept its stage-0 rank).
Each ``invert_*`` perturbs a summary the wrong way so that its check fails.
"""

from __future__ import annotations

import dataclasses
import itertools

from rankscope.experiments.base import Check, Result, check, inconclusive
from rankscope.experiments.linear._sgd_jumps import hysteresis_filter, never_increases_after_drop

__all__ = [
    "choose_scale",
    "flip_never_increases",
    "gd_keeps_rank",
    "invert_flip",
    "invert_gd_keeps_rank",
    "invert_one_way",
    "invert_target_rank",
    "one_way",
    "sgd_reaches_target_rank",
]


def _filtered(summary, member, tau: str | None = None) -> list[int]:
    tau = tau or summary.taus[0]
    return hysteresis_filter(member.rank_seq[tau], summary.persist)


def _member(summary, kind: str, scale: float):
    for m in summary.members:
        if m.kind == kind and m.scale == scale:
            return m
    raise KeyError(f"no member kind={kind!r} scale={scale!r}")


def _stage0_rank(summary) -> int:
    return int(summary.stage0.ranks[summary.taus[0]])


def choose_scale(summary) -> float | None:
    """The largest λ scale whose GD member kept the stage-0 rank (filtered) at every log."""
    r0 = _stage0_rank(summary)
    kept = [
        m.scale
        for m in summary.members
        if m.kind == "gd" and not m.diverged and all(r == r0 for r in _filtered(summary, m))
    ]
    return max(kept) if kept else None


def _scale_for(summary) -> tuple[float, str]:
    chosen = summary.chosen_scale
    if chosen is not None:
        return chosen, ""
    smallest = min(m.scale for m in summary.members)
    return smallest, f"GD lost its rank at every λ scale; read at the smallest scale {smallest:g}"


def _changes(filtered: list[int]) -> list[int]:
    """The filtered sequence with repeats removed, e.g. [7, 4, 2]."""
    return [v for i, v in enumerate(filtered) if i == 0 or v != filtered[i - 1]]


def _path(path: list[int]) -> str:
    return "→".join(str(v) for v in path)


def one_way(result: Result) -> Check:
    """Criterion 1: the filtered SGD rank never increases after its first drop."""
    s = result.summary
    scale, note = _scale_for(s)
    m = _member(s, "sgd", scale)
    if m.diverged:
        return check(
            False,
            note="SGD diverged after every η halving",
            headline=f"SGD diverged after every η halving (λ scale {scale:g}) → fail",
            scale=scale,
        )
    per_tau = {t: never_increases_after_drop(_filtered(s, m, t)) for t in s.taus}
    path = _changes(_filtered(s, m))
    measured = {
        "scale": scale,
        "lambdas": list(m.lambdas),
        "lrs": list(m.lrs),
        "rank_path": path,
        "one_way_per_tau": per_tau,
    }
    tau = s.taus[0]
    if not any(b < a for a, b in itertools.pairwise(path)):
        return inconclusive(
            "SGD never dropped rank: nothing to test",
            headline=f"SGD rank path {_path(path)} (τ = {tau}, λ scale {scale:g}) never drops: "
            "nothing to test",
            **measured,
        )
    ok = per_tau[tau]
    return check(
        ok,
        note=note,
        headline=f"SGD rank path {_path(path)} (τ = {tau}, hysteresis {s.persist}, λ scale "
        f"{scale:g}); must not rise after a drop → {'pass' if ok else 'fail'}",
        **measured,
    )


def sgd_reaches_target_rank(result: Result) -> Check:
    """Criterion 2: SGD ends at the target rank with unobserved RMSE below GD's."""
    s = result.summary
    r0, target = _stage0_rank(s), s.target_rank
    base = {"stage0_rank": r0, "target_rank": target}
    if r0 <= target:
        return inconclusive(
            f"stage-0 GD reached rank {r0} <= {target}: no rank to drop",
            headline=f"stage-0 GD is at rank {r0} ≤ target {target}: no rank to drop",
            **base,
        )
    if s.chosen_scale is None:
        return inconclusive(
            "GD lost its stage-0 rank at every λ scale",
            headline=f"GD lost its stage-0 rank {r0} at every λ scale: no GD baseline",
            **base,
        )
    scale = s.chosen_scale
    gd, sgd = _member(s, "gd", scale), _member(s, "sgd", scale)
    if sgd.diverged:
        return check(
            False,
            note="SGD diverged after every η halving",
            headline=f"SGD diverged after every η halving (λ scale {scale:g}) → fail",
            scale=scale,
            **base,
        )
    tau = s.taus[0]
    final = sgd.final_rank[tau]
    rmse_s, rmse_g = sgd.final_unobserved_rmse, gd.final_unobserved_rmse
    ok = final == target and rmse_s < rmse_g
    return check(
        ok,
        headline=f"SGD ends at rank {final} (target {target}; GD {gd.final_rank[tau]}, stage 0 "
        f"{r0}), unobserved RMSE {rmse_s:.3g} vs GD {rmse_g:.3g} (must be lower) → "
        f"{'pass' if ok else 'fail'}",
        scale=scale,
        sgd_final_rank=final,
        gd_final_rank=gd.final_rank[tau],
        rmse_sgd=round(rmse_s, 5),
        rmse_gd=round(rmse_g, 5),
        **base,
    )


def gd_keeps_rank(result: Result) -> Check:
    """Criterion 3: GD keeps its stage-0 rank through stage 1 (at the chosen λ scale)."""
    s = result.summary
    r0 = _stage0_rank(s)
    gd = {f"{m.scale:g}": _changes(_filtered(s, m)) for m in s.members if m.kind == "gd"}
    scale = s.chosen_scale
    nominal = max(m.scale for m in s.members)
    measured = {
        "stage0_rank": r0,
        "gd_rank_path_per_scale": gd,
        "chosen_scale": scale,
        "kept_at_largest_scale": scale == nominal,
    }
    paths = ", ".join(f"{_path(p)} at scale {k}" for k, p in gd.items())
    if r0 <= s.target_rank:
        return inconclusive(
            f"stage-0 GD is at rank {r0} <= {s.target_rank}: it does not overestimate the rank",
            headline=f"stage-0 GD is at rank {r0} ≤ target {s.target_rank}: it does not "
            "overestimate the rank",
            **measured,
        )
    if scale is None:
        return check(
            False,
            note="GD lost its stage-0 rank at every λ scale tried",
            headline=f"GD rank paths {paths} from stage-0 rank {r0}: lost at every λ scale → fail",
            **measured,
        )
    lowered = scale != nominal
    return check(
        True,
        note="λ lowered by the pitfall rule" if lowered else "",
        headline=f"GD keeps stage-0 rank {r0} at λ scale {scale:g}"
        + (f" (λ lowered from scale {nominal:g})" if lowered else "")
        + f"; paths {paths} → pass",
        lambdas=list(_member(s, "gd", scale).lambdas),
        **measured,
    )


def flip_never_increases(result: Result) -> Check:
    """Criterion 4: SGD started at a rank-2 minimum never increases its (filtered) rank."""
    s = result.summary
    if not any(m.kind == "flip" for m in s.members):
        return inconclusive("flip_test is off in this config")
    scale, note = _scale_for(s)
    m = _member(s, "flip", scale)
    tau = s.taus[0]
    start = int(m.start.ranks[tau])
    filt = _filtered(s, m)
    measured = {"scale": scale, "start_rank": start, "rank_path": _changes(filt)}
    if start != s.target_rank:
        return inconclusive(f"the relaxed start has rank {start}, not {s.target_rank}", **measured)
    if m.diverged:
        return check(
            False,
            note="flip SGD diverged after every η halving",
            headline=f"flip SGD diverged after every η halving (λ scale {scale:g}) → fail",
            **measured,
        )
    ok = all(b <= a for a, b in itertools.pairwise(filt)) and max(filt) <= start
    return check(
        ok,
        note=note,
        headline=f"flip SGD from rank {start}: path {_path(_changes(filt))} (λ scale {scale:g}); "
        f"must never rise → {'pass' if ok else 'fail'}",
        **measured,
    )


# ----------------------------------------------------------------- wrong-way perturbations
def _map_members(summary, kinds: tuple[str, ...], fn):
    members = tuple(fn(m) if m.kind in kinds else m for m in summary.members)
    return dataclasses.replace(summary, members=members)


def _with_seq(m, seq: tuple[int, ...]):
    return dataclasses.replace(m, rank_seq={t: seq for t in m.rank_seq})


def invert_one_way(summary):
    """SGD drops one rank and climbs back, each for 2·persist logs."""
    p = 2 * summary.persist

    def bounce(m):
        high = max(m.rank_seq[summary.taus[0]]) + 1
        return _with_seq(m, (high,) * p + (high - 1,) * p + (high,) * p)

    return _map_members(summary, ("sgd",), bounce)


def invert_target_rank(summary):
    """GD keeps its (overestimated) stage-0 rank at the largest λ scale, and SGD ends there
    too, above the target."""
    high = max(_stage0_rank(summary), summary.target_rank + 2)
    stage0 = dataclasses.replace(summary.stage0, ranks={t: high for t in summary.stage0.ranks})
    out = _map_members(
        summary,
        ("sgd",),
        lambda m: dataclasses.replace(m, final_rank={t: high for t in m.final_rank}),
    )
    chosen = summary.chosen_scale
    if chosen is None:
        chosen = max(m.scale for m in summary.members)
    return dataclasses.replace(out, stage0=stage0, chosen_scale=chosen)


def invert_gd_keeps_rank(summary):
    """Every GD member loses a rank after persist logs; no λ scale keeps it."""
    r0, p = _stage0_rank(summary), 2 * summary.persist
    out = _map_members(summary, ("gd",), lambda m: _with_seq(m, (r0,) * p + (r0 - 1,) * p))
    return dataclasses.replace(out, chosen_scale=None)


def invert_flip(summary):
    """The flip member climbs two ranks above its start."""
    p = 2 * summary.persist

    def climb(m):
        start = int(m.start.ranks[summary.taus[0]]) if m.start else summary.target_rank
        return _with_seq(m, (start,) * p + (start + 2,) * p)

    return _map_members(summary, ("flip",), climb)
