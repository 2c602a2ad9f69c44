"""`mc-not-norms`: the bound, the loss, the smoke run under exact gradient flow, the claims."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from rankscope.experiments.base import VERDICTS, Result, RunContext
from rankscope.experiments.linear.mc_not_norms import (
    EXPERIMENT,
    ContrastConfig,
    Summary,
    completion_loss,
    norm_bound,
)
from rankscope.experiments.summary import summary_from_dict, summary_to_dict
from rankscope.records import Records
from rankscope.report.figures.linear import FIGURES


def test_completion_loss_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(2, 2, generator=gen, dtype=torch.float64) for _ in range(3)]
    w = (ws[2] @ ws[1] @ ws[0]).numpy()
    expected = 0.5 * ((w[0, 1] - 1) ** 2 + (w[1, 0] - 1) ** 2 + w[1, 1] ** 2)
    assert float(completion_loss(ws)) == pytest.approx(expected, rel=1e-12)


def test_bound_holds_for_random_positive_det_matrices():
    # Independent of the flow: any W with det > 0 and ℓ < ½ obeys |W11| ≥ (1 − √2ℓ)²/√2ℓ.
    rng = np.random.default_rng(0)
    w = np.array([[0.0, 1.0], [1.0, 0.0]]) + rng.normal(scale=0.3, size=(200_000, 2, 2))
    w[:, 0, 0] = rng.normal(scale=30, size=w.shape[0])
    loss = 0.5 * ((w[:, 0, 1] - 1) ** 2 + (w[:, 1, 0] - 1) ** 2 + w[:, 1, 1] ** 2)
    keep = (np.linalg.det(w) > 0) & (loss < 0.5)
    assert keep.sum() > 1000
    assert (np.abs(w[keep, 0, 0]) >= norm_bound(loss[keep]) - 1e-12).all()
    assert np.isnan(norm_bound(np.array([0.6]))).all()


@pytest.fixture(scope="module")
def smoke() -> Result:
    return EXPERIMENT.run(EXPERIMENT.preset("smoke"), RunContext(seed=0))


def test_smoke_claims(smoke):
    stored = json.loads(json.dumps(summary_to_dict(smoke.summary)))
    assert summary_to_dict(summary_from_dict(Summary, stored)) == stored
    checks = {c.id: c.check(smoke) for c in EXPERIMENT.claims}
    assert set(checks) == {"MC-1.1", "MC-1.2", "MC-1.3", "MC-1.4", "MC-2"}
    assert all(c.verdict in VERDICTS for c in checks.values())
    assert all(c.headline for c in checks.values())
    for cid in ("MC-1.1", "MC-1.2", "MC-1.3", "MC-1.4", "MC-2"):
        assert checks[cid].verdict == "pass", (cid, checks[cid].measured)
    for claim in EXPERIMENT.claims:  # perturbed the wrong way, every pass turns into a fail
        bad = dataclasses.replace(smoke, summary=claim.invert(smoke.summary))
        assert claim.check(bad).verdict == "fail", claim.id


def test_smoke_matches_reference_trajectory(smoke):
    # docs/results.md: |W11| ≈ 1.85, 6.93, 22.4, 70.7 at ℓ = 1e-1 … 1e-4 (official figure)
    w11 = [p.w11 for p in smoke.summary.mc1.checkpoints]
    np.testing.assert_allclose(w11, [1.85, 6.93, 22.4, 70.7], rtol=0.02)


def test_figures_draw_from_records(smoke):
    for spec in FIGURES["mc-not-norms"]:
        fig, _ = spec.draw([smoke])
        assert fig.axes, spec.name


def _doctored(smoke: Result, **changes) -> Result:
    mc1 = dataclasses.replace(smoke.summary.mc1, **changes)
    return Result(summary=dataclasses.replace(smoke.summary, mc1=mc1), records=Records.empty())


def test_claims_fail_or_abstain_on_doctored_results(smoke):
    by_id = {c.id: c for c in EXPERIMENT.claims}
    points = smoke.summary.mc1.checkpoints
    assert by_id["MC-1.1"].check(_doctored(smoke, min_det=-0.4)).verdict == "fail"
    assert by_id["MC-1.2"].check(_doctored(smoke, n_bound_violations=3)).verdict == "fail"
    low = tuple(dataclasses.replace(p, w11=43.0) if p.loss == 1e-4 else p for p in points)
    assert by_id["MC-1.3"].check(_doctored(smoke, checkpoints=low)).verdict == "fail"
    # |W_11| is read at ℓ = 1e-4, not at a later stop loss (paper preset stops at 1e-5)
    later = [p for p in points if p.loss != 1e-4]
    later.append(dataclasses.replace(points[-1], loss=1e-5, w11=223.0))
    assert by_id["MC-1.3"].check(_doctored(smoke, checkpoints=tuple(later))).verdict == (
        "inconclusive"
    )
    flat = tuple(dataclasses.replace(p, nuclear=2.0) for p in points)
    assert by_id["MC-1.4"].check(_doctored(smoke, checkpoints=flat)).verdict == "fail"
    for cid in ("MC-1.1", "MC-1.2", "MC-1.3", "MC-1.4"):
        assert by_id[cid].check(_doctored(smoke, reached=False)).verdict == "inconclusive"
    assert by_id["MC-2"].check(smoke).verdict == "pass"
    mc2 = smoke.summary.mc2
    grown = dataclasses.replace(mc2, w11_at_check=3 * mc2.w11_at_level)
    contrast = Result(
        summary=dataclasses.replace(smoke.summary, mc2=grown), records=Records.empty()
    )
    assert by_id["MC-2"].check(contrast).verdict == "fail"
    off = Result(summary=dataclasses.replace(smoke.summary, mc2=None), records=Records.empty())
    assert by_id["MC-2"].check(off).verdict == "inconclusive"


def test_contrast_reads_w11_at_1e6_when_the_flow_runs_further():
    cfg = dataclasses.replace(EXPERIMENT.preset("smoke"), contrast=ContrastConfig(stop_loss=1e-7))
    res = EXPERIMENT.run(cfg, RunContext(seed=0))
    mc2 = res.summary.mc2
    assert mc2.check_loss == 1e-6 and math.isfinite(mc2.w11_at_check)
    check = next(c for c in EXPERIMENT.claims if c.id == "MC-2").check(res)
    assert check.measured["w11_at_1e6"] == mc2.w11_at_check
