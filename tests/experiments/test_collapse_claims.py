"""Collapse-family claim checks on hand-made results: each can pass, fail or be inconclusive."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import binomtest, spearmanr

from rankscope.experiments.collapse import feng_claims, galanti_claims, nrc_claims
from rankscope.experiments.collapse.bounds import LayerBound
from rankscope.experiments.collapse.measure import CollapseStats, LayerMeasure
from rankscope.experiments.collapse.neural_rank_collapse import Summary as NRCSummary
from rankscope.experiments.collapse.nrc_runs import NetworkRun
from rankscope.experiments.collapse.rank_diminishing import NetworkRanks
from rankscope.experiments.collapse.rank_diminishing import Summary as FengSummary
from rankscope.experiments.collapse.sgd_weight_decay_rank import GridRun
from rankscope.experiments.collapse.sgd_weight_decay_rank import Summary as GalantiSummary
from rankscope.records import RecordLog
from rankscope.results import Result


def _layer(name, tail=0.01, rank=10, resid=0.01, holds=True, s_k1=0.1, bound=1.0):
    b = LayerBound(
        s1=1.0,
        s_k1=s_k1,
        d_k_fro=0.1 if holds else 5.0,  # above bound_fro = 1: the Frobenius inequality fails
        fro=1.0,
        residual_op=resid,
        residual_fro=resid,
        variability_op=bound - resid,
        variability_fro=1.0 - resid,
        bound_op=bound,
        bound_fro=1.0,
        tcv_bound=1.0,
    )
    nc = CollapseStats(1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    return LayerMeasure(name, (10, 10), {"rel_1e-2": rank}, 5.0, tail, b, math.nan, nc)


def _run(lam, tails=(0.1, 0.1), ranks=(20, 20), resid=0.01, acc=1.0, holds=True, k=10, **kw):
    layers = [
        _layer("W1", holds=holds, rank=kw.pop("rank_w1", 10), tail=kw.pop("tail_w1", 0.01)),
        _layer("W2", tails[0], ranks[0], resid),
        _layer("W3", tails[1], ranks[1], resid),
        _layer("W4"),
    ]
    return NetworkRun(
        lam=lam,
        tag=f"x/lam={lam:g}",
        num_classes=k,
        train_acc=acc,
        train_ce=0.1,
        layers=layers,
        **kw,
    )


def _nrc(lbfgs=(), adam=(), gmm=(), overlap=()):
    summary = NRCSummary(
        K=10,
        n_train=100,
        data="",
        objective="",
        nrank="",
        global_mean="sample",
        lbfgs=list(lbfgs),
        adam=list(adam),
        gmm=list(gmm),
        gmm_overlap=list(overlap),
    )
    return Result(summary=summary)


def _inverted(result: Result, invert) -> Result:
    return dataclasses.replace(result, summary=invert(result.summary))


def test_p1_fails_on_one_violation():
    ok = _nrc(lbfgs=[_run(1e-3), _run(1e-2)])
    bad = _nrc(lbfgs=[_run(1e-3), _run(1e-2, holds=False)])
    assert nrc_claims.p1(ok).verdict == "pass"
    c = nrc_claims.p1(bad)
    assert c.verdict == "fail" and c.measured["violations"] == ["x/lam=0.01/W1"]
    assert nrc_claims.p1(_nrc()).verdict == "inconclusive"


def test_p3_prime_and_p3_compare_tails():
    adam = [_run(1e-4, tails=(0.5, 0.5)), _run(1e-3, (0.1, 0.1)), _run(1e-2, (0.02, 0.06))]
    assert nrc_claims.p3_prime(_nrc(adam=adam)).verdict == "pass"
    c = nrc_claims.p3(_nrc(adam=adam))  # W2 falls 25×, W3 only 8.3×
    assert c.verdict == "fail" and c.measured["fall_factor"]["W3"] == pytest.approx(0.5 / 0.06)
    flat = [_run(1e-3, (0.1, 0.1)), _run(1e-2, (0.1, 0.05))]
    assert nrc_claims.p3_prime(_nrc(lbfgs=flat)).verdict == "fail"
    untrained = [_run(1e-3, acc=0.2), _run(1e-2, acc=0.2)]
    assert nrc_claims.p3_prime(_nrc(adam=untrained)).verdict == "inconclusive"


def test_p5_needs_near_critical_points():
    good = [_run(1e-3, ranks=(12, 9)), _run(1e-2, ranks=(11, 7))]
    assert nrc_claims.p5(_nrc(lbfgs=good)).verdict == "pass"
    high = [_run(1e-3, ranks=(12, 11)), _run(1e-2, ranks=(11, 7))]
    assert nrc_claims.p5(_nrc(lbfgs=high)).verdict == "fail"
    far = [_run(1e-3, ranks=(12, 9), resid=0.3)]
    assert nrc_claims.p5(_nrc(lbfgs=far)).verdict == "inconclusive"


def test_p2_strict_decrease_and_k_plus_two():
    runs = [_run(lam, ranks=(r, r)) for lam, r in [(1e-4, 60), (1e-3, 40), (3e-3, 20), (1e-2, 12)]]
    assert nrc_claims.p2(_nrc(adam=runs)).verdict == "pass"
    runs[-1] = _run(1e-2, ranks=(12, 13))  # W3 = 13 > K + 2
    assert nrc_claims.p2(_nrc(adam=runs)).verdict == "fail"
    runs[-1] = _run(1e-2, ranks=(20, 12))  # W2 ties at 20: not strictly decreasing
    assert nrc_claims.p2(_nrc(adam=runs)).verdict == "fail"


def test_nrc2_and_nrc2b():
    gmm = [_run(1e-2, holds=True, k=5, rank_w1=5, spread=s) for s in (0.0, 1.0)]
    assert nrc_claims.nrc2(_nrc(gmm=gmm)).verdict == "pass"
    gmm[0] = _run(1e-2, holds=True, k=5, rank_w1=6, spread=0.0)
    assert nrc_claims.nrc2(_nrc(gmm=gmm)).verdict == "fail"
    over = [_run(1e-2, spread=s, tail_w1=t) for s, t in ((0.5, 0.2), (1.0, 0.1))]
    assert nrc_claims.nrc2b(_nrc(overlap=over)).verdict == "fail"
    rising = [_run(1e-2, spread=s, tail_w1=t) for s, t in ((0.5, 0.1), (1.0, 0.2))]
    assert nrc_claims.nrc2b(_nrc(overlap=rising)).verdict == "pass"


def test_every_nrc_claim_passes_on_a_good_summary_and_fails_inverted():
    """A summary that passes every claim; each claim's inversion turns its pass into a fail."""
    lbfgs = [_run(1e-3, (0.1, 0.1), (12, 9)), _run(1e-2, (0.01, 0.01), (11, 7))]
    lams_ranks = [(1e-4, 60, 0.5), (1e-3, 40, 0.1), (3e-3, 20, 0.05), (1e-2, 12, 0.01)]
    adam = [_run(lam, (t, t), (r, r)) for lam, r, t in lams_ranks]
    gmm = [_run(1e-2, k=5, rank_w1=5, spread=s) for s in (0.0, 1.0)]
    over = [_run(1e-2, spread=s, tail_w1=t) for s, t in ((0.5, 0.1), (1.0, 0.2))]
    good = _nrc(lbfgs=lbfgs, adam=adam, gmm=gmm, overlap=over)
    claims = {
        "P1": (nrc_claims.p1, nrc_claims.invert_p1),
        "P3'": (nrc_claims.p3_prime, nrc_claims.invert_p3_prime),
        "P5": (nrc_claims.p5, nrc_claims.invert_p5),
        "P3": (nrc_claims.p3, nrc_claims.invert_p3),
        "P2": (nrc_claims.p2, nrc_claims.invert_p2),
        "NRC-2": (nrc_claims.nrc2, nrc_claims.invert_nrc2),
        "NRC-2b": (nrc_claims.nrc2b, nrc_claims.invert_nrc2b),
    }
    for name, (fn, invert) in claims.items():
        c = fn(good)
        assert c.verdict == "pass", (name, c.headline)
        assert c.headline.endswith("→ pass") and "\n" not in c.headline, c.headline
        bad = fn(_inverted(good, invert))
        assert bad.verdict == "fail", (name, bad.headline)
        assert "fail" in bad.headline, bad.headline


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 4, 18).astype(float)
        b = rng.choice([4, 32, 256], 18).astype(float)
        assert galanti_claims.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert math.isnan(galanti_claims.spearman([3, 3, 3], [1, 2, 3]))


def _grid(rank_fn, acc_fn=lambda b, mu, wd: 0.97, seed=0, lr_used=lambda b, mu, wd: mu):
    runs = []
    for b in (4, 32, 256):
        for mu in (0.05, 0.2):
            for wd in (0.0, 1e-3, 5e-3):
                runs.append(
                    GridRun(
                        batch_size=b,
                        lr=mu,
                        lr_used=lr_used(b, mu, wd),
                        weight_decay=wd,
                        torch_weight_decay=2 * wd,
                        status="completed",
                        steps=1,
                        epochs=1.0,
                        decay=10.0 if wd > 0 else 0.0,
                        tag=f"B={b},lr={mu},wd={wd}",
                        rank={"W1": rank_fn(b, mu, wd)},
                        stable_rank={"W1": rank_fn(b, mu, wd) / 10},
                        full_rank={"W1": 100},
                        test_acc=acc_fn(b, mu, wd),
                    )
                )
    return Result(
        seed=seed,
        summary=GalantiSummary(
            runs=runs, decay_convention="", rank_preset="galanti", layers=["W1"], data=""
        ),
    )


def _seeds(rank_fn, n=3, **kw):
    return [_grid(rank_fn, seed=s, **kw) for s in range(n)]


def test_sign_test_p_matches_scipy_binomtest():
    for n in (0, 1, 5, 12, 18, 24):
        for k in range(n + 1):
            ref = binomtest(k, n, 0.5, alternative="greater").pvalue if n else 1.0
            assert galanti_claims.sign_test_p(k, n) == pytest.approx(ref, rel=1e-12)
    with pytest.raises(ValueError):
        galanti_claims.sign_test_p(5, 4)
    with pytest.raises(TypeError):
        galanti_claims.sign_test_p(2.0, 4)


def test_matched_pairs_differ_in_one_factor_and_leave_out_no_decay():
    res = _seeds(lambda b, mu, wd: 50)
    for knob, per_seed in (("batch_size", 8), ("lr", 6), ("weight_decay", 6)):
        pairs, same = galanti_claims.matched_pairs(res, knob)
        assert len(pairs) == 3 * per_seed and same == 0  # consecutive levels, λ > 0 only
        for _, lo, hi in pairs:
            assert lo.weight_decay > 0 and hi.weight_decay > 0
            diff = [
                k for k in ("batch_size", "lr", "weight_decay") if getattr(lo, k) != getattr(hi, k)
            ]
            assert diff == [knob]
        if knob == "batch_size":
            assert all(lo.batch_size < hi.batch_size for _, lo, hi in pairs)
        else:
            assert all(getattr(lo, knob) > getattr(hi, knob) for _, lo, hi in pairs)
    # a halving that leaves both runs at the same μ: the pair is left out, not counted
    halved = _seeds(lambda b, mu, wd: 50, lr_used=lambda b, mu, wd: 0.05 if b == 4 else mu)
    pairs, same = galanti_claims.matched_pairs(halved, "lr")
    assert len(pairs) == 3 * 4 and same == 3 * 2


def test_galanti_sign_tests_pass_fail_ties_and_too_few_pairs():
    by_batch = _seeds(lambda b, mu, wd: int(np.log2(b)) * 10)  # only B matters
    c = galanti_claims.rank_vs_batch(by_batch)
    assert c.verdict == "pass" and c.measured["counts"]["W1"]["predicted"] == 24
    assert c.measured["p_value"]["W1"] == pytest.approx(2.0**-24)
    assert c.measured["stable_rank_lower_where_predicted"]["W1"] == 24
    for fn in (galanti_claims.rank_vs_lr, galanti_claims.rank_vs_wd):  # all tied: fail
        tied = fn(by_batch)
        assert tied.verdict == "fail" and tied.measured["counts"]["W1"]["tied"] == 18
    by_decay = _seeds(lambda b, mu, wd: 100 - int(1e4 * wd) - int(10 * mu))
    assert galanti_claims.rank_vs_wd(by_decay).verdict == "pass"
    assert galanti_claims.rank_vs_lr(by_decay).verdict == "pass"
    assert galanti_claims.rank_vs_batch(by_decay).verdict == "fail"
    # 13 of 18 λ pairs the predicted way, 5 tied: p = P(Bin(18, 1/2) ≥ 13) = 0.048 < 0.05;
    # 12 of 18 (p = 0.119) fails: ties count against the claim
    for k, verdict in ((13, "pass"), (12, "fail")):
        lucky = {(s, b, mu) for s in range(3) for b in (4, 32, 256) for mu in (0.05, 0.2)}
        lucky = set(sorted(lucky)[:k])
        res = [
            _grid(lambda b, mu, wd, s=s, L=lucky: 50 - (wd == 5e-3 and (s, b, mu) in L), seed=s)
            for s in range(3)
        ]
        c = galanti_claims.rank_vs_wd(res)
        assert c.verdict == verdict, c.headline
        assert c.measured["p_value"]["W1"] == pytest.approx(
            binomtest(k, 18, 0.5, alternative="greater").pvalue
        )
        assert c.measured["p_value_ties_dropped"]["W1"] == pytest.approx(2.0**-k)
    # one seed of the λ test: 6 pairs, so 6/6 gives p = 1/64; two pairs cannot reach α
    assert galanti_claims.rank_vs_wd(by_decay[:1]).verdict == "pass"
    few = [
        dataclasses.replace(r, summary=dataclasses.replace(r.summary, runs=r.summary.runs[:6]))
        for r in by_decay[:1]
    ]
    assert galanti_claims.rank_vs_wd(few).verdict == "inconclusive"


def test_galanti_no_decay_and_accuracy():
    by_decay = _grid(lambda b, mu, wd: 100 - int(1e4 * wd) - int(10 * mu))
    assert galanti_claims.no_decay(by_decay).verdict == "pass"
    assert galanti_claims.no_decay(_grid(lambda b, mu, wd: 50)).verdict == "fail"
    res = _grid(lambda b, mu, wd: 50, acc_fn=lambda b, mu, wd: 0.97 - (0.05 if wd == 5e-3 else 0))
    c = galanti_claims.accuracy(res)
    assert c.verdict == "fail" and c.measured["max_gap"] == pytest.approx(0.05)
    assert galanti_claims.accuracy(_grid(lambda b, mu, wd: 50)).verdict == "pass"


def test_galanti_claims_pass_on_their_effect_and_fail_inverted():
    """Each claim passes on grids (3 seeds) showing its effect alone and fails inverted."""
    claims = {
        "GAL-B": (galanti_claims.rank_vs_batch, galanti_claims.invert_rank_vs_batch),
        "GAL-lr": (galanti_claims.rank_vs_lr, galanti_claims.invert_rank_vs_lr),
        "GAL-wd": (galanti_claims.rank_vs_wd, galanti_claims.invert_rank_vs_wd),
    }
    grids = {
        "GAL-B": lambda b, mu, wd: int(10 * np.log2(b)),
        "GAL-lr": lambda b, mu, wd: 100 - int(100 * mu),
        "GAL-wd": lambda b, mu, wd: 100 - int(1e4 * wd),
    }
    for name, (fn, invert) in claims.items():
        good = _seeds(grids[name])
        c = fn(good)
        assert c.verdict == "pass", (name, c.headline)
        assert c.headline.endswith("→ pass"), c.headline
        bad = fn([_inverted(r, invert) for r in good])
        assert bad.verdict == "fail", (name, bad.headline)
    per_seed = {
        "GAL-noWD": (galanti_claims.no_decay, galanti_claims.invert_no_decay),
        "GAL-acc": (galanti_claims.accuracy, galanti_claims.invert_accuracy),
    }
    for name, (fn, invert) in per_seed.items():
        good = _grid(lambda b, mu, wd: 95)
        assert fn(good).verdict == "pass" and fn(good).headline.endswith("→ pass")
        assert fn(_inverted(good, invert)).verdict == "fail", name


def _feng(table: np.ndarray, tag="init/bottleneck", feng_offset=0) -> Result:
    log = RecordLog()
    for depth, row in enumerate(table):
        for b, v in enumerate(row):
            log.log("jac_rank_torch", v, step=depth, layer=tag, index=b)
            log.log("jac_rank_feng", v + feng_offset, step=depth, layer=tag, index=b)
    log.log_vector("violation_sv", [1.0, 0.5, 1e-15], step=1, layer=f"{tag}/input=0")
    log.log_vector("violation_sv", [1.0, 0.5, 0.3], step=2, layer=f"{tag}/input=0")
    net = NetworkRanks(
        tag=tag,
        dims=[],
        trained=False,
        ranks_torch=table.tolist(),
        ranks_feng=(table + feng_offset).tolist(),
        median_rank_torch=[],
        max_rank_torch=[],
        median_rank_feng=[],
        rises=[],
        n_rises=0,
    )
    summary = FengSummary(
        networks=[net], bottleneck_width=8, bottleneck_depth=1, n_inputs=2, jacobian_dtype=""
    )
    return Result(summary=summary, records=log.freeze())


def test_feng_claims_catch_a_rise_a_leaky_bottleneck_and_feng_above_torch():
    good = np.array([[64, 64], [8, 7], [5, 7], [5, 6]])
    assert feng_claims.monotone(_feng(good)).verdict == "pass"
    assert feng_claims.bottleneck(_feng(good)).verdict == "pass"
    assert feng_claims.feng_below_torch(_feng(good, feng_offset=-1)).verdict == "pass"
    rise = np.array([[64, 64], [2, 7], [3, 7], [3, 6]])
    c = feng_claims.monotone(_feng(rise))
    assert c.verdict == "fail"
    (entry,) = c.measured["rises"]["init/bottleneck"]
    assert entry["depth"] == 2 and entry["ranks"] == [2, 3]
    assert entry["s/s1 near cut, depth 1"] == [1.0, 0.5, 1e-15]
    leaky = np.array([[64, 64], [8, 7], [9, 7], [5, 6]])
    assert feng_claims.bottleneck(_feng(leaky)).verdict == "fail"
    assert feng_claims.feng_below_torch(_feng(good, feng_offset=1)).verdict == "fail"


def test_feng_claims_fail_inverted():
    good = _feng(np.array([[64, 64], [8, 7], [5, 7], [5, 6]]), feng_offset=-1)
    claims = (
        (feng_claims.monotone, feng_claims.invert_monotone),
        (feng_claims.bottleneck, feng_claims.invert_bottleneck),
        (feng_claims.feng_below_torch, feng_claims.invert_feng_below_torch),
    )
    for fn, invert in claims:
        assert fn(good).verdict == "pass" and fn(good).headline.endswith("→ pass")
        bad = fn(_inverted(good, invert))
        assert bad.verdict == "fail" and "fail" in bad.headline, bad.headline
