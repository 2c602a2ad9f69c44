"""Claims of `rank-diminishing` (docs/results.md pass criteria 1-3), read from the typed summary.

Each network's summary holds its (depth, input) rank tables under the `torch` policy and the
`feng` preset (depth 0 = the input); the records add the spectra of any violation
(``violation_sv``). Each ``invert_*`` returns a summary perturbed the wrong way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rankscope.experiments.base import Check, Result, check, inconclusive

__all__ = [
    "bottleneck",
    "feng_below_torch",
    "invert_bottleneck",
    "invert_feng_below_torch",
    "invert_monotone",
    "monotone",
    "rank_table",
]


def rank_table(net, policy: str) -> np.ndarray:
    """(depths, inputs) integer ranks of one network under ``policy`` (``torch``/``feng``)."""
    return np.asarray(getattr(net, f"ranks_{policy}"), dtype=np.int64)


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
    nets = result.summary.networks
    if not nets:
        return inconclusive("no network was measured")
    rises, cases, count = {}, 0, 0
    for net in nets:
        r = rank_table(net, "torch")
        cases += r[1:].size
        bad = np.argwhere(r[1:] > r[:-1])
        count += len(bad)
        if bad.size:
            rises[net.tag] = [_rise(result, net.tag, r, int(l), int(b)) for l, b in bad[:5]]
    note = "spectra of the violating layers are logged as 'violation_sv'" if rises else ""
    if rises:
        tag, (first, *_) = next(iter(rises.items()))
        verdict = (
            f"fails: {count} rises, first {tag} depth {first['depth']} input {first['input']}: "
            f"{first['ranks'][0]} → {first['ranks'][1]}"
        )
    else:
        verdict = "pass"
    return check(
        not rises,
        note=note,
        headline=(
            f"rank J_l+1 > rank J_l (torch, float64) in {count}/{cases} (network, depth, input) "
            f"cases; limit 0 → {verdict}"
        ),
        cases=cases,
        rises=rises,
        median_rank_by_depth={n.tag: n.median_rank_torch for n in nets},
    )


def _bottlenecks(summary) -> list:
    return [n for n in summary.networks if n.tag.endswith("bottleneck")]


def bottleneck(result: Result) -> Check:
    """In the bottleneck networks, every Jacobian after the width-8 layer has rank ≤ 8."""
    width = result.summary.bottleneck_width
    depth = result.summary.bottleneck_depth
    nets = _bottlenecks(result.summary)
    if not nets:
        return inconclusive("no bottleneck network was measured")
    worst = {n.tag: int(rank_table(n, "torch")[depth:].max()) for n in nets}
    leaky = [t for t, v in worst.items() if v > width]
    values = ", ".join(f"{t} {v}" for t, v in worst.items())
    return check(
        not leaky,
        headline=(
            f"max rank J_l after the width-{width} layer (depth ≥ {depth}): {values}; "
            f"limit {width} → " + ("pass" if not leaky else f"fails at {', '.join(leaky)}")
        ),
        max_rank_after_bottleneck=worst,
        bottleneck_width=width,
        bottleneck_depth=depth,
    )


def feng_below_torch(result: Result) -> Check:
    """rank_feng ≤ rank_torch for every (network, depth, input)."""
    nets = result.summary.networks
    if not nets:
        return inconclusive("no network was measured")
    bad, cases, gap = 0, 0, {}
    for net in nets:
        t, f = rank_table(net, "torch"), rank_table(net, "feng")
        bad += int((f > t).sum())
        cases += t.size
        gap[net.tag] = float(np.median(t - f))
    gaps = ", ".join(f"{t} {v:g}" for t, v in gap.items())
    return check(
        bad == 0,
        headline=(
            f"feng rank > torch rank in {bad}/{cases} Jacobians (median torch − feng: {gaps}); "
            f"limit 0 → {'pass' if bad == 0 else 'fails'}"
        ),
        violations=bad,
        median_torch_minus_feng=gap,
    )


# ---- inversions: the summary perturbed the wrong way -------------------------------------


def invert_monotone(summary):
    """The last Jacobian of every network one rank above the one before it, at input 0."""
    nets = []
    for n in summary.networks:
        r = [list(row) for row in n.ranks_torch]
        r[-1][0] = r[-2][0] + 1
        nets.append(replace(n, ranks_torch=r))
    return replace(summary, networks=nets)


def invert_bottleneck(summary):
    """Every Jacobian after the bottleneck one rank wider than the bottleneck."""
    width, depth = summary.bottleneck_width, summary.bottleneck_depth
    nets = [
        replace(
            n,
            ranks_torch=[
                [width + 1] * len(row) if d >= depth else list(row)
                for d, row in enumerate(n.ranks_torch)
            ],
        )
        if n.tag.endswith("bottleneck")
        else n
        for n in summary.networks
    ]
    return replace(summary, networks=nets)


def invert_feng_below_torch(summary):
    """Every `feng` rank one above the `torch` rank."""
    nets = [
        replace(n, ranks_feng=[[v + 1 for v in row] for row in n.ranks_torch])
        for n in summary.networks
    ]
    return replace(summary, networks=nets)
