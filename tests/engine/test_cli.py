"""The command line end to end: list, show, run -> report, reproduce --json, usage errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rankscope.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_list_and_show():
    out = invoke("list", "--json")
    assert out.exit_code == 0
    ids = [e["id"] for e in json.loads(out.stdout)]
    assert "scalar-mode" in ids
    show = invoke("show", "scalar-mode")
    assert show.exit_code == 0 and "SM-1" in show.stdout and "preset smoke" in show.stdout


def test_run_then_report(tmp_path):
    store = str(tmp_path / "st")
    out = invoke("run", "scalar-mode", "--preset", "smoke", "--store", store, "--workers", "1")
    assert out.exit_code == 0, out.output
    rep = invoke("report", "scalar-mode", "--store", store)
    assert rep.exit_code == 0, rep.output
    page = tmp_path / "st" / "report" / "scalar-mode" / "smoke" / "index.html"
    text = page.read_text()
    assert "SM-1" in text and "pass" in text
    assert (tmp_path / "st" / "report" / "index.html").exists()


def test_reproduce_json_shape_and_exit_codes(tmp_path):
    store = str(tmp_path / "st")
    out = invoke(
        "reproduce",
        "scalar-mode",
        "--preset",
        "smoke",
        "--store",
        store,
        "--json",
        "--workers",
        "1",
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)  # stdout is exactly one JSON document
    assert set(doc) == {"experiment", "preset", "claims", "runs", "report"}
    claim = doc["claims"][0]
    for key in (
        "id",
        "paper",
        "statement",
        "verdict",
        "measured",
        "expected",
        "seeds_passed",
        "seeds_total",
    ):
        assert key in claim
    assert doc["report"].endswith("index.html")
    # a failing claim exits 1
    bad = invoke(
        "reproduce",
        "scalar-mode",
        "--preset",
        "smoke",
        "--store",
        store,
        "--set",
        "max_time=1",
        "--workers",
        "1",
    )
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout


def test_usage_errors_exit_2_and_list_choices(tmp_path):
    out = invoke("run", "scalar-mod", "--store", str(tmp_path))
    assert out.exit_code == 2
    assert "did you mean 'scalar-mode'" in out.output and "valid ids" in out.output
    out = invoke("run", "scalar-mode", "--set", "dept=3", "--store", str(tmp_path))
    assert out.exit_code == 2 and "valid keys" in out.output and "'depth'" in out.output
    out = invoke("run", "scalar-mode", "--set", "depth=two", "--store", str(tmp_path))
    assert out.exit_code == 2 and "expected an int" in out.output
    out = invoke("run", "scalar-mode", "--preset", "huge", "--store", str(tmp_path))
    assert out.exit_code == 2 and "unknown preset 'huge'" in out.output
    out = invoke("reproduce", "--store", str(tmp_path))
    assert out.exit_code == 2 and "--all" in out.output
    out = invoke("report", "nothing-here", "--store", str(tmp_path))
    assert out.exit_code == 2


def test_run_report_for_a_single_run(tmp_path):
    from rankscope.store import Store

    store = tmp_path / "st"
    invoke("run", "scalar-mode", "--preset", "smoke", "--store", str(store), "--workers", "1")
    run_id = Store(store).runs()[0].run_id
    out = invoke("report", run_id, "--store", str(store))
    assert out.exit_code == 0, out.output
    assert (store / "report" / "runs" / run_id / "index.html").exists()


def test_sweep_grid(tmp_path):
    out = invoke(
        "sweep",
        "scalar-mode",
        "--preset",
        "smoke",
        "--grid",
        "target=1,2",
        "--grid",
        "depth=2,3",
        "--set",
        "max_time=2",
        "--store",
        str(tmp_path),
        "--json",
        "--workers",
        "1",
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert len(doc["runs"]) == 4
    assert {tuple(sorted(r["config"].items())) for r in doc["runs"]} == {
        (("depth", d), ("target", t)) for d in (2, 3) for t in (1.0, 2.0)
    }
