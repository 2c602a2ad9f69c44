"""``rankscope analyze``: table, csv and json output, --out files, --demo, clear errors."""

from __future__ import annotations

import csv
import io
import json
import os

import pytest
import torch
import typer
from safetensors.torch import save_file
from typer.testing import CliRunner

from rankscope.cli.analyze import analyze_command

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a callback keeps 'analyze' a subcommand, as in rankscope.cli.app
        """test app"""

    app.command("analyze")(analyze_command)
    return app


APP = _app()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = runner.invoke(APP, ["analyze", "--demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture
def weights(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {
        "enc.weight": torch.randn(16, 8, generator=g),
        "enc.bias": torch.zeros(16),
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
    }
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    return path


def test_demo_writes_table_and_files(demo_dir):
    out, result = demo_dir
    for name in ("layers.csv", "analysis.json", "spectra.png", "representations.csv"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "spectra.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "0.weight" in result.stdout and "rank_torch" in result.stdout
    assert "layer outputs" in result.stdout  # the demo comes with data
    doc = json.loads((out / "analysis.json").read_text())
    assert len(doc["layers"]) == 5 and doc["representations"]


def test_json_is_one_object_with_documented_keys(weights):
    result = runner.invoke(APP, ["analyze", str(weights), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # fails unless stdout is exactly one JSON document
    assert set(doc) >= {"layers", "model", "settings", "skipped"}
    names = [r["name"] for r in doc["layers"]]
    assert sorted(names) == ["conv.weight", "enc.weight"]
    for row in doc["layers"]:
        assert {"name", "shape", "kind", "rank_torch", "stable_rank", "effective_rank"} <= set(row)
    assert {r["name"]: r["kind"] for r in doc["layers"]} == {
        "conv.weight": "conv2d",
        "enc.weight": "linear",
    }
    assert doc["skipped"][0]["name"] == "enc.bias"


def test_csv_and_out_png(weights, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(APP, ["analyze", str(weights), "-f", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["name"] for r in rows} == {"conv.weight", "enc.weight"}
    assert (out / "spectra.png").read_bytes()[:4] == b"\x89PNG"


def test_max_full_svd_marks_randomized(weights):
    result = runner.invoke(
        APP, ["analyze", str(weights), "-f", "json", "--max-full-svd", "4", "--topk", "2"]
    )
    doc = json.loads(result.stdout)
    methods = {r["name"]: r["method"] for r in doc["layers"]}
    assert methods == {"conv.weight": "full", "enc.weight": "randomized"}


def test_errors_exit_2_with_message(tmp_path, weights):
    result = runner.invoke(APP, ["analyze", str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
    marker = tmp_path / "pwned"
    torch.save({"x": _Payload(str(marker))}, tmp_path / "evil.pt")
    result = runner.invoke(APP, ["analyze", str(tmp_path / "evil.pt")])
    assert result.exit_code == 2 and "refusing to load" in result.stderr
    assert not marker.exists()
    result = runner.invoke(APP, ["analyze", str(weights), "--data", str(weights)])
    assert result.exit_code == 2 and "holds weights only" in result.stderr
    result = runner.invoke(APP, ["analyze"])
    assert result.exit_code == 2 and "missing PATH" in result.stderr
    result = runner.invoke(APP, ["analyze", str(weights), "--format", "xml"])
    assert result.exit_code == 2


def test_registered_in_rankscope_app(weights):
    from rankscope.cli import app

    result = runner.invoke(app, ["analyze", str(weights), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["format"] == "safetensors"


def test_empty_weight_and_garbage_file(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"a.weight": torch.zeros(0, 4), "b.weight": torch.ones(3, 2)}, path)
    result = runner.invoke(APP, ["analyze", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 empty weights (a zero dimension)" in result.stdout
    assert "randomized top-k path" not in result.stdout  # nothing went that way
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    result = runner.invoke(APP, ["analyze", str(tmp_path / "text.pt")])
    assert result.exit_code == 2 and "truncated or corrupt" in result.stderr
    torch.save({"w": torch.tensor([[1.0, float("nan")]])}, tmp_path / "nan.pt")
    result = runner.invoke(APP, ["analyze", str(tmp_path / "nan.pt")])
    assert (
        result.exit_code == 2 and "weight 'w' of shape (1, 2) contains 1 NaN/Inf" in result.stderr
    )
