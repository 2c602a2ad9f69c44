"""Static HTML report built from the store: claims table on top, then figures, config, runs.

Everything is written under ``<store>/report/``: ``index.html`` lists every evaluated
experiment; ``<experiment>/<preset>/index.html`` holds one experiment's claims and figures
(PNG shown, PDF linked). No script, stylesheet or font is fetched: the pages open from disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankscope.experiments.registry import all_experiments
from rankscope.report.claims_text import (
    claim_field,
    format_value,
    headline,
    measured_lines,
    sorted_items,
    unicode_math,
)
from rankscope.report.figures import figures_for
from rankscope.results import Result
from rankscope.store import Store

__all__ = [
    "claims_table_html",
    "format_measured",
    "page",
    "render_figures",
    "write_experiment_report",
    "write_index",
    "write_run_report",
]

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
.zero{color:#888}
.soft{font-weight:400;font-size:.85em;color:#666}
.headline{font-variant-numeric:tabular-nums}
figure{margin:1.2em 0;border:1px solid #eee;padding:.6em}
figure img{max-width:100%}figcaption{font-size:.9em;color:#444}
code,pre{font-size:.85em;background:#f6f6f6}pre{padding:.6em;overflow-x:auto}
details{margin-top:.3em}summary{cursor:pointer;color:#245;font-size:.85em}
table.meas{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.8em;width:auto}
table.meas td{border:none;border-bottom:1px solid #eee;padding:.1em .6em .1em 0}
"""


def format_measured(measured: dict[str, Any]) -> str:
    """Every measured number on one line (keys in numeric order); the full view is elsewhere."""
    return "; ".join(f"{k} = {format_value(v)}" for k, v in sorted_items(measured))


def page(title: str, body: str) -> str:
    """A whole static HTML page (inline CSS, no script, nothing fetched)."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<link rel='icon' href='data:,'>"  # no favicon request (a 404 in a browser's console)
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}<p class='soft'>Written by rankscope on "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}.</p></body></html>"
    )


_page = page


def _e(text: Any) -> str:
    return html.escape(unicode_math(str(text)))


def _measured_details(c: dict[str, Any]) -> str:
    rows = measured_lines(claim_field(c, "measured", {}) or {})
    note = claim_field(c, "note", "")
    if not rows and not note:
        return ""
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    note_html = f"<p class='soft'>note: {_e(note)}</p>" if note else ""
    return (
        f"<details><summary>all measured numbers ({len(rows)})</summary>"
        f"<table class='meas'>{cells}</table>{note_html}</details>"
    )


def claims_table_html(claims: Sequence[dict[str, Any]]) -> str:
    """The claims table: claim, statement, expected, headline (+ all numbers), verdict, seeds."""
    rows = []
    for c in claims:
        verdict = claim_field(c, "verdict")
        soft = (
            ""
            if claim_field(c, "hard", True)
            else "<br><span class='soft'>trend, not a hard check</span>"
        )
        rows.append(
            "<tr class='claim'>"
            f"<td><b>{html.escape(claim_field(c, 'id'))}</b><br>"
            f"<span class='soft'>{html.escape(claim_field(c, 'paper'))}</span></td>"
            f"<td>{_e(claim_field(c, 'statement'))}</td>"
            f"<td>{_e(claim_field(c, 'expected'))}</td>"
            f"<td><span class='headline'>{_e(headline(c))}</span>{_measured_details(c)}</td>"
            f"<td class='verdict {verdict}'>{verdict}{soft}</td>"
            f"<td class='num'>{claim_field(c, 'seeds_passed')}/{claim_field(c, 'seeds_total')}</td>"
            "</tr>"
        )
    head = (
        "<tr><th>claim</th><th>statement</th><th>expected</th><th>measured (headline)</th>"
        "<th>verdict</th><th>seeds held</th></tr>"
    )
    return f"<table class='claims'>{head}{''.join(rows)}</table>"


_claims_table = claims_table_html


# ---- figures, drawn only when stale ------------------------------------------------------
_CACHE_FILE = "figures.json"


def _module_hash(module: str) -> str:
    path = getattr(sys.modules.get(module), "__file__", None)
    if not path:
        return "nosrc"
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _figure_key(spec: Any, exp_id: str, stamps: Sequence[tuple[str, str, float]]) -> str:
    """What a drawn figure depends on: its code and the (run, status, saved-at) it read."""
    draw_module = getattr(spec.draw, "__module__", "")
    payload = [exp_id, spec.name, spec.title, spec.caption, draw_module, _module_hash(draw_module)]
    payload.append([list(s) for s in stamps])
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()[:24]


def _draw(spec: Any, usable: Sequence[Result], out_dir: Path) -> dict[str, str]:
    entry = {"name": spec.name, "title": spec.title, "caption": spec.caption}
    if not usable:
        entry["error"] = "no finished run to draw"
        return entry
    try:
        fig, _ = spec.draw(usable)
        fig.savefig(out_dir / f"{spec.name}.png", dpi=110)
        fig.savefig(out_dir / f"{spec.name}.pdf")
        entry["png"] = f"{spec.name}.png"
        entry["pdf"] = f"{spec.name}.pdf"
    except Exception as exc:  # a broken figure must not hide the claims
        entry["error"] = f"{type(exc).__name__}: {exc}"
    return entry


def render_figures(exp_id: str, results: Sequence[Result], out_dir: Path) -> list[dict[str, str]]:
    """Draw every registered figure of ``exp_id``; PNG and PDF into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_draw(spec, _typed_ok(exp_id, results), out_dir) for spec in figures_for(exp_id)]


def _typed_ok(exp_id: str, results: Sequence[Result]) -> list[Result]:
    """The finished runs, with summaries rebuilt as the experiment's typed dataclass."""
    exp = all_experiments().get(exp_id)
    return [exp.typed(r) if exp else r for r in results if r.status == "ok"]


def render_figures_cached(
    store: Store, exp_id: str, run_ids: Sequence[str], out_dir: Path
) -> list[dict[str, str]]:
    """``render_figures`` that redraws only figures whose code or runs changed.

    Each figure's key hashes its drawing module's source and every run's (id, status,
    saved-at time); a figure whose key matches ``figures.json`` and whose files exist is
    kept as it is, and the runs are loaded only when some figure is stale.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = figures_for(exp_id)
    stamps = []
    for rid in run_ids:
        info = store.run_info(rid)
        stamps.append((rid, info.status, info.created))
    cache_path = out_dir / _CACHE_FILE
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cache = {}
    made, new_cache, usable = [], {}, None
    for spec in specs:
        key = _figure_key(spec, exp_id, stamps)
        old = cache.get(spec.name)
        files_ok = old is not None and all(
            (out_dir / old["entry"][k]).exists() for k in ("png", "pdf") if k in old["entry"]
        )
        if old is not None and old.get("key") == key and files_ok:
            entry = old["entry"]
        else:
            if usable is None:
                usable = _typed_ok(exp_id, [store.load_run(rid) for rid in run_ids])
            entry = _draw(spec, usable, out_dir)
        new_cache[spec.name] = {"key": key, "entry": entry}
        made.append(entry)
    cache_path.write_text(json.dumps(new_cache, indent=1), encoding="utf-8")
    return made


def _figures_html(figs: Sequence[dict[str, str]]) -> str:
    parts = []
    for f in figs:
        if "png" in f:
            parts.append(
                f"<figure><img src='{f['png']}' alt='{_e(f['title'])}'>"
                f"<figcaption><b>{_e(f['title'])}.</b> {_e(f['caption'])} "
                f"(<a href='{f['pdf']}'>PDF</a>)</figcaption></figure>"
            )
        else:
            parts.append(f"<p><b>{_e(f['title'])}</b>: not drawn ({html.escape(f['error'])})</p>")
    return "".join(parts) or "<p>No figures are registered for this experiment.</p>"


def _runs_table(store: Store, run_ids: Sequence[str]) -> str:
    rows = []
    for rid in run_ids:
        info = store.run_info(rid)
        extra = f"diverged at step {info.diverged_step}" if info.status == "diverged" else ""
        if info.status == "failed" and info.error:
            extra = html.escape(info.error.strip().splitlines()[-1])
        run_page = store.root / "report" / "runs" / rid / "index.html"
        name = f"<code>{rid}</code>"
        if run_page.exists():
            name = f"<a href='../../runs/{rid}/index.html'>{name}</a>"
        rows.append(
            f"<tr><td>{name}</td>"
            f"<td class='num'>{info.seed}</td>"
            f"<td class='{'pass' if info.status == 'ok' else 'fail'}'>{info.status}</td>"
            f"<td class='num'>{info.wall_time:.2f} s</td><td>{extra}</td></tr>"
        )
    head = "<tr><th>run</th><th>seed</th><th>status</th><th>wall time</th><th>note</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _json_block(obj: Any) -> str:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return f"<pre>{html.escape(json.dumps(obj, indent=2, default=str))}</pre>"


def _counts(claims: Sequence[dict[str, Any]]) -> dict[str, int]:
    return {v: sum(claim_field(c, "verdict") == v for c in claims) for v in VERDICT_NAMES}


VERDICT_NAMES = ("pass", "fail", "inconclusive")


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
    out = store.root / "report" / exp_id / preset
    figs = render_figures_cached(store, exp_id, run_ids, out)
    exp = all_experiments().get(exp_id)
    title = exp.title if exp else exp_id
    desc = _e(exp.description) if exp else ""
    counts = _counts(claims)
    config = store.load_run(run_ids[0], tensors=False).config if run_ids else {}
    prov = store.provenance(run_ids[0]) if run_ids else {}
    body = (
        f"<p><a href='../../index.html'>← all experiments</a></p>"
        f"<h1>{html.escape(exp_id)}: {_e(title)}</h1>"
        f"<p>{desc}</p><p>Preset <b>{html.escape(preset)}</b>, {len(run_ids)} seed(s). "
        f"Claims: {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['inconclusive']} inconclusive. Each headline gives the deciding numbers "
        "against the criterion; <i>all measured numbers</i> opens the rest.</p>"
        f"<h2>Claims</h2>{claims_table_html(claims)}"
        f"<h2>Figures</h2>{_figures_html(figs)}"
        f"<h2>Runs</h2>{_runs_table(store, run_ids)}"
        f"<h2>Configuration</h2>{_json_block(config)}"
        f"<h2>Provenance</h2>{_json_block(prov)}"
    )
    path = out / "index.html"
    path.write_text(page(f"rankscope: {exp_id}", body), encoding="utf-8")
    return path


def write_run_report(store: Store, run_id: str) -> Path:
    """One stored run: its status and claim headlines, its figures; summary, config last."""
    info = store.run_info(run_id)
    result = store.load_run(run_id)
    out = store.root / "report" / "runs" / run_id
    figs = render_figures_cached(store, info.experiment, [run_id], out)
    exp = all_experiments().get(info.experiment)
    claims_html = ""
    if exp is not None and result.status == "ok":
        from rankscope.experiments.claims import evaluate_claims

        try:
            verdicts = [v.as_dict() for v in evaluate_claims(exp, [result])]
            claims_html = (
                "<h2>Claims on this run alone</h2>"
                + claims_table_html(verdicts)
                + "<p class='soft'>Claims over several seeds are judged on the experiment's "
                "page; here each sees this one seed.</p>"
            )
        except Exception as exc:  # a claim bug must not hide the run
            claims_html = f"<p>claims could not be evaluated: {html.escape(repr(exc))}</p>"
    diverged = f" (diverged at step {info.diverged_step})" if info.diverged_step is not None else ""
    error = (
        f"<h2>Error</h2><pre>{html.escape(result.error)}</pre>"
        if result.status == "failed" and result.error
        else ""
    )
    body = (
        f"<p><a href='../../index.html'>← all experiments</a></p>"
        f"<h1>Run <code>{run_id}</code> of {html.escape(info.experiment)}</h1>"
        f"<p>Seed {info.seed}, preset {html.escape(info.preset)}, status <b>{info.status}</b>"
        f"{diverged}, {info.wall_time:.2f} s.</p>"
        f"{claims_html}{error}"
        f"<h2>Figures</h2>{_figures_html(figs)}"
        f"<h2>Summary</h2>{_json_block(result.summary)}"
        f"<h2>Configuration</h2>{_json_block(result.config)}"
        f"<h2>Provenance</h2>{_json_block(store.provenance(run_id))}"
    )
    path = out / "index.html"
    path.write_text(page(f"rankscope run {run_id}", body), encoding="utf-8")
    return path


def _num_cell(n: int, cls: str, text: str | None = None) -> str:
    """A count cell: coloured only when non-zero (0 failures is not an alarm)."""
    shown = text if text is not None else str(n)
    return f"<td class='{cls if n else 'zero'} num'>{shown}</td>"


def write_index(store: Store) -> Path:
    """``<store>/report/index.html``: every evaluated (experiment, preset), then every sweep."""
    rows = []
    experiments = all_experiments()
    for exp_id, preset in store.evaluated():
        latest = store.latest_verdicts(exp_id, preset)
        if latest is None:
            continue
        _, claims, run_ids = latest
        counts = _counts(claims)
        page_path = store.root / "report" / exp_id / preset / "index.html"
        link = (
            f"<a href='{exp_id}/{preset}/index.html'>{html.escape(exp_id)}</a>"
            if page_path.exists()
            else html.escape(exp_id)
        )
        exp = experiments.get(exp_id)
        shows = _e(exp.description) if exp else ""
        soft_fail = sum(
            claim_field(c, "verdict") == "fail" and not claim_field(c, "hard", True) for c in claims
        )
        fails = f"{counts['fail']}" + (f" ({soft_fail} trend)" if soft_fail else "")
        rows.append(
            f"<tr><td>{link}</td><td>{shows}</td><td>{html.escape(preset)}</td>"
            f"<td class='num'>{len(run_ids)}</td>"
            + _num_cell(counts["pass"], "pass")
            + _num_cell(counts["fail"] - soft_fail, "fail", fails)
            + _num_cell(counts["inconclusive"], "inconclusive")
            + "</tr>"
        )
    head = (
        "<tr><th>experiment</th><th>what it shows</th><th>preset</th><th>runs</th><th>pass</th>"
        "<th>fail</th><th>inconclusive</th></tr>"
    )
    from rankscope.report.sweeps import sweeps_index_html

    body = (
        "<h1>rankscope report</h1><p>Each experiment reproduces a paper's finding; its claims are "
        "checked by code over several seeds. Store: "
        f"<code>{html.escape(str(store.root.resolve()))}</code>.</p>"
        f"<table class='experiments'>{head}{''.join(rows)}</table>"
        f"{sweeps_index_html(store)}"
    )
    path = store.root / "report" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page("rankscope report", body), encoding="utf-8")
    return path
