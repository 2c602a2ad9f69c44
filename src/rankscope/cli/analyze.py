"""``rankscope analyze PATH``: the per-layer rank table of a saved model.

Registered by :mod:`rankscope.cli.app` as ``app.command("analyze")(analyze_command)``.
Output: an aligned table (default), ``--format csv`` (the layers table) or ``--format json``
(exactly one JSON object on stdout: ``{"layers": [...], "representations": [...],
"skipped": [...], "model": {...}, "settings": {...}}``). Messages go to stderr. ``--out DIR``
also writes ``layers.csv``, ``analysis.json`` and ``spectra.png`` (plus
``representations.csv`` and ``representation_spectra.png`` with data).

``--demo`` (or PATH ``demo``) trains the shipped demo MLP (:mod:`rankscope.models.demo`,
about a second), saves it with its data in ``--out`` (or a temporary folder) and analyses
it with representation and collapse metrics. Exit codes: 0 success, 2 bad input.
"""

from __future__ import annotations

import sys
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["OutputFormat", "analyze_command"]


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


_REP_TEXT_COLUMNS = (
    "name",
    "module",
    "layout",
    "samples",
    "features",
    "rep_rank_torch",
    "rep_rank_rel1e-2",
    "rep_stable_rank",
    "rep_effective_rank",
    "nc1",
    "tcv2",
)


def analyze_command(
    path: Annotated[
        str | None,
        typer.Argument(
            help="Weights file (.safetensors, .pt, .pth, .bin, .ckpt; read without running "
            "code), or 'demo'.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Inputs (.pt/.safetensors/.npy/.npz) for representation metrics; needs a model "
            "rankscope can rebuild (the demo). Use rankscope.analyze(model, data) for others.",
        ),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="(N,) integer class ids for --data.")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="table | csv | json")
    ] = OutputFormat.table,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for layers.csv, analysis.json and spectra.png."),
    ] = None,
    max_full_svd: Annotated[
        int,
        typer.Option("--max-full-svd", min=1, help="Full SVD up to this min(m, n); else top-k."),
    ] = 2048,
    topk: Annotated[
        int, typer.Option("--topk", min=1, help="Singular values on the randomized path.")
    ] = 128,
    exact_svd: Annotated[
        bool,
        typer.Option(
            "--exact-svd", help="Float64 SVD for every layer (default: Gram route for float32)."
        ),
    ] = False,
    demo: Annotated[
        bool, typer.Option("--demo", help="Train, save and analyse the shipped demo MLP.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 256,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the randomized SVD path.")] = 0,
    device: Annotated[
        str, typer.Option("--device", help="cpu | cuda | auto: where the spectra are computed.")
    ] = "cpu",
) -> None:
    """Per-layer ranks (numerical, stable, effective), norms and spectra of a saved model."""
    from rankscope.cli.app import resolve_device
    from rankscope.probe.checkpoint import CheckpointError

    dev = resolve_device(device)
    try:
        kw = {"max_full_svd": max_full_svd, "topk": topk, "gram": not exact_svd, "seed": seed}
        kw["device"] = dev
        analysis = _run(path, data, labels, out, demo, batch_size, kw)
    except (CheckpointError, ValueError, TypeError, FileNotFoundError) as exc:
        typer.echo(f"rankscope: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if output_format is OutputFormat.json:
        sys.stdout.write(analysis.to_json(indent=2) + "\n")
    elif output_format is OutputFormat.csv:
        sys.stdout.write(analysis.to_csv())
    else:
        typer.echo(_table_text(analysis))
    if out is not None:
        for written in _write_outputs(analysis, out):
            typer.echo(f"wrote {written}", err=True)


def _run(
    path: str | None,
    data: Path | None,
    labels: Path | None,
    out: Path | None,
    demo: bool,
    batch_size: int,
    kw: dict[str, Any],
) -> Any:
    from rankscope.probe import analyze, load_checkpoint

    if path == "demo":
        path, demo = None, True
    if demo and path is not None:
        raise ValueError(f"give either PATH ({path!r}) or --demo, not both")
    if demo:
        path, demo_data = _build_demo(out)
        data = data if data is not None else demo_data
    if path is None:
        raise ValueError("missing PATH: give a weights file (.safetensors, .pt, ...) or --demo")
    if labels is not None and data is None:
        raise ValueError("--labels needs --data")
    ckpt = load_checkpoint(path)
    if data is None:
        return analyze(ckpt, **kw)
    module = _rebuild(ckpt)
    analysis = analyze(module, data, labels=labels, batch_size=batch_size, **kw)
    analysis.model.update(file=str(path), file_format=ckpt.format, data=str(data))
    return analysis


def _build_demo(out: Path | None) -> tuple[str, Path]:
    from rankscope.models.demo import save_demo

    directory = out if out is not None else Path(tempfile.mkdtemp(prefix="rankscope-demo-"))
    typer.echo(f"training the demo MLP (about a second) into {directory}", err=True)
    model_path, data_path = save_demo(directory)
    return str(model_path), data_path


def _rebuild(ckpt: Any) -> Any:
    """An nn.Module for a checkpoint rankscope can rebuild (by metadata, no code from the file)."""
    from rankscope.models.demo import DEMO_TAG, load_demo_model

    if ckpt.metadata.get("rankscope_model") == DEMO_TAG:
        return load_demo_model(ckpt.tensors, ckpt.metadata)
    raise ValueError(
        f"--data needs a model that can run, but {ckpt.source!r} holds weights only; rankscope "
        "rebuilds only its own demo model from a file. From Python, call "
        "rankscope.analyze(model, data) with your nn.Module"
    )


def _table_text(analysis: Any) -> str:
    parts = [analysis.to_text()]
    ok = [r for r in analysis.representations if r.get("status") == "ok"]
    if ok:
        cols = tuple(c for c in _REP_TEXT_COLUMNS if any(c in r for r in ok))
        parts.append("\nlayer outputs (centred, rows = samples)\n" + _rep_text(analysis, cols))
    if analysis.skipped:
        parts.append(
            f"\n{len(analysis.skipped)} tensors without a spectrum (0-D/1-D: biases, norm "
            "scales; integer buffers such as position_ids) are listed under 'skipped' in "
            "--format json"
        )
    unavailable = [
        r["name"] for r in analysis.layers if r.get("method") == "randomized" and r["unavailable"]
    ]
    empty = [r["name"] for r in analysis.layers if r.get("method") == "empty"]
    if empty:
        parts.append(f"{len(empty)} empty weights (a zero dimension) have no spectrum: n/a")
    if unavailable:
        parts.append(
            f"{len(unavailable)} layers on the randomized top-k path: n/a values need the full "
            "spectrum (raise --max-full-svd); see 'unavailable' in --format json"
        )
    return "\n".join(parts)


def _rep_text(analysis: Any, cols: tuple[str, ...]) -> str:
    from rankscope.probe.analysis import Analysis

    ok = [r for r in analysis.representations if r.get("status") == "ok"]
    view = Analysis(layers=[], skipped=[], spectra={}, model={}, settings={}, representations=ok)
    return view.to_text("representations", columns=cols)


def _write_outputs(analysis: Any, out: Path) -> list[Path]:
    from rankscope.report.analysis import plot_spectra

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "layers.csv", out / "analysis.json", out / "spectra.png"]
    analysis.to_csv(written[0])
    analysis.to_json(written[1])
    fig, _ = plot_spectra(analysis)
    fig.savefig(written[2], dpi=120)
    if analysis.representations:
        extra = [out / "representations.csv", out / "representation_spectra.png"]
        analysis.to_csv(extra[0], table="representations")
        fig, _ = plot_spectra(analysis, which="representations")
        fig.savefig(extra[1], dpi=120)
        written += extra
    return written
