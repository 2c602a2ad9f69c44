"""A sweep's page: the grid table (verdicts and metrics per point) and each metric's figure.

Written to ``<store>/report/sweeps/<sweep id>/index.html`` from the sweep's manifest
(:mod:`rankscope.sweep.summary`); the report index lists every sweep.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rankscope.report.figures.base import new_figure
from rankscope.sweep.summary import SweepSummary, load_sweeps, table_rows

__all__ = ["draw_metric", "sweeps_index_html", "write_all_sweep_reports", "write_sweep_report"]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def draw_metric(summary: SweepSummary, metric: str):
    """``metric`` (mean ± std over seeds) against the first swept parameter; one line per
    combination of the other swept parameters."""
    keys = list(summary.grid)
    x_key = keys[0]
    others = keys[1:]
    fig, ax = new_figure(width=5.6, height=3.8)
    groups: dict[tuple, list[tuple[Any, dict[str, Any]]]] = {}
    for p in summary.points:
        groups.setdefault(tuple(p.params.get(k) for k in others), []).append(
            (p.params.get(x_key), p.metrics.get(metric, {}))
        )
    numeric_x = all(_is_number(x) for g in groups.values() for x, _ in g)
    labels = sorted({str(x) for g in groups.values() for x, _ in g}) if not numeric_x else []
    for combo, pts in groups.items():
        pts = [(x, st) for x, st in pts if st.get("mean") is not None]
        if not pts:
            continue
        if numeric_x:
            pts.sort(key=lambda t: t[0])
            xs = [float(x) for x, _ in pts]
        else:
            xs = [labels.index(str(x)) for x, _ in pts]
        ys = [st["mean"] for _, st in pts]
        errs = [st["std"] if st.get("n", 0) > 1 else 0.0 for _, st in pts]
        label = ", ".join(f"{k}={v}" for k, v in zip(others, combo)) or None
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, lw=1.4, label=label)
    if numeric_x:
        xs_all = [float(p.params[x_key]) for p in summary.points if _is_number(p.params.get(x_key))]
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 20:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(x_key)
    ax.set_ylabel(metric + (" (mean ± std over seeds)" if summary.seeds > 1 else ""))
    ax.set_title(f"{summary.experiment}: {metric} against {x_key}", fontsize=10)
    if others:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig, ax


def _cell_class(text: str) -> str:
    if text.startswith("pass"):
        return "pass"
    if text.startswith("FAIL"):
        return "fail"
    if text.startswith("inconcl"):
        return "inconclusive"
    return ""


def write_sweep_report(store: Any, summary: SweepSummary) -> Path:
    """Write the sweep's page and one PNG per chosen metric; returns the page's path."""
    from rankscope.report.html import page

    out = Path(store.root) / "report" / "sweeps" / summary.sweep_id
    out.mkdir(parents=True, exist_ok=True)
    figs = []
    for metric in summary.metrics:
        name = "metric-" + "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in metric)
        if not any(p.metrics.get(metric, {}).get("mean") is not None for p in summary.points):
            figs.append(f"<p><b>{html.escape(metric)}</b>: no finished run to draw</p>")
            continue
        fig, _ = draw_metric(summary, metric)
        fig.savefig(out / f"{name}.png", dpi=110)
        figs.append(
            f"<figure><img src='{name}.png' alt='{html.escape(metric)}'><figcaption>"
            f"<b>{html.escape(metric)}</b> against {html.escape(next(iter(summary.grid)))}; "
            "error bars: standard deviation over seeds.</figcaption></figure>"
        )
    head, rows = table_rows(summary)
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body_rows = "".join(
        "<tr>" + "".join(f"<td class='{_cell_class(c)}'>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    grid_text = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in summary.grid.items())
    body = (
        "<p><a href='../../index.html'>← all experiments</a></p>"
        f"<h1>Sweep {html.escape(summary.sweep_id)}</h1>"
        f"<p>{html.escape(summary.experiment)} at preset <b>{html.escape(summary.preset)}</b>, "
        f"{html.escape(grid_text)}; {summary.seeds} seed(s) per point. Claim cells give the "
        "verdict over the point's seeds and how many held; metric cells the mean ± standard "
        "deviation over seeds.</p>"
        f"<h2>Grid</h2><table class='sweep'><tr>{th}</tr>{body_rows}</table>"
        f"<h2>Figures</h2>{''.join(figs) or '<p>No metric chosen (sweep --metric NAME).</p>'}"
    )
    path = out / "index.html"
    path.write_text(page(f"rankscope sweep {summary.sweep_id}", body), encoding="utf-8")
    return path


def write_all_sweep_reports(store: Any) -> list[Path]:
    return [write_sweep_report(store, s) for s in load_sweeps(store)]


def sweeps_index_html(store: Any) -> str:
    """The index's sweep section (empty when the store holds no sweep)."""
    sweeps = load_sweeps(store)
    if not sweeps:
        return ""
    rows = []
    for s in sweeps:
        link = f"sweeps/{s.sweep_id}/index.html"
        exists = (Path(store.root) / "report" / link).exists()
        name = f"<a href='{link}'>{html.escape(s.sweep_id)}</a>" if exists else s.sweep_id
        runs = sum(len(p.run_ids) for p in s.points)
        grid = "; ".join(f"{k} ∈ {{{', '.join(map(str, v))}}}" for k, v in s.grid.items())
        rows.append(
            f"<tr><td>{name}</td><td>{html.escape(s.experiment)}</td>"
            f"<td>{html.escape(grid)}</td><td class='num'>{len(s.points)}</td>"
            f"<td class='num'>{runs}</td><td>{html.escape(', '.join(s.metrics)) or '—'}</td></tr>"
        )
    head = (
        "<tr><th>sweep</th><th>experiment</th><th>grid</th><th>points</th><th>runs</th>"
        "<th>metrics</th></tr>"
    )
    return f"<h2>Sweeps</h2><table class='sweeps'>{head}{''.join(rows)}</table>"
