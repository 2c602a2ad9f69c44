"""The runner: skip finished runs, divergence, ensembles vs per-member runs, determinism."""

from __future__ import annotations

import dataclasses
import re
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool

import pytest

from rankscope.experiments.base import Claim, RunContext, check
from rankscope.experiments.claims import ClaimError, evaluate_claim
from rankscope.experiments.registry import get_experiment
from rankscope.results import Result
from rankscope.store import Store
from rankscope.sweep.runner import make_jobs, reproduce, run_experiment, run_jobs

FAST = ["max_time=4", "lr=0.01"]


def test_rerun_skips_finished(tmp_path):
    st = Store(tmp_path)
    events = []
    ids = run_experiment(
        "scalar-mode",
        preset="smoke",
        seeds=2,
        store=st,
        overrides=FAST,
        on_event=lambda k, i: events.append((k, i)),
    )
    created = {r.run_id: r.created for r in st.runs()}
    events.clear()
    ids2 = run_experiment(
        "scalar-mode",
        preset="smoke",
        seeds=2,
        store=st,
        overrides=FAST,
        on_event=lambda k, i: events.append((k, i)),
    )
    assert ids == ids2
    assert events[0] == ("plan", {"total": 2, "cached": 2})
    assert not [e for e in events if e[0] == "done"]
    assert {r.run_id: r.created for r in st.runs()} == created


def test_same_seed_identical_and_seeds_differ(tmp_path):
    exp = get_experiment("scalar-mode")
    cfg = exp.preset("smoke")
    a = exp.run(cfg, RunContext(seed=3))
    b = exp.run(cfg, RunContext(seed=3))
    c = exp.run(cfg, RunContext(seed=4))
    assert a.summary == b.summary
    assert (a.records.value == b.records.value).all()
    assert a.summary.a0 != c.summary.a0


def test_ensemble_equals_per_member_runs():
    exp = get_experiment("scalar-mode")
    cfg = exp.preset("smoke")
    ctxs = [RunContext(seed=s) for s in range(3)]
    together = exp.run_many([cfg] * 3, ctxs)
    for s, r in enumerate(together):
        alone = exp.run(cfg, RunContext(seed=s))
        assert dataclasses.asdict(r.summary) == pytest.approx(
            dataclasses.asdict(alone.summary), rel=1e-12
        )


def test_divergence_is_recorded_and_others_go_on(tmp_path):
    st = Store(tmp_path)
    exp = get_experiment("scalar-mode")
    good = make_jobs(exp, exp.preset("smoke"), [0], "t")
    from rankscope.experiments.config import apply_overrides

    bad_cfg = apply_overrides(exp.preset("smoke"), ["lr=10", "max_time=1000"])
    bad = make_jobs(exp, bad_cfg, [0, 1], "t")
    run_jobs(bad + good, st)
    statuses = {r.run_id: (r.status, r.diverged_step) for r in st.runs()}
    assert statuses[good[0].run_id] == ("ok", None)
    for j in bad:
        status, step = statuses[j.run_id]
        assert status == "diverged" and step is not None and step > 0


def test_reproduce_verdicts_are_stored(tmp_path):
    st = Store(tmp_path)
    out = reproduce("scalar-mode", preset="smoke", store=st)
    assert [c.verdict for c in out.claims] == ["pass", "pass"]
    assert out.claims[0].seeds_total == 2
    preset, claims, run_ids = st.latest_verdicts("scalar-mode")
    assert preset == "smoke" and run_ids == out.run_ids
    assert [c["verdict"] for c in claims] == ["pass", "pass"]


def _res(status="ok", value=1.0):
    return Result(summary={"v": value}, status=status)


@pytest.mark.parametrize(
    ("values", "statuses", "frac", "verdict", "passed"),
    [
        ([1, 1, 1], ["ok"] * 3, 1.0, "pass", 3),
        ([1, 0, 1], ["ok"] * 3, 1.0, "fail", 2),
        ([1, 0, 1], ["ok"] * 3, 0.6, "pass", 2),
        ([1, 1, 1], ["ok", "ok", "diverged"], 1.0, "fail", 2),
        ([1, None, None], ["ok"] * 3, 1.0, "inconclusive", 1),
        ([0, None, None], ["ok"] * 3, 0.3, "inconclusive", 0),
    ],
)
def test_claim_aggregation(values, statuses, frac, verdict, passed):
    claim = Claim(
        "C",
        "p",
        "s",
        "e",
        check=lambda r: check(
            None if r.summary["v"] is None else r.summary["v"] == 1, v=r.summary["v"]
        ),
        min_fraction=frac,
    )
    results = [_res(s, v) for v, s in zip(values, statuses)]
    out = evaluate_claim(claim, results)
    assert (out.verdict, out.seeds_passed, out.seeds_total) == (verdict, passed, 3)


def test_crashing_claim_is_an_error_not_a_verdict():
    # A claim reading a renamed/missing field is a bug: it raises, never turns "inconclusive".
    claim = Claim("C", "p", "s", "e", check=lambda r: r.summary["missing"])
    with pytest.raises(ClaimError, match=r"claim 'C' raised KeyError"):
        evaluate_claim(claim, [_res()])


@pytest.mark.parametrize("seeds", [0, -1, [], [0, -2]])
def test_bad_seeds_name_what_was_received(tmp_path, seeds):
    with pytest.raises(
        ValueError, match=r"seeds must be a count >= 1 .*got " + re.escape(repr(seeds))
    ):
        run_experiment("scalar-mode", preset="smoke", seeds=seeds, store=Store(tmp_path))
    assert Store(tmp_path).runs() == []


def test_a_job_named_twice_runs_once(tmp_path):
    exp = get_experiment("scalar-mode")
    cfg = exp.preset("smoke")
    jobs = make_jobs(exp, cfg, [0, 0], "t") + make_jobs(exp, cfg, [0], "t")
    events = []
    ids = run_jobs(jobs, Store(tmp_path), on_event=lambda k, i: events.append(k))
    assert ids == [jobs[0].run_id] * 3
    assert events.count("done") == 1 and len(Store(tmp_path).runs()) == 1


class _DeadPool(Executor):
    """An executor whose worker died: every future fails as a broken process pool does."""

    def submit(self, fn, /, *args, **kwargs):
        fut = Future()
        fut.set_exception(BrokenProcessPool("a worker was killed"))
        return fut


def test_runs_lost_to_a_dead_worker_are_computed_on_rerun(tmp_path):
    st = Store(tmp_path)
    exp = get_experiment("scalar-mode")
    jobs = make_jobs(exp, exp.preset("smoke"), [0, 1], "t")
    run_jobs(jobs, st, executor=_DeadPool())
    assert {r.status for r in st.runs()} == {"failed"}
    events = []
    run_jobs(jobs, st, on_event=lambda k, i: events.append((k, i)))
    assert events[0] == ("plan", {"total": 2, "cached": 0})
    assert [r.status for r in st.runs()] == ["ok", "ok"]
