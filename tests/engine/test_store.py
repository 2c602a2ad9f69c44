"""The run store: round trips, transactions, never overwriting, clear errors."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import torch

from rankscope.records import RecordLog
from rankscope.results import Result
from rankscope.store import Store


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
