"""`saddle-to-saddle`: smoke run, claims, figures, and the batched GD pieces it relies on."""

from __future__ import annotations

import dataclasses
import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from rankscope.experiments.base import VERDICTS, Result, RunContext
from rankscope.experiments.linear._dln import log_spaced_steps
from rankscope.experiments.linear.saddle_to_saddle import (
    EXPERIMENT,
    Config,
    DepthRun,
    GammaConfig,
    GammaRun,
    Summary,
    _ModeTracker,
)
from rankscope.experiments.summary import summary_from_dict, summary_to_dict
from rankscope.models.linear import end_to_end
from rankscope.records import Records
from rankscope.report.figures.linear import FIGURES
from rankscope.train import train


@pytest.fixture(scope="module")
def smoke() -> Result:
    return EXPERIMENT.run(EXPERIMENT.preset("smoke"), RunContext(seed=0))


def test_smoke_claims_give_verdicts(smoke):
    checks = {c.id: c.check(smoke) for c in EXPERIMENT.claims}
    assert set(checks) == {"S2S-1", "S2S-2", "S2S-3", "S2S-4", "S2S-5"}
    assert all(c.verdict in VERDICTS for c in checks.values())
    # Robust at smoke scale: greedy rank sequence and the plateau scaling laws.
    for cid in ("S2S-1", "S2S-2", "S2S-3"):
        assert checks[cid].verdict == "pass", (cid, checks[cid].measured)
    assert checks["S2S-4"].measured["final_rank"]  # the γ runs were measured
    assert all(c.headline for c in checks.values())


def test_smoke_summary_is_json_and_half_fit_ordered(smoke):
    stored = json.loads(json.dumps(summary_to_dict(smoke.summary)))
    assert summary_from_dict(Summary, stored) == smoke.summary
    for run in smoke.summary.depth_runs:
        t = run.half_fit
        assert all(math.isfinite(x) for x in t), run.tag
        assert t[0] < t[1] < t[2], run.tag  # modes learned in decreasing order of s_i
    # a stored spectrum trajectory exists for every sub-run
    tags = {r.tag for r in smoke.summary.depth_runs}
    assert tags <= set(smoke.records.layers("sv"))


def test_figures_draw_from_records(smoke):
    for spec in FIGURES["saddle-to-saddle"]:
        fig, _ = spec.draw([smoke])
        assert fig.axes, spec.name


def test_engine_gd_step_matches_the_closed_form_factor_gradients():
    """One step of train() on stacked factors equals W_ℓ − η(W_L⋯W_{ℓ+1})ᵀG(W_{ℓ−1}⋯W_1)ᵀ,
    G = A − A*: the gradient the experiment's old hand-written loop used, here as reference."""
    gen = torch.Generator().manual_seed(0)
    dims, lr = [3, 5, 4, 2], 0.05
    ws = [torch.randn(2, o, i, generator=gen, dtype=torch.float64) for i, o in pairwise(dims)]
    target = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)
    g = end_to_end(ws) - target
    expected = []
    for ell in range(len(ws)):
        left = end_to_end(ws[ell + 1 :]).mT @ g if ell + 1 < len(ws) else g
        grad = left @ end_to_end(ws[:ell]).mT if ell > 0 else left
        expected.append(ws[ell] - lr * grad)
    leaves = [w.clone().requires_grad_(True) for w in ws]
    train(leaves, lambda p: 0.5 * (end_to_end(p) - target).square().sum(), lr=lr, steps=1)
    for got, want in zip(leaves, expected):
        torch.testing.assert_close(got.detach(), want)


def test_mode_tracker_interpolates_crossings_and_compresses_ranks():
    target = np.array([4.0, 2.0])
    tracker = _ModeTracker(target, n_members=1, eps=0.5, lr=0.1)
    # s_1 ramps 0, 1, 3 (crosses 2 at step 1.5); s_2 ramps 0, 0, 0.6, 1.4 (crosses 1 at 2.5)
    spectra = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.6, 0.0], [4.0, 1.4, 0.0]]
    for step, s in enumerate(spectra):
        tracker.update(step, torch.tensor([s], dtype=torch.float64))
    np.testing.assert_allclose(tracker.times[0], [0.1 * 1.5, 0.1 * 2.5])
    assert tracker.sequences[0] == [0, 1, 2]


def test_log_spaced_steps_cover_both_ends():
    steps = log_spaced_steps(10_000, 50)
    assert 0 in steps and 10_000 in steps and len(steps) <= 50


def test_config_rejects_mismatched_grids():
    with pytest.raises(ValueError, match="one entry per depth"):
        dataclasses.replace(Config(), depths=(2, 3))
    with pytest.raises(ValueError, match=r"gamma\.target"):
        GammaConfig(dim=1)
    with pytest.raises(ValueError, match=r"gamma\.rel_tol"):
        GammaConfig(rel_tol=0.0)


def _depth_run(**kw) -> DepthRun:
    base = dict(depth=2, sigma2=1e-4, lr=0.01, tag="L=2", half_fit=(1.0, 2.0, 3.0),
                rank_sequence=(0, 1, 2, 3), initial_rank=0, steps=100, time=1.0,
                final_loss=0.0, final_sv=(10.0, 5.0, 2.5))  # fmt: skip
    base.update({k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})
    return DepthRun(**base)


def _fake(runs: list[dict]) -> Result:
    summary = Summary(
        target=(10.0, 5.0, 2.5),
        rank_eps=0.125,
        depth_runs=tuple(_depth_run(**r) for r in runs),
        gamma_runs=(),
        gamma_dim=20,
        gamma_target_rank=2,
        gamma_rank_eps=0.25,
    )
    return Result(summary=summary, records=Records.empty())


def test_rank_sequence_claim_fails_on_a_skipped_rank():
    run = {"tag": "L=2,sigma2=1e-06", "depth": 2, "sigma2": 1e-6, "initial_rank": 0,
           "half_fit": [0.6, 1.2, 2.2], "rank_sequence": [0, 1, 3]}  # fmt: skip
    claim = next(c for c in EXPERIMENT.claims if c.id == "S2S-1")
    assert claim.check(_fake([run])).verdict == "fail"
    assert claim.check(_fake([{**run, "initial_rank": 5}])).verdict == "inconclusive"


def test_shallow_slope_claim_fails_on_wrong_scaling():
    # t_i = ln(1/σ²)/s_i: twice the theory slope
    runs = [
        {"tag": f"L=2,{s2}", "depth": 2, "sigma2": s2,
         "half_fit": [math.log(1 / s2) / s for s in (10.0, 5.0, 2.5)]}
        for s2 in (1e-2, 1e-4, 1e-6)
    ]  # fmt: skip
    claim = next(c for c in EXPERIMENT.claims if c.id == "S2S-2")
    check = claim.check(_fake(runs))
    assert check.verdict == "fail"
    np.testing.assert_allclose(check.measured["slope"], [0.1, 0.2, 0.4])


def _gamma_run(
    gamma: float, width: int, rank: int, change: float, rmse: float, sv=(10.0, 5.0, 0.01)
) -> GammaRun:
    return GammaRun(
        gamma=gamma,
        width=width,
        sigma2=width**-gamma,
        tag=f"gamma={gamma:g},w={width}",
        steps=10,
        converged=True,
        train_loss=0.0,
        final_rank=rank,
        final_rank_eps=sum(v > 0.25 for v in sv),
        final_sv=tuple(sv),
        unobserved_change=change,
        unobserved_rmse=rmse,
        init_rmse=1.0,
    )


def _gamma_fake(runs: list[GammaRun]) -> Result:
    summary = Summary(target=(10.0, 5.0), rank_eps=0.25, depth_runs=(), gamma_runs=tuple(runs),
                      gamma_dim=20, gamma_target_rank=2, gamma_rank_eps=0.25)  # fmt: skip
    return Result(summary=summary, records=Records.empty())


def _claim(cid: str):
    return next(c for c in EXPERIMENT.claims if c.id == cid)


WIDTHS = (50, 200, 800, 3200)


def _lazy(change_at, rank: int = 19) -> list[GammaRun]:
    return [_gamma_run(0.5, w, rank, change_at(w), 1.0) for w in WIDTHS]


def _active(rank: int = 2, rmse: float = 0.3, sv=(10.0, 5.0, 0.01), gamma=3.0) -> list[GammaRun]:
    return [_gamma_run(gamma, w, rank, 0.9, rmse, sv) for w in WIDTHS]


def test_lazy_claim_tests_the_w_to_the_minus_half_drift():
    lazy = _claim("S2S-4")
    root = _lazy(lambda w: 2.5 / math.sqrt(w))  # 0.35 at w = 50, 0.044 at w = 3200
    check = lazy.check(_gamma_fake(root + _active()))
    assert check.verdict == "pass", check.headline
    assert check.measured["slope"] == pytest.approx(-0.5)
    assert check.measured["widest_change"] == pytest.approx(2.5 / math.sqrt(3200))
    flat = _lazy(lambda w: 0.05)  # small but not falling with w: not a finite-width drift
    assert lazy.check(_gamma_fake(flat + _active())).verdict == "fail"
    steep = _lazy(lambda w: 50.0 / w)  # slope −1
    assert lazy.check(_gamma_fake(steep + _active())).verdict == "fail"
    big = _lazy(lambda w: 10.0 / math.sqrt(w))  # right slope, 0.18 at w = 3200
    assert lazy.check(_gamma_fake(big + _active())).verdict == "fail"
    low_rank = _lazy(lambda w: 2.5 / math.sqrt(w), rank=9)  # rank < d/2
    assert lazy.check(_gamma_fake(low_rank + _active())).verdict == "fail"
    narrow = [r for r in root if r.width <= 200]  # needs a width >= 800 and 3 widths
    assert lazy.check(_gamma_fake(narrow)).verdict == "inconclusive"


def test_active_claim_counts_rank_against_the_target_not_s1():
    active = _claim("S2S-5")
    lazy = _lazy(lambda w: 2.5 / math.sqrt(w))
    # s_3 = 0.19: rank 3 at τ = 1e-2·s_1 = 0.1, Rank_ε = 2 at ε = 0.05·s_min(A*) = 0.25
    near = _active(rank=3, sv=(9.995, 4.87, 0.19))
    check = active.check(_gamma_fake(lazy + near))
    assert check.verdict == "pass", check.headline
    assert set(check.measured["final_rank_eps"].values()) == {2}
    third = _active(rank=3, sv=(9.9, 4.7, 0.4))  # a third mode above ε
    assert active.check(_gamma_fake(lazy + third)).verdict == "fail"
    weak = _active(rmse=0.6)  # RMSE ratio 0.6 >= 0.5
    assert active.check(_gamma_fake(lazy + weak)).verdict == "fail"
    unpaired = [r for r in lazy if r.width != 200] + _active()  # no lazy run at w = 200
    assert active.check(_gamma_fake(unpaired)).verdict == "inconclusive"


def test_active_claim_needs_a_small_init():
    """γ = 1.5 gives σ²w = w^{−1/2} = 0.14 at w = 50: not a small init, so not tested."""
    active = _claim("S2S-5")
    lazy = _lazy(lambda w: 2.5 / math.sqrt(w))
    check = active.check(_gamma_fake(lazy + _active(gamma=1.5)))
    assert check.verdict == "inconclusive"
    # the intermediate γ is reported next to the tested one
    both = active.check(_gamma_fake(lazy + _active(gamma=1.5, sv=(9, 4, 0.6)) + _active()))
    assert both.verdict == "pass"
    assert set(both.measured["untested_rank_eps"].values()) == {3}


def test_default_gamma_setup_is_lazy_and_small_init_where_the_claims_need_it():
    cfg = EXPERIMENT.preset("default").gamma
    g_active, g_lazy = max(cfg.gammas), min(cfg.gammas)
    assert g_lazy < 1 < g_active
    assert all(w ** (1 - g_active) <= 1e-3 for w in cfg.widths)  # σ²w = w^{1−γ}
    assert max(cfg.widths) >= 800
    k, d = len(cfg.target), cfg.dim
    assert round(cfg.observed * d * d) >= 3 * (2 * d * k - k * k)  # entries vs rank-k dof


def test_completion_stops_at_the_relative_tolerance_and_counts_rank_eps():
    """Independent reference: the target and mask are redrawn from the same seeded stream,
    and the stop loss and Rank_ε are recomputed from them and the logged spectrum."""
    from rankscope.experiments.linear._completion import gamma_transition
    from rankscope.experiments.linear._dln import observation_mask, planted_matrix

    cfg = GammaConfig(dim=8, observed=0.6, widths=(30,), gammas=(3.0,), max_steps=20_000)
    ctx = RunContext(seed=1)
    (run,) = gamma_transition(cfg, ctx)
    gen = RunContext(seed=1).child_generator(10_007)
    target, _, _ = planted_matrix(8, cfg.target, generator=gen)
    mask = observation_mask(8, 0.6, generator=gen)
    tol = cfg.rel_tol * 0.5 * float(target[mask].square().sum())
    assert run["converged"] and run["train_loss"] < tol
    assert run["steps"] < cfg.max_steps
    s = ctx.log.freeze().vector("sv_final", layer=run["tag"])
    assert run["final_rank_eps"] == int((s > 0.05 * min(cfg.target)).sum())
    np.testing.assert_allclose(run["final_sv"], s[: len(cfg.target) + 3])
    assert run["final_rank_eps"] == 2  # small init (σ²w = 30^−2) recovers the rank-2 target


def test_deep_slope_claim_fails_on_wrong_scaling():
    # t_1 ∝ σ^{-1} at L = 4 (theory σ^{-2})
    runs = [{"tag": f"L=4,{s2}", "depth": 4, "sigma2": s2, "half_fit": [s2**-0.5, 1.0, 2.0]}
            for s2 in (1e-2, 1e-3, 1e-4)]  # fmt: skip
    claim = next(c for c in EXPERIMENT.claims if c.id == "S2S-3")
    check = claim.check(_fake(runs))
    assert check.verdict == "fail"
    assert check.measured["slopes"]["L=4"]["slope"] == pytest.approx(-1.0)


def test_rank_sequence_claim_reads_unfinished_runs_as_prefixes():
    done = {"tag": "L=2,sigma2=1e-04", "depth": 2, "sigma2": 1e-4, "initial_rank": 0,
            "half_fit": [0.4, 0.8, 1.5], "rank_sequence": [0, 1, 2, 3]}  # fmt: skip
    partial = {**done, "tag": "L=4,sigma2=1e-04", "half_fit": [9.0, math.nan, math.nan]}
    claim = next(c for c in EXPERIMENT.claims if c.id == "S2S-1")
    assert claim.check(_fake([done, {**partial, "rank_sequence": [0, 1]}])).verdict == "pass"
    # an unfinished run that skipped a rank is not set aside
    assert claim.check(_fake([done, {**partial, "rank_sequence": [0, 2]}])).verdict == "fail"
    assert claim.check(_fake([{**partial, "rank_sequence": [0, 1]}])).verdict == "inconclusive"


def test_inversions_turn_smoke_passes_into_fails(smoke):
    for claim in EXPERIMENT.claims:
        if claim.check(smoke).verdict != "pass":
            continue
        bad = dataclasses.replace(smoke, summary=claim.invert(smoke.summary))
        assert claim.check(bad).verdict == "fail", claim.id


def test_gamma_config_is_nested_and_overridable():
    from rankscope.experiments.config import apply_overrides, config_keys

    assert "gamma.widths" in config_keys(Config)
    cfg = apply_overrides(Config(), {"gamma.widths": "50,100"})
    assert cfg.gamma.widths == (50, 100) and cfg.gamma.dim == 40
