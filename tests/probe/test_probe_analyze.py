"""analyze(): same table from every input format; the Analysis exports; the spectra figure."""

from __future__ import annotations

import csv
import io
import json
import math
import sys

import pytest
import torch
from safetensors.torch import save_file

import rankscope
from rankscope.probe import Analysis, analyze
from rankscope.report.analysis import plot_spectra

_PROVENANCE = ("note",)  # differs by source: the module knows more than a bare state_dict


def _table(a: Analysis) -> dict[str, dict]:
    return {
        r["name"]: {k: v for k, v in r.items() if k not in ("kind", *_PROVENANCE)} for r in a.layers
    }


def test_identical_tables_from_every_format(zoo, tmp_path):
    state = {k: v.detach().clone() for k, v in zoo.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    results = [
        analyze(zoo),
        analyze(state),
        analyze(tmp_path / "w.safetensors"),
        analyze(str(tmp_path / "w.pt")),
    ]
    reference = _table(results[1])
    assert len(reference) == 7
    for a in results:
        assert _table(a) == reference
        assert {s["name"] for s in a.skipped} == {k for k, v in state.items() if v.ndim < 2}
    by_kind = [{r["name"]: r["kind"] for r in a.layers} for a in results]
    assert by_kind[1] == by_kind[2] == by_kind[3]  # every state_dict source infers the same
    assert [a.model["format"] for a in results] == ["module", "state_dict", "safetensors", "torch"]


def test_lazy_top_level_entry_point(zoo):
    assert rankscope.analyze is analyze
    assert "7 weight matrices" in repr(analyze(zoo))


def test_json_csv_rows(zoo):
    a = analyze(zoo)
    doc = json.loads(a.to_json())
    assert set(doc) == {"layers", "representations", "skipped", "model", "settings"}
    for row in doc["layers"]:
        assert {"name", "shape", "kind", "method", "rank_torch", "stable_rank"} <= set(row)
    assert doc["settings"]["svd_dtype"] == "float64"
    assert doc["settings"]["rank_presets"]["rank_rel1e-2"].startswith("relative")
    assert doc["model"]["n_matrices"] == 7
    rows = list(csv.DictReader(io.StringIO(a.to_csv())))
    assert [r["name"] for r in rows] == [r["name"] for r in a.layers]
    conv2 = next(r for r in rows if r["name"] == "conv2.weight")
    assert conv2["shape"] == "4x2x3x2"
    by_name = {r["name"]: r for r in a.layers}
    assert float(conv2["stable_rank"]) == pytest.approx(by_name["conv2.weight"]["stable_rank"])
    rows[0]["name"] = "changed"
    assert a.to_rows()[0]["name"] != "changed"


def test_nan_becomes_null_in_json(zoo):
    a = analyze(zoo, max_full_svd=4, topk=2)
    doc = json.loads(a.to_json())
    row = next(r for r in doc["layers"] if r["name"] == "emb.weight")
    assert row["method"] == "randomized" and row["effective_rank"] is None
    assert math.isnan(next(r for r in a.layers if r["name"] == "emb.weight")["effective_rank"])
    assert "n/a" in a.to_text()


def test_to_frame_and_missing_pandas(zoo, monkeypatch):
    pd = pytest.importorskip("pandas")
    frame = analyze(zoo).to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 7 and "rank_torch" in frame
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"rankscope\[pandas\].*to_rows"):
        analyze(zoo).to_frame()


def test_unknown_table(zoo):
    with pytest.raises(ValueError, match="unknown table 'weights'"):
        analyze(zoo).to_rows("weights")


def test_plot_spectra(zoo, tmp_path):
    a = analyze(zoo, max_full_svd=10, topk=3)
    fig, ax = plot_spectra(a)
    assert len(ax.lines) == 7 and ax.get_yscale() == "log"
    assert sum(line.get_linestyle() == "--" for line in ax.lines) == 1  # emb: min(20, 12) > 10
    top = next(line for line in ax.lines if line.get_label() == "fc.weight")
    s = a.spectra["fc.weight"].numpy()
    torch.testing.assert_close(torch.tensor(top.get_ydata()), torch.tensor(s / s[0]))
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="unknown which"):
        plot_spectra(a, which="bias")


class _WithPositions(torch.nn.Module):
    """A BERT-like embedding: an int64 position_ids buffer next to the float weights."""

    def __init__(self):
        super().__init__()
        self.tok = torch.nn.Embedding(11, 6)
        self.register_buffer("position_ids", torch.arange(12).reshape(1, 12))
        self.register_buffer("mask", torch.ones(3, 3, dtype=torch.bool))


def test_integer_and_bool_buffers_are_skipped_not_spectra(tmp_path):
    model = _WithPositions()
    for source in (model, model.state_dict()):
        a = analyze(source)
        assert [r["name"] for r in a.layers] == ["tok.weight"]
        reasons = {s["name"]: s["reason"] for s in a.skipped}
        assert set(reasons) == {"position_ids", "mask"}
        assert reasons["position_ids"].startswith("int64 tensor")
        assert "only floating-point tensors have a spectrum" in reasons["mask"]


def test_dataloader_of_a_tensor_dataset_is_unlabelled_data():
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    ref = analyze(model, data=x, batch_size=8)
    for data in (DataLoader(TensorDataset(x), batch_size=8), [[x[:20]], [x[20:]]]):
        got = analyze(model, data=data)
        assert [r["samples"] for r in got.representations] == [40] * len(ref.representations)
        for a, b in zip(got.representations, ref.representations):
            assert math.isclose(a["rep_stable_rank"], b["rep_stable_rank"], rel_tol=1e-6)
