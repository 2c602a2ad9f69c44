"""The claim checks of the tensor/graph experiments on synthetic summaries: each one passes on
the papers file's reference numbers and fails (or abstains) when its condition is inverted."""

from __future__ import annotations

import copy

import pytest

from rankscope.experiments.base import Result
from rankscope.experiments.registry import get_experiment
from rankscope.records import Records


def _claims(exp_id: str) -> dict:
    return {c.id: c for c in get_experiment(exp_id).claims}


def _verdict(exp_id: str, claim_id: str, summary: dict) -> str:
    res = Result(summary=summary, records=Records.empty())
    return _claims(exp_id)[claim_id].check(res).verdict


def _tc1_run(init: float, err: float, rank: int, rises: list[int]) -> dict:
    return {
        "init": init,
        "rel_error_unobserved": err,
        "learned_rank": rank,
        "top_norms": [17.6, 10.9, 9.1, 0.0, 0.0],
        "rise_steps": rises,
    }


@pytest.fixture
def tf() -> dict:
    """tensor_graph.md reference TC-1 table and TC-2 proposal, as a summary."""
    return {
        "target_rank": 3,
        "log_every": 100,
        "tc1": [
            _tc1_run(1e-1, 0.080, 5, [500, 500, 1500]),
            _tc1_run(1e-2, 0.002, 3, [500, 1000, 2000]),
            _tc1_run(1e-3, 1e-4, 3, [500, 1500, 3000]),
        ],
        "tc0": {"estimate": 1, "target_estimate": 1, "als_errors": {}, "rel_error_unobserved": 0},
        "tc2": {
            "original": {
                "ranks": [1, 2, 3, 5],
                "train_mse": [0.02] * 4,
                "test_mse": [0.03] * 4,
                "var_train": 0.35,
                "var_test": 0.35,
            },
            "shuffled_labels": {
                "ranks": [1, 3],
                "train_mse": [0.34, 0.3],
                "test_mse": [0.45, 0.5],
                "var_train": 0.36,
                "var_test": 0.36,
            },
        },
    }


def test_tensor_factorization_claims_pass_on_the_reference(tf):
    for cid in _claims("tensor-factorization"):
        assert _verdict("tensor-factorization", cid, tf) == "pass", cid


def test_tensor_factorization_claims_fail_when_inverted(tf):
    v = lambda cid, s: _verdict("tensor-factorization", cid, s)  # noqa: E731
    bad = copy.deepcopy(tf)
    bad["tc1"][2]["learned_rank"] = 4  # one spurious component
    assert v("TC-1-P1", bad) == "fail"
    bad = copy.deepcopy(tf)
    bad["tc1"][1]["rise_steps"] = [500, 500, 2000]  # a tie does not count
    assert v("TC-1-P2", bad) == "fail"
    assert v("TC-1-P2", {**tf, "log_every": 1000}) == "inconclusive"
    bad = copy.deepcopy(tf)
    bad["tc1"][2]["rel_error_unobserved"] = 0.01  # error(1e-3) > error(1e-2)
    assert v("TC-1-P3", bad) == "fail"
    assert v("TC-0", {**tf, "tc0": {**tf["tc0"], "estimate": 2}}) == "fail"
    bad = copy.deepcopy(tf)
    bad["tc2"]["original"]["train_mse"][2] = 0.2  # > 0.5·Var(y) at R = 3
    assert v("TC-2-natural", bad) == "fail"
    bad = copy.deepcopy(tf)
    bad["tc2"]["shuffled_labels"]["train_mse"][0] = 0.1  # rank 1 fits shuffled labels
    assert v("TC-2-shuffled", bad) == "fail"


@pytest.fixture
def htf() -> dict:
    def run(init, err, rises, erank):
        return {
            "init": init,
            "rel_error_unobserved": err,
            "rise_steps": rises,
            "top_local_norms": [3.3, 2.0],
            "erank_12|34": erank,
            "erank_13|24": 3.7,
        }

    def acc(gap, lam, a):
        return {"seed": 0, "gap": gap, "lambda": lam, "test_accuracy": a}

    return {
        "target_sv_12|34": [14.3, 7.2, 0.0],
        "htf1": [run(1e-1, 0.05, [200, 300], 3.0), run(1e-2, 0.006, [1000, 30100], 1.9)],
        "igc0": {
            "additive": {"igc": 1.0, "grid_rank": 2},
            "multiplicative": {"igc": 1.0, "grid_rank": 1},
            "interacting": {"igc": 0.78, "grid_rank": 3},
        },
        "igc1": {
            "runs": [acc(0, 0.0, 87.0), acc(24, 0.0, 69.0), acc(0, 1.0, 86.0), acc(24, 1.0, 75.0)],
            "receptive_field": 40,
            "widest_canvas": 40,
        },
    }


def test_htf_claims_pass_on_the_expected_outcome(htf):
    for cid in _claims("htf-locality"):
        assert _verdict("htf-locality", cid, htf) == "pass", cid


def test_htf_claims_fail_when_inverted(htf):
    v = lambda cid, s: _verdict("htf-locality", cid, s)  # noqa: E731
    bad = copy.deepcopy(htf)
    bad["htf1"][1]["rise_steps"] = [30100, 1000]  # order in time, not by final norm
    assert v("HTF-1-P1", bad) == "pass"
    bad["htf1"][1]["rise_steps"] = [1000, 1200]  # second rise < 1.5× the first
    assert v("HTF-1-P1", bad) == "fail"
    bad = copy.deepcopy(htf)
    bad["target_sv_12|34"] = [14.3, 0.0, 0.0]  # a rank-1 target: premise not met
    assert v("HTF-1-P1", bad) == "inconclusive"
    bad = copy.deepcopy(htf)
    bad["htf1"][1]["erank_12|34"] = 2.6
    assert v("HTF-1-P2", bad) == "fail"
    bad = copy.deepcopy(htf)
    bad["htf1"][1]["rel_error_unobserved"] = 0.06
    assert v("HTF-1-P3", bad) == "fail"
    bad = copy.deepcopy(htf)
    bad["igc0"]["additive"]["igc"] = 0.999
    assert v("IGC-0", bad) == "fail"
    bad = copy.deepcopy(htf)
    bad["igc1"]["runs"][1]["test_accuracy"] = 84.0  # only 3 points lost at the widest gap
    assert v("IGC-1-locality", bad) == "fail"
    bad["igc1"]["runs"][3]["test_accuracy"] = 86.0  # λ = 1 gains 2 points
    assert v("IGC-1-regularizer", bad) == "fail"
    bad = copy.deepcopy(htf)
    bad["igc1"]["receptive_field"] = 20  # the CNN cannot see both digits
    assert v("IGC-1-locality", bad) == "inconclusive"
    assert v("IGC-1-regularizer", bad) == "inconclusive"


@pytest.fixture
def gnn() -> dict:
    def grid(depth, alt, cont):
        return {
            "depth": depth,
            "alternating": alt,
            "contiguous": cont,
            "wi_alternating": 0,
            "wi_contiguous": 0,
        }

    return {
        "gnn0": {
            "figure_wi2": 48,
            "path_wi": [2, 6, 18],
            "one_wis_equal": 30,
            "fast_equals_naive": 30,
            "graphs": 30,
        },
        "gnn1": [grid(1, 3, 3), grid(2, 22, 17), grid(3, 9, 7)],
        "gnn2": {
            v: {"low_walk": [58.0, 60.0], "high_walk": [70.0, 72.0], "walk_index": {}}
            for v in ("two_cliques", "as_released")
        },
        "gnn3": {
            "levels": [0.3, 0.6, 0.9],
            "mean": {"random": [86.0, 79.0, 74.0], "1-wis": [87.0, 80.0, 70.0]},
            "none_removed": [90.0, 90.0],
        },
    }


def test_gnn_claims_pass_on_the_expected_outcome(gnn):
    for cid in _claims("gnn-walk-index"):
        assert _verdict("gnn-walk-index", cid, gnn) == "pass", cid


def test_gnn_claims_fail_when_inverted(gnn):
    v = lambda cid, s: _verdict("gnn-walk-index", cid, s)  # noqa: E731
    assert v("GNN-0", {**gnn, "gnn0": {**gnn["gnn0"], "figure_wi2": 47}}) == "fail"
    assert v("GNN-0", {**gnn, "gnn0": {**gnn["gnn0"], "one_wis_equal": 29}}) == "fail"
    bad = copy.deepcopy(gnn)
    bad["gnn1"][2]["contiguous"] = 9  # tie at L = 3
    assert v("GNN-1", bad) == "fail"
    assert v("GNN-1", {**gnn, "gnn1": gnn["gnn1"][:2]}) == "inconclusive"
    bad = copy.deepcopy(gnn)
    bad["gnn2"]["two_cliques"]["high_walk"] = [63.0, 64.0]  # +4.5 points only
    assert v("GNN-2", bad) == "fail"
    bad = copy.deepcopy(gnn)
    bad["gnn3"]["mean"]["1-wis"] = [85.0, 80.0, 70.0]  # one win of three
    assert v("GNN-3", bad) == "fail"


def test_gnn3_is_read_at_the_three_specified_levels(gnn):
    # nine levels (paper preset): wins at 0.1 and 0.2 must not stand in for 0.3/0.6/0.9
    levels = [round(0.1 * k, 1) for k in range(1, 10)]
    rnd = [90.0] * 9
    one = [95.0, 95.0, 85.0, 85.0, 85.0, 85.0, 85.0, 85.0, 95.0]
    bad = {
        **gnn,
        "gnn3": {"levels": levels, "mean": {"random": rnd, "1-wis": one}, "none_removed": [90.0]},
    }
    assert _verdict("gnn-walk-index", "GNN-3", bad) == "fail"
    missing = {**gnn, "gnn3": {**gnn["gnn3"], "levels": [0.2, 0.5, 0.8]}}
    assert _verdict("gnn-walk-index", "GNN-3", missing) == "inconclusive"
