"""Claim checks of ``sgd-rank-jumps`` (docs/results.md § sgd-rank-jumps, pass criteria 1-4).

They read the typed ``result.summary``: ``stage0``, ``members`` (one per (kind, λ scale) with
raw rank sequences per τ), ``taus``, ``persist``, ``target_rank`` and ``chosen_scale`` (the
largest λ scale at which GD kept its stage-0 rank). Every rank the claims read is the band
rank of :func:`~rankscope.experiments.linear._sgd_jumps.band_filter` with (τ_hi, τ_lo) =
taus[:2]: a drop once a singular value falls below τ_lo·s_1, a rise once one climbs back
above τ_hi·s_1, each held for ``persist`` logs (docs/claims-changelog.md, issue 9).
Each ``invert_*`` perturbs a summary the wrong way so that its check fails.
"""

from __future__ import annotations

import dataclasses
import itertools

from rankscope.experiments.base import Check, Result, check, inconclusive
from rankscope.experiments.linear._sgd_jumps import band_filter, never_increases_after_drop

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


def _band(summary, member) -> list[int]:
    """The member's rank read with the band (τ_hi, τ_lo) = taus[:2] and hysteresis, from its
    start: the stage-0 rank for GD/SGD, the relaxed start's τ_lo rank for a flip member."""
    hi, lo = summary.taus[0], summary.taus[1]
    init = int(member.start.ranks[lo]) if member.start is not None else _stage0_rank(summary)
    return band_filter(member.rank_seq[hi], member.rank_seq[lo], summary.persist, init=init)


def _member(summary, kind: str, scale: float):
    for m in summary.members:
        if m.kind == kind and m.scale == scale:
            return m
    raise KeyError(f"no member kind={kind!r} scale={scale!r}")


def _stage0_rank(summary) -> int:
    return int(summary.stage0.rank)


def choose_scale(summary) -> float | None:
    """The largest λ scale whose GD member kept the stage-0 rank (band) at every log."""
    r0 = _stage0_rank(summary)
    kept = [
        m.scale
        for m in summary.members
        if m.kind == "gd" and not m.diverged and all(r == r0 for r in _band(summary, m))
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


def _band_text(s) -> str:
    return f"band τ ∈ [{s.taus[1]}, {s.taus[0]}], hysteresis {s.persist}"


def one_way(result: Result) -> Check:
    """Criterion 1: no SGD member (any λ scale) raises its band rank after its first drop;
    inconclusive when no SGD member drops."""
    s = result.summary
    sgd = sorted((m for m in s.members if m.kind == "sgd"), key=lambda m: -m.scale)
    paths = {f"{m.scale:g}": _changes(_band(s, m)) for m in sgd if not m.diverged}
    diverged = [m.scale for m in sgd if m.diverged]
    measured = {
        "rank_path_per_scale": paths,
        "diverged_scales": diverged,
        "lrs_per_scale": {f"{m.scale:g}": list(m.lrs) for m in sgd},
    }
    if not paths:
        return check(
            False,
            note="SGD diverged after every η halving at every λ scale",
            headline="SGD diverged after every η halving at every λ scale → fail",
            **measured,
        )
    dropped = {k: p for k, p in paths.items() if any(b < a for a, b in itertools.pairwise(p))}
    text = ", ".join(f"{_path(p)} at scale {k}" for k, p in paths.items())
    if not dropped:
        return inconclusive(
            "SGD never dropped rank at any λ scale: nothing to test",
            headline=f"SGD rank paths {text} ({_band_text(s)}) never drop: nothing to test",
            **measured,
        )
    back = [k for k, p in dropped.items() if not never_increases_after_drop(p)]
    ok = not back
    measured.update(n_dropped=len(dropped), rose_after_drop=back)
    return check(
        ok,
        note=f"SGD diverged at λ scale(s) {diverged}" if diverged else "",
        headline=f"SGD rank paths {text} ({_band_text(s)}); {len(dropped)} scale(s) with a drop, "
        f"must not rise after one → {'pass' if ok else 'fail'}",
        **measured,
    )


def _not_stuck(s, base) -> Check | None:
    r0, target = _stage0_rank(s), s.target_rank
    if r0 <= target:
        return inconclusive(
            f"stage-0 GD reached rank {r0} <= {target}: no rank to drop",
            headline=f"stage-0 GD is at rank {r0} ≤ target {target}: no rank to drop",
            **base,
        )
    if not s.stage0.stuck:
        return inconclusive(
            f"stage-0 GD was still changing rank after {s.stage0.steps} steps",
            headline=f"stage-0 GD (rank {r0}) never held its rank over the window in "
            f"{s.stage0.steps} steps: no stuck point",
            **base,
        )
    return None


def sgd_reaches_target_rank(result: Result) -> Check:
    """Criterion 2: SGD ends at the target rank with unobserved RMSE below GD's (at the chosen
    λ scale, or the smallest one when GD kept its rank at none)."""
    s = result.summary
    r0, target = _stage0_rank(s), s.target_rank
    base = {"stage0_rank": r0, "target_rank": target, "stage0_steps": s.stage0.steps}
    bad = _not_stuck(s, base)
    if bad is not None:
        return bad
    scale, note = _scale_for(s)
    gd, sgd = _member(s, "gd", scale), _member(s, "sgd", scale)
    if sgd.diverged:
        return check(
            False,
            note="SGD diverged after every η halving",
            headline=f"SGD diverged after every η halving (λ scale {scale:g}) → fail",
            scale=scale,
            **base,
        )
    final, gd_final = _band(s, sgd)[-1], _band(s, gd)[-1]
    rmse_s, rmse_g = sgd.final_unobserved_rmse, gd.final_unobserved_rmse
    ok = final == target and rmse_s < rmse_g
    return check(
        ok,
        note=note,
        headline=f"SGD ends at rank {final} (target {target}; GD {gd_final}, stage 0 {r0}; "
        f"{_band_text(s)}, λ scale {scale:g}), unobserved RMSE {rmse_s:.3g} vs GD "
        f"{rmse_g:.3g} (must be lower) → {'pass' if ok else 'fail'}",
        scale=scale,
        sgd_final_rank=final,
        gd_final_rank=gd_final,
        sgd_rank_path=_changes(_band(s, sgd)),
        rmse_sgd=round(rmse_s, 5),
        rmse_gd=round(rmse_g, 5),
        **base,
    )


def gd_keeps_rank(result: Result) -> Check:
    """Criterion 3: GD keeps its stage-0 rank through stage 1 (at the chosen λ scale)."""
    s = result.summary
    r0 = _stage0_rank(s)
    gd = {f"{m.scale:g}": _changes(_band(s, m)) for m in s.members if m.kind == "gd"}
    scale = s.chosen_scale
    nominal = max(m.scale for m in s.members)
    measured = {
        "stage0_rank": r0,
        "stage0_steps": s.stage0.steps,
        "gd_rank_path_per_scale": gd,
        "chosen_scale": scale,
        "kept_at_largest_scale": scale == nominal,
    }
    bad = _not_stuck(s, measured)
    if bad is not None:
        return bad
    paths = ", ".join(f"{_path(p)} at scale {k}" for k, p in gd.items())
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
        + f"; paths {paths} ({_band_text(s)}) → pass",
        lambdas=list(_member(s, "gd", scale).lambdas),
        **measured,
    )


def flip_never_increases(result: Result) -> Check:
    """Criterion 4: SGD started at a rank-2 minimum never increases its band rank, at any λ
    scale whose relaxed start has the target rank."""
    s = result.summary
    flips = sorted((m for m in s.members if m.kind == "flip"), key=lambda m: -m.scale)
    if not flips:
        return inconclusive("flip_test is off in this config")
    lo = s.taus[1]
    starts = {f"{m.scale:g}": int(m.start.ranks[lo]) for m in flips}
    usable = [m for m in flips if int(m.start.ranks[lo]) == s.target_rank]
    paths = {f"{m.scale:g}": _changes(_band(s, m)) for m in usable if not m.diverged}
    diverged = [m.scale for m in usable if m.diverged]
    measured = {"start_rank_per_scale": starts, "rank_path_per_scale": paths}
    if not usable:
        return inconclusive(
            f"no relaxed start has rank {s.target_rank}: {starts}",
            headline=f"no relaxed flip start has rank {s.target_rank} (τ = {lo}): {starts}",
            **measured,
        )
    if diverged:
        return check(
            False,
            note="flip SGD diverged after every η halving",
            headline=f"flip SGD diverged after every η halving (λ scale {diverged}) → fail",
            diverged_scales=diverged,
            **measured,
        )
    rose = [k for k, p in paths.items() if max(p) > s.target_rank]
    ok = not rose
    text = ", ".join(f"{_path(p)} at scale {k}" for k, p in paths.items())
    return check(
        ok,
        headline=f"flip SGD from rank {s.target_rank}: paths {text} ({_band_text(s)}); must "
        f"never rise → {'pass' if ok else 'fail'}",
        rose=rose,
        **measured,
    )


# ----------------------------------------------------------------- wrong-way perturbations
def _map_members(summary, kinds: tuple[str, ...], fn):
    members = tuple(fn(m) if m.kind in kinds else m for m in summary.members)
    return dataclasses.replace(summary, members=members)


def _with_seq(m, seq: tuple[int, ...]):
    return dataclasses.replace(m, rank_seq={t: seq for t in m.rank_seq})


def invert_one_way(summary):
    """Every SGD member drops one rank and climbs back, each for 2·persist logs."""
    p = 2 * summary.persist

    def bounce(m):
        high = max(m.rank_seq[summary.taus[0]]) + 1
        return _with_seq(m, (high,) * p + (high - 1,) * p + (high,) * p)

    return _map_members(summary, ("sgd",), bounce)


def invert_target_rank(summary):
    """Stage 0 is stuck at an overestimated rank, GD keeps it at the largest λ scale, and SGD
    stays there too, above the target."""
    high = max(_stage0_rank(summary), summary.target_rank + 2)
    stage0 = dataclasses.replace(summary.stage0, rank=high, stuck=True)
    n = len(next(m for m in summary.members if m.kind == "sgd").rank_seq[summary.taus[0]])
    out = _map_members(summary, ("sgd", "gd"), lambda m: _with_seq(m, (high,) * n))
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
        start = int(m.start.ranks[summary.taus[1]]) if m.start else summary.target_rank
        return _with_seq(m, (start,) * p + (start + 2,) * p)

    return _map_members(summary, ("flip",), climb)
