"""``rankscope compress`` on saved models, digits and a (tiny, locally built) Hugging Face
directory; the Hugging Face round trip. HF tests need the ``hf`` extra (transformers)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import typer
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from rankscope.cli.compress import compress_command
from rankscope.compress import compress, load, save_sequential

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    app.command("compress")(compress_command)
    return app


APP = _app()


@pytest.fixture()
def seq_files(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )
    path = save_sequential(model, tmp_path / "m.safetensors")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 16, generator=g)
    save_file({"x": x}, str(tmp_path / "calib.safetensors"))
    y = model(x).argmax(1)
    save_file({"x": x, "y": y.contiguous()}, str(tmp_path / "eval.safetensors"))
    return tmp_path, path


def test_cli_on_a_saved_sequential_model(seq_files):
    tmp, path = seq_files
    out = tmp / "out"
    res = runner.invoke(
        APP,
        [
            "compress",
            str(path),
            "--budget",
            "0.5",
            "--calib",
            str(tmp / "calib.safetensors"),
            "--eval",
            str(tmp / "eval.safetensors"),
            "--out",
            str(out),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert {"params_before", "params_after", "budget", "layers", "eval"} <= set(report)
    assert report["params_after"] <= 0.5 * report["params_before"]
    assert report["eval"]["accuracy_before"] == 1.0  # labels are the model's own predictions
    assert 0 <= report["eval"]["accuracy_after"] <= 1
    assert report["eval"]["latency"]["ratio"] > 0
    x = torch.randn(5, 16)
    before = load(out)
    assert torch.equal(before(x), load(out)(x))


def test_cli_text_report(seq_files):
    tmp, path = seq_files
    res = runner.invoke(
        APP,
        [
            "compress",
            str(path),
            "--budget",
            "0.6",
            "--method",
            "svd",
            "--allocate",
            "global",
            "--out",
            str(tmp / "o"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "compressible layers keep" in res.stdout and "whole model" in res.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "1.5"], r"budget must be a number in \(0, 1\]"),
        (["--budget", "0"], r"budget must be a number in \(0, 1\]"),
        (["--budget", "0.5", "--include", "enc*"], "layer pattern 'enc\\*' matches no"),
        (["--budget", "0.5", "--method", "pca"], "unknown method 'pca'"),
    ],
)
def test_cli_errors_name_what_was_received(seq_files, args, message):
    tmp, path = seq_files
    res = runner.invoke(
        APP,
        [
            "compress",
            str(path),
            *args,
            "--calib",
            str(tmp / "calib.safetensors"),
            "--out",
            str(tmp / "o"),
        ],
    )
    assert res.exit_code == 2
    assert re.search(message, res.output), res.output


def test_cli_bad_calibration_and_model(seq_files):
    tmp, path = seq_files
    save_file({"x": torch.randn(10, 7)}, str(tmp / "bad.safetensors"))
    res = runner.invoke(
        APP,
        [
            "compress",
            str(path),
            "--budget",
            "0.5",
            "--calib",
            str(tmp / "bad.safetensors"),
            "--out",
            str(tmp / "o"),
        ],
    )
    assert res.exit_code == 2 and "does not fit" in res.output
    save_file({"x": torch.randn(0, 16)}, str(tmp / "empty.safetensors"))
    res = runner.invoke(
        APP,
        [
            "compress",
            str(path),
            "--budget",
            "0.5",
            "--calib",
            str(tmp / "empty.safetensors"),
            "--out",
            str(tmp / "o"),
        ],
    )
    assert res.exit_code == 2 and "non-empty" in res.output
    res = runner.invoke(
        APP, ["compress", str(tmp / "nope.bin"), "--budget", "0.5", "--out", str(tmp / "o")]
    )
    assert res.exit_code == 2 and "cannot read model" in res.output


def test_cli_digits_model(tmp_path):
    pytest.importorskip("sklearn")
    res = runner.invoke(
        APP,
        [
            "compress",
            "digits",
            "--budget",
            "0.3",
            "--method",
            "svd",
            "--allocate",
            "global",
            "--out",
            str(tmp_path / "d"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    ev = report["eval"]
    assert ev["accuracy_before"] > 0.9
    assert ev["accuracy_after"] > 0.8
    assert report["kept_fraction"] <= 0.3


# ---------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    tf = pytest.importorskip("transformers")
    d = tmp_path_factory.mktemp("bert")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *letters,
        *("##" + c for c in letters),
        ".",
        ",",
        "the",
        "a",
        "of",
    ]
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tf.BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(str(d))
    cfg = tf.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    tf.BertModel(cfg).save_pretrained(str(d))
    return d


SENTS = [
    "the cat sat on a mat.",
    "a quick brown fox jumps over the lazy dog.",
    "of all the things, this one is small.",
    "compression keeps the large singular values.",
    "tiny models still have attention heads.",
    "every sentence here is short and plain.",
] * 4


def test_hf_directory_round_trip(tiny_bert, tmp_path):
    from rankscope.compress import hf, sentence_embeddings, text_batches

    out = compress(tiny_bert, 0.5, calib=SENTS, include="encoder.*", allocate_by="global")
    layers = out.layers
    assert len(layers) == 12  # 2 blocks × (q, k, v, attn out, intermediate, output)
    assert {r["name"].split(".")[-1] for r in layers} >= {"query", "key", "value", "dense"}
    out.save(tmp_path / "c")
    for f in ("config.json", "vocab.txt", "tokenizer_config.json", "model.safetensors"):
        assert (tmp_path / "c" / f).is_file(), f
    back = load(tmp_path / "c")
    tok = hf.load_tokenizer(tmp_path / "c")
    batches = text_batches(tok, SENTS[:6])
    torch.testing.assert_close(
        sentence_embeddings(back, batches), sentence_embeddings(out.model, batches), rtol=0, atol=0
    )
    original, _ = hf.load_hf(tiny_bert)
    for name, p in original.named_parameters():  # the directory's model was not touched
        assert name in dict(hf.load_hf(tiny_bert)[0].named_parameters())
        del p


def test_cli_on_a_hf_directory(tiny_bert, tmp_path):
    (tmp_path / "calib.txt").write_text("\n".join(SENTS) + "\n")
    (tmp_path / "eval.txt").write_text("\n".join(reversed(SENTS[:12])) + "\n")
    (tmp_path / "empty.txt").write_text("\n\n")
    res = runner.invoke(
        APP,
        [
            "compress",
            str(tiny_bert),
            "--budget",
            "0.7",
            "--sequential",
            "--calib",
            str(tmp_path / "calib.txt"),
            "--eval",
            str(tmp_path / "eval.txt"),
            "--include",
            "encoder.*",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout)["eval"]
    assert 0 < ev["mean_cosine"] <= 1 + 1e-9 and 0 <= ev["nn_agreement"] <= 1
    res = runner.invoke(
        APP,
        [
            "compress",
            str(tiny_bert),
            "--budget",
            "0.7",
            "--calib",
            str(tmp_path / "empty.txt"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert res.exit_code == 2 and "has no sentences" in res.output
