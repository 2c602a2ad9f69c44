"""Static HTML report built from the store: claims table on top, then figures, config, runs.

Everything is written under ``<store>/report/``: ``index.html`` lists every evaluated
experiment; ``<experiment>/<preset>/index.html`` holds one experiment's claims and figures
(PNG shown, PDF linked). No script, stylesheet or font is fetched: the pages open from disk.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankscope.experiments.registry import all_experiments
from rankscope.report.figures import figures_for
from rankscope.results import Result
from rankscope.store import Store

__all__ = ["render_figures", "write_experiment_report", "write_index", "write_run_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.35em .5em;vertical-align:top;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#e3f6e3;color:#145214;font-weight:600}
.fail{background:#fde2e2;color:#8a1111;font-weight:600}
.inconclusive{background:#fff4d6;color:#7a5a00;font-weight:600}
.soft{font-weight:400;font-size:.85em;color:#666}
figure{margin:1.2em 0;border:1px solid #eee;padding:.6em}
figure img{max-width:100%}figcaption{font-size:.9em;color:#444}
code,pre{font-size:.85em;background:#f6f6f6}pre{padding:.6em;overflow-x:auto}
.meas{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;white-space:pre-wrap}
"""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(v, list):
        if len(v) > 12:
            return "[" + ", ".join(_fmt(x) for x in v[:12]) + f", … ({len(v)} values)]"
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def format_measured(measured: dict[str, Any]) -> str:
    return "; ".join(f"{k} = {_fmt(v)}" for k, v in measured.items())


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}<p class='soft'>Written by rankscope on "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p></body></html>"
    )


def _claims_table(claims: Sequence[dict[str, Any]]) -> str:
    rows = []
    for c in claims:
        verdict = c["verdict"]
        soft = (
            "" if c.get("hard", True) else "<br><span class='soft'>trend, not a hard check</span>"
        )
        note = f"<br><span class='soft'>{html.escape(c['note'])}</span>" if c.get("note") else ""
        rows.append(
            "<tr>"
            f"<td><b>{html.escape(c['id'])}</b></td>"
            f"<td>{html.escape(c['paper'])}</td>"
            f"<td>{html.escape(c['statement'])}</td>"
            f"<td>{html.escape(c['expected'])}</td>"
            f"<td class='meas'>{html.escape(format_measured(c['measured']))}{note}</td>"
            f"<td class='{verdict}'>{verdict}{soft}</td>"
            f"<td class='num'>{c['seeds_passed']}/{c['seeds_total']}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>claim</th><th>paper</th><th>statement</th><th>expected</th><th>measured</th>"
        "<th>verdict</th><th>seeds held</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def render_figures(exp_id: str, results: Sequence[Result], out_dir: Path) -> list[dict[str, str]]:
    """Draw every registered figure of ``exp_id``; PNG and PDF into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    exp = all_experiments().get(exp_id)
    usable = [exp.typed(r) if exp else r for r in results if r.status == "ok"]
    for spec in figures_for(exp_id):
        entry = {"name": spec.name, "title": spec.title, "caption": spec.caption}
        if not usable:
            entry["error"] = "no finished run to draw"
            made.append(entry)
            continue
        try:
            fig, _ = spec.draw(usable)
            fig.savefig(out_dir / f"{spec.name}.png", dpi=110)
            fig.savefig(out_dir / f"{spec.name}.pdf")
            entry["png"] = f"{spec.name}.png"
            entry["pdf"] = f"{spec.name}.pdf"
        except Exception as exc:  # a broken figure must not hide the claims
            entry["error"] = f"{type(exc).__name__}: {exc}"
        made.append(entry)
    return made


def _figures_html(figs: Sequence[dict[str, str]]) -> str:
    parts = []
    for f in figs:
        if "png" in f:
            parts.append(
                f"<figure><img src='{f['png']}' alt='{html.escape(f['title'])}'>"
                f"<figcaption><b>{html.escape(f['title'])}.</b> {html.escape(f['caption'])} "
                f"(<a href='{f['pdf']}'>PDF</a>)</figcaption></figure>"
            )
        else:
            parts.append(
                f"<p><b>{html.escape(f['title'])}</b>: not drawn ({html.escape(f['error'])})</p>"
            )
    return "".join(parts) or "<p>No figures are registered for this experiment.</p>"


def _runs_table(store: Store, results: Sequence[Result]) -> str:
    rows = []
    for r in results:
        info = store.run_info(r.run_id)
        extra = f"diverged at step {r.diverged_step}" if r.status == "diverged" else ""
        if r.status == "failed" and r.error:
            extra = html.escape(r.error.strip().splitlines()[-1])
        rows.append(
            f"<tr><td><code>{r.run_id}</code></td><td class='num'>{r.seed}</td>"
            f"<td class='{'pass' if r.status == 'ok' else 'fail'}'>{r.status}</td>"
            f"<td class='num'>{info.wall_time:.2f} s</td><td>{extra}</td></tr>"
        )
    head = "<tr><th>run</th><th>seed</th><th>status</th><th>wall time</th><th>note</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def write_experiment_report(store: Store, exp_id: str, preset: str | None = None) -> Path:
    """Write ``<store>/report/<exp>/<preset>/index.html`` from the newest stored evaluation."""
    latest = store.latest_verdicts(exp_id, preset)
    if latest is None:
        raise KeyError(
            f"no evaluated runs of {exp_id!r}"
            + (f" at preset {preset!r}" if preset else "")
            + f" in store {str(store.root)!r}; run `rankscope reproduce {exp_id}` first"
        )
    preset, claims, run_ids = latest
    results = [store.load_run(r) for r in run_ids]
    out = store.root / "report" / exp_id / preset
    figs = render_figures(exp_id, results, out)
    exp = all_experiments().get(exp_id)
    title = exp.title if exp else exp_id
    desc = html.escape(exp.description) if exp else ""
    counts = {v: sum(c["verdict"] == v for c in claims) for v in ("pass", "fail", "inconclusive")}
    config = results[0].config if results else {}
    prov = store.provenance(run_ids[0]) if run_ids else {}
    body = (
        f"<p><a href='../../index.html'>← all experiments</a></p>"
        f"<h1>{html.escape(exp_id)}: {html.escape(title)}</h1>"
        f"<p>{desc}</p><p>Preset <b>{html.escape(preset)}</b>, {len(results)} seed(s). "
        f"Claims: {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['inconclusive']} inconclusive.</p>"
        f"<h2>Claims</h2>{_claims_table(claims)}"
        f"<h2>Figures</h2>{_figures_html(figs)}"
        f"<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=2))}</pre>"
        f"<h2>Runs</h2>{_runs_table(store, results)}"
        f"<h2>Provenance</h2><pre>{html.escape(json.dumps(prov, indent=2))}</pre>"
    )
    path = out / "index.html"
    path.write_text(_page(f"rankscope: {exp_id}", body), encoding="utf-8")
    return path


def write_run_report(store: Store, run_id: str) -> Path:
    """A page for one stored run: its summary, figures drawn from it alone, provenance."""
    info = store.run_info(run_id)
    result = store.load_run(run_id)
    out = store.root / "report" / "runs" / run_id
    figs = render_figures(info.experiment, [result], out)
    summary = json.dumps(result.summary, indent=2, default=str)
    body = (
        f"<p><a href='../../index.html'>← all experiments</a></p>"
        f"<h1>Run <code>{run_id}</code> of {html.escape(info.experiment)}</h1>"
        f"<p>Seed {info.seed}, preset {html.escape(info.preset)}, status <b>{info.status}</b>"
        f"{f' (diverged at step {info.diverged_step})' if info.diverged_step is not None else ''}"
        f", {info.wall_time:.2f} s.</p>"
        f"<h2>Summary</h2><pre>{html.escape(summary)}</pre>"
        f"<h2>Figures</h2>{_figures_html(figs)}"
        f"<h2>Configuration</h2><pre>{html.escape(json.dumps(result.config, indent=2))}</pre>"
        f"<h2>Provenance</h2><pre>{html.escape(json.dumps(store.provenance(run_id), indent=2))}"
        "</pre>"
    )
    path = out / "index.html"
    path.write_text(_page(f"rankscope run {run_id}", body), encoding="utf-8")
    return path


def write_index(store: Store) -> Path:
    """``<store>/report/index.html``: every evaluated (experiment, preset) with its verdicts."""
    rows = []
    experiments = all_experiments()
    for exp_id, preset in store.evaluated():
        latest = store.latest_verdicts(exp_id, preset)
        if latest is None:
            continue
        _, claims, run_ids = latest
        counts = {
            v: sum(c["verdict"] == v for c in claims) for v in ("pass", "fail", "inconclusive")
        }
        page = store.root / "report" / exp_id / preset / "index.html"
        link = (
            f"<a href='{exp_id}/{preset}/index.html'>{html.escape(exp_id)}</a>"
            if page.exists()
            else html.escape(exp_id)
        )
        exp = experiments.get(exp_id)
        title = html.escape(exp.title) if exp else ""
        soft_fail = sum(c["verdict"] == "fail" and not c.get("hard", True) for c in claims)
        fails = f"{counts['fail']}" + (f" ({soft_fail} trend)" if soft_fail else "")
        rows.append(
            f"<tr><td>{link}</td><td>{title}</td><td>{html.escape(preset)}</td>"
            f"<td class='num'>{len(run_ids)}</td>"
            f"<td class='pass num'>{counts['pass']}</td><td class='fail num'>{fails}</td>"
            f"<td class='inconclusive num'>{counts['inconclusive']}</td></tr>"
        )
    head = (
        "<tr><th>experiment</th><th>what it shows</th><th>preset</th><th>runs</th><th>pass</th>"
        "<th>fail</th>"
        "<th>inconclusive</th></tr>"
    )
    body = (
        "<h1>rankscope report</h1><p>Each experiment reproduces a paper's finding; its claims are "
        "checked by code over several seeds. Store: "
        f"<code>{html.escape(str(store.root.resolve()))}</code>.</p>"
        f"<table>{head}{''.join(rows)}</table>"
    )
    path = store.root / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_page("rankscope report", body), encoding="utf-8")
    return path
