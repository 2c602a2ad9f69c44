"""Sweep-level ensembles: same-shaped seeds go through ``run_many`` as one ensemble and give the
runs one-seed-at-a-time gives; a failing ``run_many`` falls back per job without hiding it."""

from __future__ import annotations

import dataclasses

import pytest

from rankscope.experiments.base import RunContext
from rankscope.experiments.collapse import rank_diminishing as rd
from rankscope.experiments.registry import get_experiment
from rankscope.experiments.summary import summary_from_dict
from rankscope.store import Store
from rankscope.sweep import runner
from rankscope.sweep.runner import make_jobs, reproduce, run_experiment

TINY = rd.Config(widths=(16, 16), bottleneck_widths=(16, 8), n_inputs=4, train_steps=15)


def _rows(result):
    return list(result.records.rows())


def _assert_same_summary(got, want):
    """Equal to the bit except the final training losses, to 1e-12 relative: the stacked Adam
    step may round differently in the last bit (measured at the default preset: every rank,
    accuracy and record bitwise equal, train_loss within 2e-15 relative)."""
    losses = [(a.train_loss, b.train_loss) for a, b in zip(got.networks, want.networks)]
    for a, b in losses:
        assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12, abs=0.0)

    def strip(s):
        nets = [dataclasses.replace(n, train_loss=None) for n in s.networks]
        return dataclasses.replace(s, networks=nets)

    assert strip(got) == strip(want)


def _patched(monkeypatch, exp_id, **changes):
    """Serve a copy of the registered experiment with ``changes`` to the runner."""
    patched = dataclasses.replace(get_experiment(exp_id), **changes)
    real = runner.get_experiment
    monkeypatch.setattr(runner, "get_experiment", lambda e: patched if e == exp_id else real(e))
    return patched


def test_rank_diminishing_run_many_equals_run_per_seed():
    configs = [TINY, dataclasses.replace(TINY, train_lr=1e-2)]  # per-member lr: a grid point
    assert rd.ensemble_key(configs[0]) == rd.ensemble_key(configs[1])
    many = rd.run_many(configs, [RunContext(seed=s) for s in (0, 1)])
    for cfg, seed, got in zip(configs, (0, 1), many):
        want = rd.run(cfg, RunContext(seed=seed))
        assert got.status == "ok"
        _assert_same_summary(got.summary, want.summary)
        assert _rows(got) == _rows(want)
    with pytest.raises(ValueError, match="one ensemble_key"):
        rd.run_many([TINY, dataclasses.replace(TINY, widths=(16, 12))], [RunContext(seed=0)] * 2)


def test_reproduce_groups_seeds_through_run_many(tmp_path, monkeypatch):
    calls = []

    def counting(configs, ctxs):
        calls.append([c.seed for c in ctxs])
        return rd.run_many(configs, ctxs)

    _patched(monkeypatch, "rank-diminishing", run_many=counting)
    together = Store(tmp_path / "together")
    out = reproduce("rank-diminishing", preset="smoke", seeds=3, store=together)
    assert calls == [[0, 1, 2]] and out.computed == 3
    assert set(out.statuses.values()) == {"ok"}
    apart = Store(tmp_path / "apart")
    ids = [run_experiment("rank-diminishing", preset="smoke", seeds=[s], store=apart)[0]
           for s in (0, 1, 2)]  # fmt: skip
    assert calls == [[0, 1, 2]]  # groups of one never call run_many
    assert ids == out.run_ids
    for rid in ids:
        a, b = together.load_run(rid), apart.load_run(rid)
        assert a.status == b.status == "ok" and a.error is None
        _assert_same_summary(*(summary_from_dict(rd.Summary, r.summary) for r in (a, b)))
        assert _rows(a) == _rows(b)


def test_failing_run_many_falls_back_and_reports(tmp_path, monkeypatch):
    def broken(configs, ctxs):
        raise RuntimeError("ensemble exploded")

    _patched(monkeypatch, "scalar-mode", run_many=broken)
    events = []
    st = Store(tmp_path)
    ids = run_experiment(
        "scalar-mode",
        preset="smoke",
        seeds=2,
        store=st,
        overrides=["max_time=4", "lr=0.01"],
        on_event=lambda k, i: events.append((k, i)),
    )
    failed = [i for k, i in events if k == "ensemble_failed"]
    assert len(failed) == 1 and "ensemble exploded" in failed[0]["error"]
    assert failed[0]["run_ids"] == ids
    for rid in ids:
        r = st.load_run(rid)
        assert r.status == "ok"  # the per-job runs happened
        assert "run_many failed" in r.error and "ensemble exploded" in r.error


def test_run_many_returning_wrong_count_falls_back(monkeypatch):
    exp = _patched(monkeypatch, "scalar-mode", run_many=lambda configs, ctxs: [])
    cfg = dataclasses.replace(exp.preset("smoke"), max_time=4.0, lr=0.01)
    jobs = make_jobs(exp, cfg, [0, 1], "smoke")
    events = []
    out = runner.execute_group(jobs, lambda k, i: events.append((k, i)))
    assert [k for k, _ in events] == ["ensemble_failed"]
    assert "returned [] for 2 jobs" in events[0][1]["error"]
    assert [r.status for r, _ in out] == ["ok", "ok"]
    assert [r.run_id for r, _ in out] == [j.run_id for j in jobs]
