"""`schatten-l2`: the scalar problem against brute force, the smoke run and its claims."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from rankscope.experiments.base import VERDICTS, Result, RunContext
from rankscope.experiments.linear._scalar import (
    global_minimizer,
    scalar_objective,
    soft_threshold,
    stationary_points,
)
from rankscope.experiments.linear.schatten_l2 import EXPERIMENT, Config, Summary
from rankscope.experiments.summary import summary_from_dict, summary_to_dict
from rankscope.records import Records
from rankscope.report.figures.linear import FIGURES


def _brute_force_min(y: float, lam: float, depth: int) -> float:
    grid = np.linspace(0.0, max(y, 0.0) + 1.0, 400_001)
    f = 0.5 * (grid - y) ** 2 + lam * depth * grid ** (2.0 / depth)
    return float(grid[np.argmin(f)])


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("y", [0.0, 0.2, 0.6, 1.5, 3.0, 5.0])
@pytest.mark.parametrize("lam", [0.1, 0.2, 0.3])
def test_global_minimizer_matches_brute_force(depth, y, lam):
    assert global_minimizer(y, lam, depth) == pytest.approx(
        _brute_force_min(y, lam, depth), abs=2e-5
    )


@pytest.mark.parametrize(("y", "lam", "depth"), [(5.0, 0.3, 3), (1.5, 0.3, 3), (1.5, 0.2, 4)])
def test_stationary_points_zero_the_derivative(y, lam, depth):
    roots = stationary_points(y, lam, depth)
    assert len(roots) == 2 and 0 < roots[0] < roots[1] < y
    h = 1e-6
    for r in roots:  # central finite difference of f, an independent derivative
        slope = (
            scalar_objective(r + h, y, lam, depth) - scalar_objective(r - h, y, lam, depth)
        ) / (2 * h)
        assert abs(slope) < 1e-6


def test_reference_values_from_the_papers_file():
    assert soft_threshold(1.5, 0.3) == pytest.approx(0.9)
    assert global_minimizer(1.5, 0.3, 3) == pytest.approx(0.872, abs=1e-3)
    assert global_minimizer(1.5, 0.2, 4) == pytest.approx(1.12, abs=5e-3)
    assert stationary_points(5.0, 0.3, 3)[-1] == pytest.approx(4.64, abs=5e-3)
    assert stationary_points(0.0, 0.3, 3) == []


@pytest.fixture(scope="module")
def smoke() -> Result:
    return EXPERIMENT.run(EXPERIMENT.preset("smoke"), RunContext(seed=0))


def test_smoke_claims(smoke):
    stored = json.loads(json.dumps(summary_to_dict(smoke.summary)))
    assert summary_from_dict(Summary, stored) == smoke.summary
    checks = {c.id: c.check(smoke) for c in EXPERIMENT.claims}
    assert set(checks) == {f"SL2-{k}" for k in range(1, 7)}
    assert all(c.verdict in VERDICTS for c in checks.values())
    assert all(c.headline for c in checks.values())
    for cid in ("SL2-1", "SL2-2", "SL2-3", "SL2-4", "SL2-6"):
        assert checks[cid].verdict == "pass", (cid, checks[cid].measured)


def test_inversions_turn_smoke_passes_into_fails(smoke):
    for claim in EXPERIMENT.claims:
        if claim.check(smoke).verdict != "pass":
            continue
        bad = dataclasses.replace(smoke, summary=claim.invert(smoke.summary))
        assert claim.check(bad).verdict == "fail", claim.id


def test_expansion_config_is_nested():
    from rankscope.experiments.config import apply_overrides

    cfg = apply_overrides(Config(), {"expansion.steps": "10"})
    assert cfg.expansion.steps == 10 and cfg.expansion.depths == (4, 8, 16, 32)
    with pytest.raises(ValueError, match=r"expansion\.values"):
        apply_overrides(Config(), {"expansion.values": "1,-1"})


def test_expansion_fits_reach_the_exact_cost(smoke):
    for row in smoke.summary.expansion:
        assert row.fit_error < 1e-8
        assert row.param_norm2 == pytest.approx(row.exact_cost, rel=1e-9)


def test_figures_draw_from_records(smoke):
    for spec in FIGURES["schatten-l2"]:
        fig, _ = spec.draw([smoke])
        assert fig.axes, spec.name


def _with_fit(smoke: Result, **changes) -> Result:
    fits = tuple(
        dataclasses.replace(f, **changes) if f.depth == 3 else f for f in smoke.summary.fits
    )
    return Result(summary=dataclasses.replace(smoke.summary, fits=fits), records=Records.empty())


def test_claims_fail_on_doctored_results(smoke):
    by_id = {c.id: c for c in EXPERIMENT.claims}
    assert by_id["SL2-1"].check(_with_fit(smoke, balance=0.1)).verdict == "fail"
    assert by_id["SL2-2"].check(_with_fit(smoke, balance=0.1)).verdict == "inconclusive"
    bad_norm = _with_fit(smoke, param_norm2=2 * smoke.summary.fits[1].schatten_cost)
    assert by_id["SL2-2"].check(bad_norm).verdict == "fail"
    projected = list(smoke.summary.fits[1].projected)
    projected[2] = 0.5  # neither 0 nor a stationary point of f
    assert by_id["SL2-4"].check(_with_fit(smoke, projected=tuple(projected))).verdict == "fail"
    escaped = list(projected)
    escaped[2] = smoke.summary.fits[1].global_min[2]
    assert by_id["SL2-5"].check(_with_fit(smoke, projected=tuple(escaped))).verdict == "fail"


def _with(smoke: Result, **changes) -> Result:
    return Result(summary=dataclasses.replace(smoke.summary, **changes), records=Records.empty())


def test_soft_threshold_and_expansion_claims_fail_on_doctored_results(smoke):
    by_id = {c.id: c for c in EXPERIMENT.claims}
    fits = list(smoke.summary.fits)
    k = next(i for i, f in enumerate(fits) if f.depth == 2)
    sv = fits[k].sv
    fits[k] = dataclasses.replace(fits[k], sv=(sv[0] + 2e-3, *sv[1:]))  # off by 2e-3
    assert by_id["SL2-3"].check(_with(smoke, fits=tuple(fits))).verdict == "fail"
    rows = list(smoke.summary.expansion)
    rows[-1] = dataclasses.replace(rows[-1], residual=2 * rows[-2].residual)  # grows with L
    assert by_id["SL2-6"].check(_with(smoke, expansion=tuple(rows))).verdict == "fail"
    rows = tuple(
        dataclasses.replace(r, residual=r.residual * r.depth / 4) for r in smoke.summary.expansion
    )
    assert by_id["SL2-6"].check(_with(smoke, expansion=rows)).verdict == "fail"  # only L^-1
