"""Claims of `rank-diminishing` (collapse.md pass criteria 1-3), read from the records.

Ranks are stored as ``jac_rank_torch`` / ``jac_rank_feng`` with step = depth (0 = input),
index = probe input and layer = network tag; :meth:`Records.matrix` gives (depth, input).
"""

from __future__ import annotations

import numpy as np

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = ["bottleneck", "feng_below_torch", "monotone", "rank_table"]


def rank_table(result: Result, policy: str, tag: str) -> np.ndarray:
    """(depths, inputs) integer ranks of network ``tag`` under ``policy``."""
    _, values = result.records.matrix(f"jac_rank_{policy}", layer=tag)
    return values


def _tags(result: Result) -> list[str]:
    return [n["tag"] for n in result.summary.get("networks", [])]


def _near_threshold(s: np.ndarray, rank: int) -> list[float]:
    """s_i/s_1 of the three singular values either side of the rank cut (the spectrum print)."""
    if s.size == 0 or s[0] == 0:
        return []
    return [float(v) for v in s[max(rank - 3, 0) : rank + 3] / s[0]]


def _rise(result: Result, tag: str, r: np.ndarray, l: int, b: int) -> dict:
    """One violation with the spectra of J_l and J_{l+1} around their rank cuts."""
    spectra = {}
    for depth in (l, l + 1):
        s = result.records.vector("violation_sv", step=depth, layer=f"{tag}/input={b}")
        spectra[f"s/s1 near cut, depth {depth}"] = _near_threshold(s, int(r[depth, b]))
    return {"depth": l + 1, "input": b, "ranks": [int(r[l, b]), int(r[l + 1, b])], **spectra}


def monotone(result: Result) -> Check:
    """No input has rank J_{l+1}(x) > rank J_l(x) under `torch`."""
    tags = _tags(result)
    if not tags:
        return inconclusive("no network was measured")
    rises, cases = {}, 0
    for tag in tags:
        r = rank_table(result, "torch", tag)
        cases += r[1:].size
        bad = np.argwhere(r[1:] > r[:-1])
        if bad.size:
            rises[tag] = [_rise(result, tag, r, int(l), int(b)) for l, b in bad[:5]]
    note = "spectra of the violating layers are logged as 'violation_sv'" if rises else ""
    return check(
        not rises,
        note=note,
        cases=cases,
        rises=rises,
        median_rank_by_depth={n["tag"]: n["median_rank_torch"] for n in result.summary["networks"]},
    )


def bottleneck(result: Result) -> Check:
    """In the bottleneck networks, every Jacobian after the width-8 layer has rank ≤ 8."""
    width = result.summary["bottleneck_width"]
    depth = result.summary["bottleneck_depth"]
    tags = [t for t in _tags(result) if t.endswith("bottleneck")]
    if not tags:
        return inconclusive("no bottleneck network was measured")
    worst = {t: int(rank_table(result, "torch", t)[depth:].max()) for t in tags}
    return check(
        all(v <= width for v in worst.values()),
        max_rank_after_bottleneck=worst,
        bottleneck_width=width,
        bottleneck_depth=depth,
    )


def feng_below_torch(result: Result) -> Check:
    """rank_feng ≤ rank_torch for every (network, depth, input)."""
    tags = _tags(result)
    if not tags:
        return inconclusive("no network was measured")
    bad, gap = 0, {}
    for tag in tags:
        t, f = rank_table(result, "torch", tag), rank_table(result, "feng", tag)
        bad += int((f > t).sum())
        gap[tag] = float(np.median(t - f))
    return check(bad == 0, violations=bad, median_torch_minus_feng=gap)
