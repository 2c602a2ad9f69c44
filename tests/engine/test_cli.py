"""The command line end to end: list, show, run -> report, reproduce --json, usage errors."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from rankscope.cli import app
from rankscope.store import Store

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
    assert set(doc) == {
        "experiment",
        "preset",
        "claims",
        "runs",
        "report",
        "reused",
        "computed",
    }
    assert (doc["reused"], doc["computed"]) == (0, len(doc["runs"]))
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


def test_counts_below_one_are_usage_errors_not_tracebacks(tmp_path):
    store = str(tmp_path / "st")
    cases = [
        (("run", "scalar-mode", "--seeds", "0"), "--seeds must be an integer >= 1, got 0"),
        (("reproduce", "scalar-mode", "--seeds", "-1"), "--seeds must be an integer >= 1, got -1"),
        (("run", "scalar-mode", "--workers", "0"), "--workers must be an integer >= 1, got 0"),
        (("run", "scalar-mode", "--seeds", "5-3"), "--seeds must be a count N >= 1, a range A-B"),
        (
            ("run", "scalar-mode", "--seeds", "two"),
            "--seeds must be a count N >= 1, a range A-B with 0 <= A <= B, or a list a,b,c "
            "of seeds >= 0; got 'two'",
        ),
        (("run", "scalar-mode", "--seeds", "1,2,1"), "--seeds lists a seed twice: '1,2,1'"),
        (
            ("sweep", "scalar-mode", "--grid", "depth=2", "--seeds", "0"),
            "--seeds (per grid point) must be an integer >= 1, got 0",
        ),
        (
            ("sweep", "scalar-mode", "--grid", "depth=2", "--grid", "depth=3"),
            "grid key 'depth' is given twice",
        ),
        (
            ("sweep", "scalar-mode", "--grid", "depth=2,3,2"),
            "grid item 'depth=2,3,2' repeats the value(s) ['2']",
        ),
    ]
    for args, message in cases:
        out = invoke(*args, "--preset", "smoke", "--store", store)
        assert out.exit_code == 2, (args, out.output)
        assert f"rankscope: {message}" in out.output, out.output
    assert not (tmp_path / "st" / "runs").exists()  # nothing ran


def test_report_on_a_missing_store_is_a_usage_error_and_creates_nothing(tmp_path):
    where = tmp_path / "no" / "such" / "store"
    for args in (("report",), ("report", "--markdown"), ("report", "scalar-mode")):
        out = invoke(*args, "--store", str(where))
        assert out.exit_code == 2, out.output
        assert f"no run store at '{where}'" in out.output
    assert not (tmp_path / "no").exists()


def test_report_at_a_preset_that_was_never_evaluated(tmp_path):
    from rankscope.store import Store

    Store(tmp_path).save_verdicts("scalar-mode", "smoke", [{"id": "SM-1", "verdict": "pass"}], [])
    for args in (("report", "--preset", "paper"), ("report", "--markdown", "--preset", "paper")):
        out = invoke(*args, "--store", str(tmp_path))
        assert out.exit_code == 2, out.output
        assert "no evaluations at preset 'paper'" in out.output and "['smoke']" in out.output


def test_report_of_a_run_with_a_damaged_tensors_file_exits_1_with_the_path(tmp_path):
    import torch

    from rankscope.results import Result
    from rankscope.store import Store

    st = Store(tmp_path)
    res = Result(summary={}, tensors={"w": torch.ones(2)}, run_id="r1", seed=0, config={})
    st.save_run(res, experiment="scalar-mode", preset="smoke", provenance={}, wall_time=0.0)
    (st.run_dir("r1") / "tensors.safetensors").write_bytes(b"\xff" * 40)
    out = invoke("report", "r1", "--store", str(tmp_path))
    assert out.exit_code == 1
    assert (
        out.output.startswith("rankscope: run 'r1': its tensors file")
        and "Traceback" not in out.output
    )


def test_seed_ranges_and_lists_run_exactly_those_seeds(tmp_path):
    """``--seeds 3-5`` (confirmation seeds) and ``--seeds 1,4`` run those seeds, no others."""
    store = str(tmp_path / "st")
    for spec, want in (("3-5", [3, 4, 5]), ("1,4", [1, 4]), ("2", [0, 1])):
        out = invoke("run", "scalar-mode", "--preset", "smoke", "--store", store, "--seeds", spec)
        assert out.exit_code == 0, out.output
        doc = json.loads(
            invoke(
                "run",
                "scalar-mode",
                "--preset",
                "smoke",
                "--store",
                store,
                "--seeds",
                spec,
                "--json",
            ).stdout
        )
        runs = [Store(store).load_run(r["run_id"], tensors=False) for r in doc["runs"]]
        assert sorted(r.seed for r in runs) == want
