"""What a user reads: headlines, the summary line, show-claim, help text, progress, start-up."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import rankscope
from rankscope.cli import app
from rankscope.cli.progress import Progress

runner = CliRunner()
SRC = str(Path(rankscope.__file__).resolve().parents[1])


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("present") / "st"
    out = invoke(
        "reproduce", "scalar-mode", "--preset", "smoke", "--store", str(path), "--workers", "1"
    )
    assert out.exit_code == 0, out.output
    return path, out.stdout


def test_reproduce_ends_with_one_summary_line_and_a_line_per_claim(store):
    _, stdout = store
    last = stdout.strip().splitlines()[-1]
    m = re.fullmatch(
        r"(\d+) pass, (\d+) fail, (\d+) inconclusive across 1 experiment; report: (.+)", last
    )
    assert m, last
    assert int(m[1]) + int(m[2]) + int(m[3]) == 2
    assert Path(m[4]).exists() and m[4].endswith("index.html")
    claim_lines = [line for line in stdout.splitlines() if line.startswith("  SM-")]
    assert len(claim_lines) == 2 and all(len(line) < 240 for line in claim_lines)


def test_show_claim_prints_every_number_and_suggests_a_close_id(store):
    path, _ = store
    out = invoke("show-claim", "scalar-mode", "SM-1", "--store", str(path))
    assert out.exit_code == 0, out.output
    assert "headline:" in out.stdout and "relative_error" in out.stdout
    doc = json.loads(
        invoke("show-claim", "scalar-mode", "SM-1", "--store", str(path), "--json").stdout
    )
    assert doc["id"] == "SM-1" and "measured" in doc and "headline" in doc
    bad = invoke("show-claim", "scalar-mode", "SM1", "--store", str(path))
    assert bad.exit_code == 2 and "did you mean 'SM-1'?" in bad.output


def test_markdown_has_a_headline_column(store):
    path, _ = store
    out = invoke("report", "--markdown", "--store", str(path))
    assert "measured (headline)" in out.stdout and "show-claim" in out.stdout


def test_figures_are_redrawn_only_when_stale(store):
    from rankscope.report import write_experiment_report
    from rankscope.store import Store

    path, _ = store
    st = Store(path, create=False)
    folder = path / "report" / "scalar-mode" / "smoke"
    write_experiment_report(st, "scalar-mode", "smoke")
    png = next(folder.glob("*.png"))
    before = png.stat().st_mtime_ns
    write_experiment_report(st, "scalar-mode", "smoke")
    assert png.stat().st_mtime_ns == before  # nothing changed: kept
    cache = json.loads((folder / "figures.json").read_text())
    name = png.stem
    cache[name]["key"] = "stale"
    (folder / "figures.json").write_text(json.dumps(cache))
    write_experiment_report(st, "scalar-mode", "smoke")
    assert png.stat().st_mtime_ns != before  # a stale key: redrawn


def test_version_help_and_did_you_mean():
    out = invoke("--version")
    assert out.exit_code == 0 and out.stdout.strip() == f"rankscope {rankscope.__version__}"
    text = invoke("run", "--help").stdout
    assert "rankscope[dask]" in text and "<bool>" not in text
    assert re.search(r"--json\s+Print one JSON", text)
    assert "--device" in text
    for cmd in ("show", "run"):
        bad = runner.invoke(app, [cmd, "sadle"])
        assert bad.exit_code == 2 and "did you mean 'saddle-to-saddle'?" in bad.output


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys\n"
        "from rankscope._entry import main\n"
        "argvs = (['--help'], ['--version'], ['run', '--help'])\n"
        "for argv in argvs:\n"
        "    sys.argv = ['rankscope', *argv]\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": SRC},
        check=True,
    )
    assert out.stdout.strip().endswith("TORCH False")


def test_progress_without_a_terminal_writes_a_few_lines():
    stream = io.StringIO()
    p = Progress("demo", stream=stream, tty=False)
    p("plan", {"total": 27, "cached": 0})
    for i in range(27):
        p("progress", {"run_id": str(i), "fraction": 0.5})
        p("done", {"run_id": str(i), "status": "ok", "seed": i, "finished": i + 1, "error": None})
    p("claims", {"experiment": "demo"})
    p.close()
    lines = stream.getvalue().splitlines()
    assert 3 <= len(lines) <= 6, lines  # the plan and a line per quarter, not one per run
    assert lines[-1].startswith("demo: 27/27 runs done")


def test_progress_on_a_terminal_redraws_one_line():
    stream = io.StringIO()
    p = Progress("demo", stream=stream, tty=True)
    p("plan", {"total": 3, "cached": 0})
    for i in range(3):
        p("done", {"run_id": str(i), "status": "ok", "seed": i, "finished": i + 1, "error": None})
    p.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and "\r\033[K" in text and "3/3 runs" in text
