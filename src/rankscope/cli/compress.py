"""``rankscope compress MODEL --budget F --out DIR``: factorise a model from its spectra.

Registered by :mod:`rankscope.cli.app` as ``app.command("compress")(compress_command)``.

MODEL is one of:

- a Hugging Face model directory (``config.json``; needs ``rankscope[hf]``), e.g. a
  sentence-transformers directory; ``--calib``/``--eval`` then take a UTF-8 file with one
  sentence per line, or ``stdlib`` for the shipped calibration / evaluation sentences;
- a ``.safetensors`` file written by :func:`rankscope.compress.save_sequential` (or the demo
  checkpoint of ``rankscope analyze --demo``); ``--calib`` takes a tensor file of inputs
  (``.safetensors``/``.pt``/``.npy``/``.npz``; key ``x`` or a single tensor), ``--eval`` a
  tensor file with ``x`` and integer labels ``y``;
- ``digits``: a 64-128-128-10 ReLU MLP trained here on scikit-learn's digits with weight decay 1e-2
  (a few seconds; calibration = its training split, evaluation = its test split).

Output: a short report on stdout, or with ``--json`` exactly one JSON object with
``params_before``, ``params_after``, ``budget``, ``kept_fraction``, ``model_params_before``,
``model_params_after``, ``model_kept_fraction``, ``layers``, ``skipped`` and, with an
evaluation, ``eval``. Exit codes: 0 success, 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["compress_command"]


def _fail(msg: str) -> typer.Exit:
    typer.echo(f"rankscope: {msg}", err=True)
    return typer.Exit(code=2)


def _tensors(path: Path, *, what: str) -> tuple[Any, Any]:
    """(x, y or None) from a tensor file."""
    import torch

    from rankscope.probe.checkpoint import load_tensor_file

    obj = load_tensor_file(path)
    if isinstance(obj, torch.Tensor):
        return obj, None
    if isinstance(obj, dict) and "x" in obj:
        return obj["x"], obj.get("y")
    if isinstance(obj, dict) and len(obj) == 1:
        return next(iter(obj.values())), None
    keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{what} file {str(path)!r} holds {keys}; expected a tensor or keys x (, y)")


def _text(spec: Path | None, split: str) -> list[str] | None:
    from rankscope.compress import read_lines, sentences

    if spec is None:
        return None
    if str(spec) == "stdlib":
        return sentences(split)
    return read_lines(spec)


def _digits_model() -> tuple[Any, Any, Any, Any]:
    from rankscope.experiments.compression.digits import DigitsNet, digits_data, fit

    data = digits_data(seed=0)
    net = DigitsNet("mlp", (128, 128))
    model = fit(net, data, l2=1e-2, steps=300, lr=3e-3, seed=0)
    return model, data.x_train, data.x_test, data.y_test


def compress_command(
    model: Annotated[
        str,
        typer.Argument(
            help="Hugging Face model directory, a .safetensors file from "
            "rankscope.compress.save_sequential, or 'digits'.",
            show_default=False,
        ),
    ],
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            help="Kept fraction of the compressible layers' parameters, in (0, 1].",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory for model.safetensors + manifest.")],
    method: Annotated[str, typer.Option("--method", help="svd | whiten")] = "whiten",
    allocate: Annotated[str, typer.Option("--allocate", help="uniform | global")] = "uniform",
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Calibrate each layer on compressed inputs.")
    ] = False,
    calib: Annotated[
        Path | None,
        typer.Option("--calib", help="Calibration inputs: tensor file, or text file / 'stdlib'."),
    ] = None,
    eval_file: Annotated[
        Path | None,
        typer.Option("--eval", help="Evaluation data: tensor file (x, y), or text / 'stdlib'."),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Glob on layer names to compress (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Glob on layer names to keep.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Compress MODEL's Linear/Conv layers to a parameter budget, save it, evaluate it."""
    try:
        report = _run(
            model, budget, out, method, allocate, sequential, calib, eval_file, include, exclude
        )
    except (ValueError, TypeError, OSError, ImportError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(report))
        return
    typer.echo(_text_report(report))


def _run(model, budget, out, method, allocate, sequential, calib, eval_file, include, exclude):
    import torch

    from rankscope.compress import compress, hf, load_sequential

    evaluation: dict[str, Any] = {}
    path = Path(model)
    kw = {"include": include, "exclude": exclude, "method": method, "allocate_by": allocate}
    kw["sequential"] = sequential
    if model == "digits":
        module, x_cal, x_ev, y_ev = _digits_model()
        if calib is not None:
            x_cal, _ = _tensors(calib, what="calibration")
        if eval_file is not None:
            x_ev, y_ev = _tensors(eval_file, what="evaluation")
        result = compress(module, budget, calib=_check_x(x_cal, "calibration"), **kw)
        evaluation = _eval_classifier(module, result.model, x_ev, y_ev)
    elif hf.is_hf_dir(path):
        sents = _text(calib, "calib")
        if sents is None and method == "whiten":
            from rankscope.compress import sentences

            sents = sentences("calib")
            typer.echo(
                "calibrating on the 256 shipped sentences (--calib FILE to change)", err=True
            )
        result = compress(path, budget, calib=sents, **kw)
        ev = _text(eval_file, "eval")
        if ev is not None:
            original, _ = hf.load_hf(path)
            evaluation = _eval_text(original, result.model, result.tokenizer, ev)
    elif path.suffix == ".safetensors" and path.is_file():
        module = load_sequential(path)
        x_cal = None
        if calib is not None:
            x_cal, _ = _tensors(calib, what="calibration")
            x_cal = _check_x(x_cal, "calibration")
        result = compress(module, budget, calib=x_cal, **kw)
        if eval_file is not None:
            x_ev, y_ev = _tensors(eval_file, what="evaluation")
            evaluation = _eval_classifier(module, result.model, x_ev, y_ev)
    else:
        raise ValueError(
            f"cannot read model {model!r}: expected a Hugging Face model directory (with "
            "config.json), a .safetensors file written by rankscope.compress.save_sequential, "
            "or 'digits'"
        )
    result.save(out)
    del torch
    keys = (
        "budget",
        "method",
        "allocate",
        "sequential",
        "params_before",
        "params_after",
        "kept_fraction",
        "model_params_before",
        "model_params_after",
        "model_kept_fraction",
        "layers",
        "skipped",
    )
    report = {k: result.manifest[k] for k in keys}
    report["out"] = str(out)
    if evaluation:
        report["eval"] = evaluation
    return report


def _check_x(x, what: str):
    import torch

    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what} inputs must be a non-empty (N, ...) tensor, got {got}")
    return x.float() if x.is_floating_point() else x


def _eval_classifier(before, after, x, y) -> dict[str, Any]:
    import torch

    from rankscope.compress import Batch, accuracy, compare_latency

    x = _check_x(x, "evaluation")
    if y is None:
        raise ValueError("evaluation file needs integer labels y for a classifier")
    y = torch.as_tensor(y).long()
    lat = compare_latency(before, after, Batch((x[:256],)))
    return {
        "accuracy_before": accuracy(before, x, y),
        "accuracy_after": accuracy(after, x, y),
        "samples": int(x.shape[0]),
        "latency": lat,
    }


def _eval_text(before, after, tokenizer, texts) -> dict[str, Any]:
    from rankscope.compress import (
        compare_latency,
        embedding_agreement,
        sentence_embeddings,
        text_batches,
    )

    if tokenizer is None:
        raise ValueError("the model directory has no tokenizer: cannot evaluate on sentences")
    batches = text_batches(tokenizer, texts)
    agree = embedding_agreement(
        sentence_embeddings(before, batches), sentence_embeddings(after, batches)
    )
    mid = batches[len(batches) // 2]
    return {**agree, "samples": len(texts), "latency": compare_latency(before, after, mid)}


def _text_report(r: dict[str, Any]) -> str:
    lines = [
        f"budget {r['budget']:g}: compressible layers keep {r['params_after']:,} of "
        f"{r['params_before']:,} parameters ({r['kept_fraction']:.1%}); whole model "
        f"{r['model_params_after']:,} of {r['model_params_before']:,} "
        f"({r['model_kept_fraction']:.1%})",
        f"{'layer':48} {'shape':>11} {'rank':>5} {'energy':>7} {'err':>6}",
    ]
    for row in r["layers"]:
        rank = "dense" if row["rank"] is None else str(row["rank"])
        shape = "×".join(map(str, row["shape"]))
        lines.append(
            f"{row['name'][:48]:48} {shape:>11} {rank:>5} {row['energy_kept']:7.3f} "
            f"{row['truncation_error']:6.3f}"
        )
    for s in r["skipped"]:
        lines.append(f"skipped {s['name']}: {s['reason']}")
    ev = r.get("eval")
    if ev:
        if "mean_cosine" in ev:
            lines.append(
                f"eval ({ev['samples']} sentences): mean cosine {ev['mean_cosine']:.3f}, "
                f"nearest-neighbour agreement {ev['nn_agreement']:.3f}"
            )
        else:
            lines.append(
                f"eval ({ev['samples']} samples): accuracy {ev['accuracy_before']:.3f} -> "
                f"{ev['accuracy_after']:.3f}"
            )
        lines.append(f"latency ratio after/before {ev['latency']['ratio']:.2f}")
    lines.append(f"wrote {r['out']}")
    return "\n".join(lines)
