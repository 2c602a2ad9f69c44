"""Collapse-family claim checks on hand-made results: each can pass, fail or be inconclusive."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from rankscope.experiments.collapse import feng_claims, galanti_claims, nrc_claims
from rankscope.records import RecordLog
from rankscope.results import Result


def _layer(name, tail=0.01, rank=10, resid=0.01, holds=True, s_k1=0.1, bound=1.0):
    return {
        "layer": name,
        "rel_tail": tail,
        "ranks": {"rel_1e-2": rank},
        "relative_residual": resid,
        "holds": holds,
        "s_k1": s_k1,
        "bound_op": bound,
        "nc_prev": {"tcv1": 1.0},
    }


def _run(lam, tails=(0.1, 0.1), ranks=(20, 20), resid=0.01, acc=1.0, holds=True):
    layers = [
        _layer("W1", holds=holds),
        _layer("W2", tails[0], ranks[0], resid),
        _layer("W3", tails[1], ranks[1], resid),
        _layer("W4"),
    ]
    return {
        "lam": lam,
        "tag": f"x/lam={lam:g}",
        "train_acc": acc,
        "train_ce": 0.1,
        "layers": layers,
    }


def _nrc(lbfgs=(), adam=(), gmm=(), overlap=()):
    return Result(
        summary={
            "K": 10,
            "gmm_K": 5,
            "protocols": {"lbfgs": list(lbfgs), "adam": list(adam)},
            "gmm": list(gmm),
            "gmm_overlap": list(overlap),
        }
    )


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
    gmm = [{**_run(1e-2, holds=True), "spread": s} for s in (0.0, 1.0)]
    for g in gmm:
        g["layers"][0]["ranks"]["rel_1e-2"] = 5
    assert nrc_claims.nrc2(_nrc(gmm=gmm)).verdict == "pass"
    gmm[0]["layers"][0]["ranks"]["rel_1e-2"] = 6
    assert nrc_claims.nrc2(_nrc(gmm=gmm)).verdict == "fail"
    over = [{**_run(1e-2), "spread": s} for s in (0.5, 1.0)]
    over[0]["layers"][0]["rel_tail"], over[1]["layers"][0]["rel_tail"] = 0.2, 0.1
    assert nrc_claims.nrc2b(_nrc(overlap=over)).verdict == "fail"


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.integers(0, 4, 18).astype(float)
        b = rng.choice([4, 32, 256], 18).astype(float)
        assert galanti_claims.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert math.isnan(galanti_claims.spearman([3, 3, 3], [1, 2, 3]))


def _grid(rank_fn, acc_fn=lambda b, mu, wd: 0.97):
    runs = []
    for b in (4, 32, 256):
        for mu in (0.05, 0.2):
            for wd in (0.0, 1e-3, 5e-3):
                runs.append(
                    {
                        "batch_size": b,
                        "lr": mu,
                        "lr_used": mu,
                        "weight_decay": wd,
                        "tag": f"B={b},lr={mu},wd={wd}",
                        "rank": {"W1": rank_fn(b, mu, wd)},
                        "full_rank": {"W1": 100},
                        "test_acc": acc_fn(b, mu, wd),
                    }
                )
    return Result(summary={"runs": runs, "layers": ["W1"]})


def test_galanti_correlations_pass_fail_and_flat():
    by_batch = _grid(lambda b, mu, wd: int(np.log2(b)) * 10)  # ρ_B = 1, ρ_μ = ρ_λ = 0
    assert galanti_claims.rank_vs_batch(by_batch).verdict == "pass"
    assert galanti_claims.rank_vs_lr(by_batch).verdict == "fail"
    assert galanti_claims.rank_vs_wd(by_batch).verdict == "fail"
    by_decay = _grid(lambda b, mu, wd: 100 - int(1e4 * wd) - int(10 * mu))
    assert galanti_claims.rank_vs_wd(by_decay).verdict == "pass"
    assert galanti_claims.rank_vs_lr(by_decay).measured["spearman"]["W1"] == pytest.approx(
        spearmanr(
            [r["rank"]["W1"] for r in by_decay.summary["runs"]],
            [r["lr"] for r in by_decay.summary["runs"]],
        ).statistic
    )
    flat = galanti_claims.rank_vs_batch(_grid(lambda b, mu, wd: 100))
    assert flat.verdict == "fail" and "constant" in flat.note
    assert galanti_claims.no_decay(by_decay).verdict == "pass"
    assert galanti_claims.no_decay(_grid(lambda b, mu, wd: 50)).verdict == "fail"


def test_galanti_accuracy_gap():
    res = _grid(lambda b, mu, wd: 50, acc_fn=lambda b, mu, wd: 0.97 - (0.05 if wd == 5e-3 else 0))
    c = galanti_claims.accuracy(res)
    assert c.verdict == "fail" and c.measured["max_gap"] == pytest.approx(0.05)
    assert galanti_claims.accuracy(_grid(lambda b, mu, wd: 50)).verdict == "pass"


def _feng(table: np.ndarray, tag="init/bottleneck", feng_offset=0) -> Result:
    log = RecordLog()
    for depth, row in enumerate(table):
        for b, v in enumerate(row):
            log.log("jac_rank_torch", v, step=depth, layer=tag, index=b)
            log.log("jac_rank_feng", v + feng_offset, step=depth, layer=tag, index=b)
    log.log_vector("violation_sv", [1.0, 0.5, 1e-15], step=1, layer=f"{tag}/input=0")
    log.log_vector("violation_sv", [1.0, 0.5, 0.3], step=2, layer=f"{tag}/input=0")
    summary = {
        "networks": [{"tag": tag, "median_rank_torch": []}],
        "bottleneck_width": 8,
        "bottleneck_depth": 1,
    }
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
