"""The run store: round trips, transactions, never overwriting, clear errors."""

from __future__ import annotations

import math
import sqlite3
import threading

import numpy as np
import pytest
import torch

from rankscope.records import RecordLog
from rankscope.results import Result
from rankscope.store import Store, StoreError


def _result(run_id: str, seed: int = 0) -> Result:
    log = RecordLog()
    log.log("loss", 0.5, step=1)
    log.log("loss", math.nan, step=2)
    log.log_vector("sv", [3.0, 2.0, 1.0], step=2, layer="W1")
    return Result(
        summary={"x": 1.5, "v": [1, 2], "nan": math.nan},
        records=log.freeze(),
        tensors={"w": torch.arange(6.0).reshape(2, 3)},
        run_id=run_id,
        seed=seed,
        config={"depth": 2},
    )


def test_round_trip(tmp_path):
    st = Store(tmp_path / "s")
    st.save_run(_result("abc"), experiment="e", preset="smoke", provenance={"p": 1}, wall_time=0.1)
    back = st.load_run("abc")
    assert back.summary["x"] == 1.5 and back.summary["v"] == [1, 2]
    assert math.isnan(back.summary["nan"])
    np.testing.assert_array_equal(back.records.vector("sv", layer="W1"), [3.0, 2.0, 1.0])
    steps, vals = back.records.series("loss")
    assert steps.tolist() == [1, 2] and vals[0] == 0.5 and math.isnan(vals[1])
    torch.testing.assert_close(back.tensors["w"], torch.arange(6.0).reshape(2, 3))
    assert back.config == {"depth": 2} and back.seed == 0
    assert st.provenance("abc") == {"p": 1}
    assert st.finished(["abc", "zzz"]) == {"abc"}


def test_existing_run_is_never_overwritten(tmp_path):
    st = Store(tmp_path)
    st.save_run(_result("r1"), experiment="e", preset="p", provenance={}, wall_time=1.0)
    other = _result("r1")
    other.summary = {"x": -1.0}
    st.save_run(other, experiment="e", preset="p", provenance={}, wall_time=2.0)
    assert st.load_run("r1").summary["x"] == 1.5
    assert len(st.runs()) == 1


def test_failed_insert_rolls_back(tmp_path, monkeypatch):
    st = Store(tmp_path)
    bad = _result("r2")
    # a record row that sqlite refuses (a name that is not text) aborts the transaction
    bad.records.name[0] = object()
    with pytest.raises(sqlite3.Error):
        st.save_run(bad, experiment="e", preset="p", provenance={}, wall_time=1.0)
    assert not st.has_run("r2")
    con = sqlite3.connect(st.catalog)
    assert con.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 0


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        Store(f)


def test_corrupt_catalog_gets_clear_error(tmp_path):
    (tmp_path / "catalog.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RuntimeError, match="not a readable SQLite file"):
        Store(tmp_path)


def test_verdicts_latest(tmp_path):
    st = Store(tmp_path)
    v = {
        "id": "C1",
        "verdict": "pass",
        "measured": {},
        "paper": "p",
        "statement": "s",
        "expected": "e",
        "seeds_passed": 1,
        "seeds_total": 1,
    }
    st.save_verdicts("e", "smoke", [v], ["a"])
    st.save_verdicts("e", "smoke", [{**v, "verdict": "fail"}], ["b"])
    preset, claims, runs = st.latest_verdicts("e")
    assert preset == "smoke" and claims[0]["verdict"] == "fail" and runs == ["b"]
    assert st.evaluated() == [("e", "smoke")]
    assert st.latest_verdicts("other") is None


def test_readers_refuse_a_missing_store_and_create_nothing(tmp_path):
    where = tmp_path / "deep" / "path"
    with pytest.raises(FileNotFoundError, match=r"no run store at .*deep/path"):
        Store(where, create=False)
    assert not (tmp_path / "deep").exists()
    Store(where)  # a writer creates it; a reader then opens it
    assert Store(where, create=False).runs() == []


def test_concurrent_writers_keep_one_run_whole_and_distinct_evaluations(tmp_path):
    """Eight writers open a new store and save the same run id at once: no error, the stored
    summary and tensors come from the same writer, and every evaluation gets its own id."""
    n = 8
    barrier = threading.Barrier(n)
    errors, evaluations = [], []

    def writer(i: int) -> None:
        try:
            barrier.wait()
            st = Store(tmp_path / "s")
            res = _result("same")
            res.summary = {"writer": i}
            res.tensors = {"w": torch.full((64, 64), float(i))}
            st.save_run(res, experiment="e", preset="p", provenance={}, wall_time=0.0)
            evaluations.append(st.save_verdicts("e", "p", [{"id": "C", "verdict": "pass"}], ["a"]))
        except Exception as exc:  # collected and asserted below
            errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(evaluations) == list(range(1, n + 1))
    st = Store(tmp_path / "s")
    back = st.load_run("same")
    assert len(st.runs()) == 1
    torch.testing.assert_close(
        back.tensors["w"], torch.full((64, 64), float(back.summary["writer"]))
    )
    assert not list(st.run_dir("same").glob("*.tmp"))  # no temporary file left behind


def test_saving_an_existing_run_leaves_its_tensors_alone(tmp_path):
    st = Store(tmp_path)
    st.save_run(_result("r1"), experiment="e", preset="p", provenance={}, wall_time=1.0)
    other = _result("r1")
    other.tensors = {"w": torch.zeros(1)}
    st.save_run(other, experiment="e", preset="p", provenance={}, wall_time=2.0)
    torch.testing.assert_close(st.load_run("r1").tensors["w"], torch.arange(6.0).reshape(2, 3))


def test_a_failed_run_is_retried_and_replaced_but_an_ok_one_is_not(tmp_path):
    st = Store(tmp_path)
    failed = Result(status="failed", error="worker failed: BrokenProcessPool", run_id="r", seed=0)
    st.save_run(failed, experiment="e", preset="p", provenance={}, wall_time=0.0)
    assert st.has_run("r") and st.finished(["r"]) == set()  # stored, but to be computed again
    st.save_run(_result("r"), experiment="e", preset="p", provenance={"n": 1}, wall_time=1.0)
    back = st.load_run("r")
    assert back.status == "ok" and back.summary["x"] == 1.5
    np.testing.assert_array_equal(back.records.vector("sv", layer="W1"), [3.0, 2.0, 1.0])
    prov = st.provenance("r")
    assert prov["n"] == 1 and prov["replaces_failed"]["error"].endswith("BrokenProcessPool")
    assert st.finished(["r"]) == {"r"} and len(st.runs()) == 1
    st.save_run(failed, experiment="e", preset="p", provenance={}, wall_time=0.0)
    assert st.load_run("r").status == "ok"  # a later failure never replaces a result


def test_an_unreadable_tensors_file_is_named(tmp_path):
    st = Store(tmp_path)
    st.save_run(_result("r"), experiment="e", preset="p", provenance={}, wall_time=1.0)
    (st.run_dir("r") / "tensors.safetensors").write_bytes(b"\xff" * 40)  # a damaged file
    with pytest.raises(StoreError, match=r"run 'r': its tensors file .*tensors\.safetensors"):
        st.load_run("r")
    assert st.load_run("r", tensors=False).summary["x"] == 1.5  # the rest is still readable
