"""The claim checks of the tensor/graph experiments on synthetic summaries: each one passes on
the papers file's reference numbers and fails (or abstains) when its condition is inverted."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from rankscope.experiments.base import Result
from rankscope.experiments.registry import get_experiment
from rankscope.experiments.tensor_graph import gnn_walk_index as gw
from rankscope.experiments.tensor_graph import htf_locality as hl
from rankscope.experiments.tensor_graph import tensor_factorization as tf_mod
from rankscope.records import Records


def _claims(exp_id: str) -> dict:
    return {c.id: c for c in get_experiment(exp_id).claims}


def _verdict(exp_id: str, claim_id: str, *summaries) -> str:
    """The claim's verdict on one summary per seed (per-seed checks see the first)."""
    results = [Result(summary=s, records=Records.empty(), seed=k) for k, s in enumerate(summaries)]
    claim = _claims(exp_id)[claim_id]
    if claim.across_seeds is not None:
        return claim.across_seeds(results).verdict
    assert len(results) == 1
    return claim.check(results[0]).verdict


def _headline(exp_id: str, claim_id: str, summary) -> str:
    claim = _claims(exp_id)[claim_id]
    res = Result(summary=summary, records=Records.empty())
    return (claim.check(res) if claim.check else claim.across_seeds([res])).headline


def _tc1_run(
    init: float, err: float, rank: int, rises, final_loss: float = 1e-8
) -> tf_mod.CompletionRun:
    return tf_mod.CompletionRun(
        init=init,
        rel_error_unobserved=err,
        top_norms=(17.6, 10.9, 9.1, 0.0, 0.0),
        learned_rank=rank,
        rise_steps=tuple(rises),
        steps=3000,
        final_loss=final_loss,
    )


def _digits(ranks, train, test, var) -> tf_mod.DigitsFit:
    return tf_mod.DigitsFit(
        ranks=tuple(ranks),
        train_mse=tuple(train),
        test_mse=tuple(test),
        var_train=var,
        var_test=var,
    )


def _with_tc1(s: tf_mod.Summary, i: int, **changes) -> tf_mod.Summary:
    runs = list(s.tc1)
    runs[i] = replace(runs[i], **changes)
    return replace(s, tc1=tuple(runs))


@pytest.fixture
def tf() -> tf_mod.Summary:
    """docs/results.md reference TC-1 table and TC-2 proposal, as a summary."""
    return tf_mod.Summary(
        target_rank=3,
        log_every=100,
        tc1=(
            _tc1_run(1e-1, 0.080, 5, [500, 500, 1500]),
            _tc1_run(1e-2, 0.002, 3, [500, 1000, 2000]),
            _tc1_run(1e-3, 1e-4, 3, [500, 1500, 3000]),
        ),
        observed_rms=1.0,
        tc0=tf_mod.RankOneFit(
            init=1e-3,
            estimate=1,
            target_estimate=1,
            als_errors={},
            als_failures=(),
            exhausted=False,
            rel_error_unobserved=0.0,
            steps=100,
        ),
        tc2=tf_mod.DigitsStudy(
            original=_digits([1, 2, 3, 5], [0.02] * 4, [0.03] * 4, 0.35),
            random_images=_digits([1, 3], [0.3, 0.2], [0.4, 0.5], 0.35),
            shuffled_labels=replace(
                _digits([1, 3], [0.34, 0.3], [0.45, 0.5], 0.36), var_train=0.36
            ),
        ),
        optimizer=tf_mod.OptimizerInfo("GroupRMSprop", 1e-2, 1e-8, True, 0.99),
    )


def test_tensor_factorization_claims_pass_on_the_reference(tf):
    for cid in _claims("tensor-factorization"):
        assert _verdict("tensor-factorization", cid, tf) == "pass", cid
        assert _headline("tensor-factorization", cid, tf).endswith("pass"), cid


def test_tensor_factorization_claims_fail_when_inverted(tf):
    v = lambda cid, s: _verdict("tensor-factorization", cid, s)  # noqa: E731
    bad = _with_tc1(tf, 2, learned_rank=4)  # one spurious component
    assert v("TC-1-P1", bad) == "fail"
    bad = _with_tc1(tf, 1, rise_steps=(500, 500, 2000))  # a tie does not count
    assert v("TC-1-P2", bad) == "fail"
    assert v("TC-1-P2", replace(tf, log_every=1000)) == "inconclusive"
    # rises are read in time order: the largest final component may rise second (seed 2 of
    # the default preset), but two rises at one logged step still fail
    assert v("TC-1-P2", _with_tc1(tf, 1, rise_steps=(1100, 300, 1600))) == "pass"
    assert v("TC-1-P2", _with_tc1(tf, 1, rise_steps=(1600, 300, 300))) == "fail"
    assert v("TC-1-P2", _with_tc1(tf, 1, rise_steps=(300, -1, 1600))) == "fail"  # never rose
    bad = _with_tc1(tf, 2, rel_error_unobserved=0.01)  # error(1e-3) > error(1e-2) + floor 1e-4
    assert v("TC-1-P3", bad) == "fail"
    assert v("TC-0", replace(tf, tc0=replace(tf.tc0, estimate=2))) == "fail"
    o = tf.tc2.original
    bad = replace(tf, tc2=replace(tf.tc2, original=replace(o, train_mse=(0.02, 0.02, 0.2, 0.02))))
    assert v("TC-2-natural", bad) == "fail"  # > 0.5·Var(y) at R = 3
    sh = tf.tc2.shuffled_labels
    bad = replace(tf, tc2=replace(tf.tc2, shuffled_labels=replace(sh, train_mse=(0.1, 0.3))))
    assert v("TC-2-shuffled", bad) == "fail"  # rank 1 fits shuffled labels


def test_tc1_p3_ties_below_the_error_floor(tf):
    v = lambda s: _verdict("tensor-factorization", "TC-1-P3", s)  # noqa: E731
    # seed 0 of the old default: 1e-3 worse than 1e-2 by 1.4e-3, inside a floor of √7e-6 = 2.6e-3
    near = _with_tc1(_with_tc1(tf, 1, rel_error_unobserved=8.8e-4, final_loss=7e-6), 2,
                     rel_error_unobserved=2.2e-3, final_loss=7e-6)  # fmt: skip
    assert v(near) == "pass"
    assert v(replace(near, observed_rms=3.0)) == "fail"  # floor 8.8e-4: now resolved, down
    # all three tied at the floor: no resolved step up, nothing shown
    flat = _with_tc1(near, 0, rel_error_unobserved=3e-3, final_loss=7e-6)
    assert v(flat) == "fail"
    # the largest init below the small ones beyond the floor
    assert v(_with_tc1(tf, 0, rel_error_unobserved=1e-3)) == "fail"


@pytest.fixture
def htf() -> hl.Summary:
    def run(init, err, rises, erank):
        return hl.HTCompletionRun(
            init=init,
            rel_error_unobserved=err,
            steps=40_000,
            final_loss=5e-5,
            top_local_norms=(3.3, 2.0),
            rise_steps=tuple(rises),
            erank_12_34=erank,
            erank_13_24=3.7,
        )

    def acc(gap, lam, a, val=math.nan):
        return hl.SameClassRun(
            gap=gap,
            lam=lam,
            test_accuracy=a,
            train_accuracy=100.0,
            receptive_field=40,
            val_accuracy=val,
        )

    return hl.Summary(
        target_root_rank=2,
        target_sv_12_34=(14.3, 7.2, 0.0),
        htf1=(run(5e-1, 0.5, [0, 100], 4.9), run(1e-2, 0.006, [1000, 30100], 1.9)),
        observed_rms=1.0,
        igc0=hl.IGC0Result(
            additive=hl.IGCValue(1.0, 2),
            multiplicative=hl.IGCValue(1.0, 1),
            interacting=hl.IGCValue(0.78, 3),
        ),
        igc1=hl.IGC1Result(
            runs=(
                acc(0, 0.0, 87.0),
                acc(24, 0.0, 69.0),
                acc(24, 0.01, 70.0, 71.0),
                acc(24, 1.0, 75.0, 76.0),
                acc(24, 0.1, 80.0, 74.0),
            ),
            receptive_field=40,
            widest_canvas=40,
            selected={"24": 1.0},
        ),
    )


def _with_htf1(s: hl.Summary, i: int, **changes) -> hl.Summary:
    runs = list(s.htf1)
    runs[i] = replace(runs[i], **changes)
    return replace(s, htf1=tuple(runs))


def _with_acc(s: hl.Summary, i: int, a: float) -> hl.Summary:
    runs = list(s.igc1.runs)
    runs[i] = replace(runs[i], test_accuracy=a)
    return replace(s, igc1=replace(s.igc1, runs=tuple(runs)))


def test_htf_claims_pass_on_the_expected_outcome(htf):
    for cid in _claims("htf-locality"):
        assert _verdict("htf-locality", cid, htf) == "pass", cid
        assert _headline("htf-locality", cid, htf).endswith("pass"), cid


def test_htf_claims_fail_when_inverted(htf):
    v = lambda cid, s: _verdict("htf-locality", cid, s)  # noqa: E731
    bad = _with_htf1(htf, 1, rise_steps=(30100, 1000))  # order in time, not by final norm
    assert v("HTF-1-P1", bad) == "pass"
    bad = _with_htf1(htf, 1, rise_steps=(1000, 1200))  # second rise < 1.5× the first
    assert v("HTF-1-P1", bad) == "fail"
    bad = replace(htf, target_sv_12_34=(14.3, 0.0, 0.0))  # a rank-1 target: premise not met
    assert v("HTF-1-P1", bad) == "inconclusive"
    assert v("HTF-1-P2", _with_htf1(htf, 1, erank_12_34=2.6)) == "fail"
    assert v("HTF-1-P3", _with_htf1(htf, 1, rel_error_unobserved=0.6)) == "fail"
    # 0.006 vs 0.012 at a floor √5e-5 = 7.1e-3: a tie, not a pass
    assert v("HTF-1-P3", _with_htf1(htf, 0, rel_error_unobserved=0.012)) == "fail"
    assert v("HTF-1-P3", replace(htf, htf1=htf.htf1[1:])) == "inconclusive"
    add = replace(htf.igc0.additive, igc=0.999)
    assert v("IGC-0", replace(htf, igc0=replace(htf.igc0, additive=add))) == "fail"
    bad = _with_acc(htf, 1, 84.0)  # only 3 points lost at the widest gap
    assert v("IGC-1-locality", bad) == "fail"
    bad = _with_acc(bad, 3, 86.0)  # the chosen λ = 1 gains 2 points
    assert v("IGC-1-regularizer", bad) == "fail"
    # λ = 0.1 has the best test accuracy but not the best validation accuracy: not read
    assert v("IGC-1-regularizer", _with_acc(htf, 3, 71.0)) == "fail"
    no_grid = replace(htf, igc1=replace(htf.igc1, selected={}))
    assert v("IGC-1-regularizer", no_grid) == "inconclusive"
    bad = replace(htf, igc1=replace(htf.igc1, receptive_field=20))  # cannot see both digits
    assert v("IGC-1-locality", bad) == "inconclusive"
    assert v("IGC-1-regularizer", bad) == "inconclusive"


def test_igc1_claims_read_the_mean_over_seeds(htf):
    # seed 0 loses 18 points with distance, seed 1 loses 2: the mean loss 10 >= 5 passes
    other = _with_acc(htf, 1, 85.0)
    assert _verdict("htf-locality", "IGC-1-locality", other) == "fail"
    assert _verdict("htf-locality", "IGC-1-locality", htf, other) == "pass"
    # the chosen λ = 1 gains 6 at seed 0; a seed where it loses 5 brings the mean to 0.5 < 3
    worse = _with_acc(htf, 3, 64.0)
    assert _verdict("htf-locality", "IGC-1-regularizer", htf, worse) == "fail"


@pytest.fixture
def gnn() -> gw.Summary:
    def grid(depth, alt, cont, side):
        return gw.GridRanks(
            depth=depth,
            alternating=alt,
            wi_alternating=0,
            contiguous=cont,
            wi_contiguous=0,
            side=side,
        )

    return gw.Summary(
        gnn0=gw.WalkIndexChecks(
            figure_wi2=48, path_wi=(2, 6, 18), graphs=30, one_wis_equal=30, fast_equals_naive=30
        ),
        gnn1=(grid(1, 2, 2, 8), grid(2, 64, 32, 64), grid(3, 1200, 1116, 1200)),
        gnn2={
            v: gw.SameClassGraph(low_walk=58.0, high_walk=70.0, low_walk_index=6, high_walk_index=9)
            for v in ("two_cliques", "as_released")
        },
        gnn3=gw.Sparsification(
            num_nodes=400,
            num_edges=1000,
            levels=(0.3, 0.6, 0.9),
            accuracy={"random": (86.0, 79.0, 74.0), "1-wis": (87.0, 80.0, 70.0)},
            none_removed=90.0,
        ),
    )


def _gnn2(s: gw.Summary, variant: str, **changes) -> gw.Summary:
    return replace(s, gnn2={**s.gnn2, variant: replace(s.gnn2[variant], **changes)})


def _gnn3(s: gw.Summary, **changes) -> gw.Summary:
    return replace(s, gnn3=replace(s.gnn3, **changes))


def test_gnn_claims_pass_on_the_expected_outcome(gnn):
    for cid in _claims("gnn-walk-index"):
        assert _verdict("gnn-walk-index", cid, gnn) == "pass", cid
        assert _headline("gnn-walk-index", cid, gnn).endswith("pass"), cid


def test_gnn_claims_fail_when_inverted(gnn):
    v = lambda cid, *s: _verdict("gnn-walk-index", cid, *s)  # noqa: E731
    assert v("GNN-0", replace(gnn, gnn0=replace(gnn.gnn0, figure_wi2=47))) == "fail"
    assert v("GNN-0", replace(gnn, gnn0=replace(gnn.gnn0, one_wis_equal=29))) == "fail"
    tie = replace(gnn.gnn1[2], alternating=1116)  # tie at L = 3
    assert v("GNN-1", replace(gnn, gnn1=(*gnn.gnn1[:2], tie))) == "fail"
    full = replace(gnn.gnn1[2], side=1116)  # contiguous rank fills the grid: cannot order
    assert v("GNN-1", replace(gnn, gnn1=(*gnn.gnn1[:2], full))) == "inconclusive"
    assert v("GNN-1", replace(gnn, gnn1=gnn.gnn1[:2])) == "inconclusive"
    # +4.5 points only (seeds 63 and 64 against 58 and 60)
    s0 = _gnn2(gnn, "two_cliques", high_walk=63.0)
    s1 = _gnn2(gnn, "two_cliques", low_walk=60.0, high_walk=64.0)
    assert v("GNN-2", s0, s1) == "fail"
    assert v("GNN-2", gnn, _gnn2(gnn, "two_cliques", low_walk=60.0, high_walk=72.0)) == "pass"
    one_win = {**gnn.gnn3.accuracy, "1-wis": (85.0, 80.0, 70.0)}  # one win of three
    assert v("GNN-3", _gnn3(gnn, accuracy=one_win)) == "fail"


def test_gnn_claims_read_the_mean_over_seeds(gnn):
    # GNN-2: +10 and +0 points average to +5 (pass); +9 and +0 to +4.5 (fail)
    even = _gnn2(gnn, "two_cliques", high_walk=58.0)
    assert _verdict("gnn-walk-index", "GNN-2", _gnn2(gnn, "two_cliques", high_walk=68.0)) == "pass"
    assert _verdict("gnn-walk-index", "GNN-2", _gnn2(gnn, "two_cliques", high_walk=68.0), even) == (
        "pass"
    )
    assert _verdict("gnn-walk-index", "GNN-2", _gnn2(gnn, "two_cliques", high_walk=67.0), even) == (
        "fail"
    )
    # GNN-3: seed 1 loses every level by 3 points; the mean of the two seeds wins only at 30 %
    lose = {**gnn.gnn3.accuracy, "1-wis": (83.0, 76.0, 71.0)}
    assert _verdict("gnn-walk-index", "GNN-3", gnn, _gnn3(gnn, accuracy=lose)) == "fail"


def test_gnn3_is_read_at_the_three_specified_levels(gnn):
    # nine levels (paper preset): wins at 0.1 and 0.2 must not stand in for 0.3/0.6/0.9
    levels = tuple(round(0.1 * k, 1) for k in range(1, 10))
    rnd = (90.0,) * 9
    one = (95.0, 95.0, 85.0, 85.0, 85.0, 85.0, 85.0, 85.0, 95.0)
    bad = _gnn3(gnn, levels=levels, accuracy={"random": rnd, "1-wis": one})
    assert _verdict("gnn-walk-index", "GNN-3", bad) == "fail"
    missing = _gnn3(gnn, levels=(0.2, 0.5, 0.8))
    assert _verdict("gnn-walk-index", "GNN-3", missing) == "inconclusive"


@pytest.mark.parametrize("exp_id", ["tensor-factorization", "htf-locality", "gnn-walk-index"])
def test_every_per_seed_claim_inverts_to_a_fail(exp_id, tf, htf, gnn):
    # claims over seeds (across_seeds=) carry no invert (the shared tester needs check=);
    # their wrong-way cases are the explicit ones above
    reference = {"tensor-factorization": tf, "htf-locality": htf, "gnn-walk-index": gnn}[exp_id]
    for cid, claim in _claims(exp_id).items():
        if claim.across_seeds is not None:
            assert claim.invert is None, cid
            continue
        assert claim.invert is not None, cid
        assert _verdict(exp_id, cid, claim.invert(reference)) == "fail", cid


def test_select_lambda_reads_validation_not_test():
    def row(lam, test, val):
        return hl.SameClassRun(24, lam, test, 100.0, 40, val)

    runs = [row(0.0, 60.0, 99.0), row(0.01, 90.0, 70.0), row(0.1, 70.0, 80.0), row(1.0, 65.0, 80.0)]
    assert hl.select_lambda(runs, 24) == 0.1  # best validation (a tie: the smaller λ), λ = 0 out
    assert hl.select_lambda(runs, 0) is None
    assert hl.select_lambda([row(0.1, 70.0, math.nan)], 24) is None
