"""What a sweep found: one row per grid point, claim verdicts and chosen metrics over seeds.

A sweep writes a manifest, ``<store>/sweeps/<sweep id>.json``, next to its runs: the grid,
the run ids of every point and the table below. The report reads the manifests to give each
sweep its own page; ``rankscope sweep`` prints the table when it ends.

A *metric* is a numeric field of the run summary, named by attribute path (``fitted_slope``,
``fits.0.slope``); its cell is the mean over the point's finished seeds, ± the standard
deviation when there are several.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "SweepPoint",
    "SweepSummary",
    "grid_table_text",
    "load_sweeps",
    "numeric_fields",
    "summarize_sweep",
    "summary_value",
    "sweep_id",
    "write_sweep_manifest",
]


@dataclass
class SweepPoint:
    """One grid point: its swept values, its runs, verdicts and metric statistics."""

    params: dict[str, Any]
    run_ids: list[str]
    statuses: list[str]
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> verdict, k/n, headline
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> mean, std, n


@dataclass
class SweepSummary:
    sweep_id: str
    experiment: str
    preset: str
    grid: dict[str, list[Any]]
    seeds: int
    metrics: list[str]
    points: list[SweepPoint]
    created: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepSummary:
        points = [SweepPoint(**p) for p in d["points"]]
        return cls(**{**d, "points": points})


def sweep_id(experiment: str, preset: str, grid: dict[str, list[Any]], seeds: int, extra=()) -> str:
    """A stable id for a sweep request (same grid and seeds -> same id, same page)."""
    key = json.dumps([experiment, preset, grid, seeds, list(extra)], sort_keys=True, default=str)
    return f"{experiment}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def summary_value(summary: Any, path: str) -> Any:
    """``summary`` (a dataclass or a dict) followed along a dotted ``path``; KeyError if absent."""
    node = summary
    for part in path.split("."):
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            if not hasattr(node, part):
                raise KeyError(path)
            node = getattr(node, part)
        elif isinstance(node, dict):
            if part not in node:
                raise KeyError(path)
            node = node[part]
        elif isinstance(node, list | tuple) and part.lstrip("-").isdigit():
            try:
                node = node[int(part)]
            except IndexError:
                raise KeyError(path) from None
        else:
            raise KeyError(path)
    return node


def numeric_fields(summary: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """Dotted paths of the numeric scalars of ``summary`` (for 'did you mean' messages)."""
    if dataclasses.is_dataclass(summary) and not isinstance(summary, type):
        items = [(f.name, getattr(summary, f.name)) for f in dataclasses.fields(summary)]
    elif isinstance(summary, dict):
        items = list(summary.items())
    else:
        return []
    out = []
    for k, v in items:
        path = f"{prefix}{k}"
        if isinstance(v, bool):
            continue
        if isinstance(v, int | float):
            out.append(path)
        elif depth > 0:
            out.extend(numeric_fields(v, prefix=f"{path}.", depth=depth - 1))
    return out


def _stats(values: Sequence[float]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(vals)}


def summarize_sweep(
    exp: Any,
    store: Any,
    points: Sequence[tuple[dict[str, Any], Sequence[str]]],
    *,
    preset: str,
    grid: dict[str, list[Any]],
    seeds: int,
    metrics: Sequence[str] = (),
    sweep: str | None = None,
) -> SweepSummary:
    """Evaluate every claim and chosen metric per grid point from the stored runs.

    ``points``: (swept values, run ids) per grid point. A metric absent from every finished
    run raises ``KeyError`` naming the numeric summary fields there are.
    """
    from rankscope.experiments.claims import evaluate_claims

    rows: list[SweepPoint] = []
    seen_any: dict[str, bool] = dict.fromkeys(metrics, False)
    example = None
    for params, run_ids in points:
        results = [store.load_run(r) for r in run_ids]
        ok = [r for r in results if r.status == "ok"]
        point = SweepPoint(dict(params), list(run_ids), [r.status for r in results])
        if ok:
            example = example if example is not None else ok[0].summary
            try:
                verdicts = evaluate_claims(exp, results)
            except Exception as exc:  # one point's broken claim must not hide the table
                verdicts = []
                point.claims["(claims)"] = {"verdict": "error", "headline": f"{exc!r}"[:200]}
            for v in verdicts:
                point.claims[v.claim_id] = {
                    "verdict": v.verdict,
                    "seeds_passed": v.seeds_passed,
                    "seeds_total": v.seeds_total,
                    "headline": getattr(v, "headline", "") or "",
                    "hard": v.hard,
                }
        for name in metrics:
            values = []
            for r in ok:
                try:
                    value = summary_value(r.summary, name)
                except KeyError:
                    continue
                seen_any[name] = True
                if isinstance(value, int | float) and not isinstance(value, bool):
                    values.append(value)
            point.metrics[name] = _stats(values)
        rows.append(point)
    missing = [m for m, seen in seen_any.items() if not seen and example is not None]
    if missing:
        raise KeyError(
            f"metric(s) {missing} are not fields of {exp.id}'s run summary; numeric fields: "
            f"{numeric_fields(example)}"
        )
    return SweepSummary(
        sweep_id=sweep or sweep_id(exp.id, preset, grid, seeds),
        experiment=exp.id,
        preset=preset,
        grid={k: list(v) for k, v in grid.items()},
        seeds=seeds,
        metrics=list(metrics),
        points=rows,
    )


def write_sweep_manifest(store: Any, summary: SweepSummary) -> Path:
    """Write ``<store>/sweeps/<sweep id>.json`` (atomically) and return its path."""
    folder = Path(store.root) / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{summary.sweep_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary.as_dict(), indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def load_sweeps(store: Any) -> list[SweepSummary]:
    """Every sweep manifest in the store, newest first (unreadable files are skipped)."""
    folder = Path(store.root) / "sweeps"
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(SweepSummary.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return sorted(out, key=lambda s: -s.created)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def metric_cell(stats: dict[str, Any]) -> str:
    if not stats or stats.get("mean") is None:
        return "n/a"
    text = _fmt(stats["mean"])
    if stats["n"] > 1:
        text += f" ± {_fmt(stats['std'])}"
    return text


def claim_cell(c: dict[str, Any]) -> str:
    if c.get("verdict") == "error":
        return "error"
    tag = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconcl."}.get(c["verdict"], "?")
    return f"{tag} {c['seeds_passed']}/{c['seeds_total']}"


def table_rows(summary: SweepSummary) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the grid table (shared by the terminal and the HTML page)."""
    keys = list(summary.grid)
    claim_ids: list[str] = []
    for p in summary.points:
        claim_ids.extend(c for c in p.claims if c not in claim_ids)
    head = [*keys, "runs ok", *summary.metrics, *claim_ids]
    rows = []
    for p in summary.points:
        ok = sum(s == "ok" for s in p.statuses)
        cells = [_fmt(p.params.get(k)) for k in keys] + [f"{ok}/{len(p.statuses)}"]
        cells += [metric_cell(p.metrics.get(m, {})) for m in summary.metrics]
        cells += [claim_cell(p.claims[c]) if c in p.claims else "—" for c in claim_ids]
        rows.append(cells)
    return head, rows


def grid_table_text(summary: SweepSummary) -> str:
    """The grid as an aligned text table, one row per point."""
    head, rows = table_rows(summary)
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)
    ]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    title = (
        f"sweep {summary.sweep_id}: {summary.experiment} [{summary.preset}], "
        f"{len(summary.points)} grid point(s) x {summary.seeds} seed(s)"
    )
    return "\n".join([title, line(head), line(["-" * w for w in widths]), *map(line, rows)])
