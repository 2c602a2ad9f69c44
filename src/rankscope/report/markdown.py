"""The claims of every evaluated experiment as one Markdown document (for READMEs and notes)."""

from __future__ import annotations

from rankscope.report.claims_text import headline, unicode_math
from rankscope.store import Store

__all__ = ["claims_markdown"]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def claims_markdown(store: Store, preset: str | None = None) -> str:
    """One section per (experiment, preset) with the newest evaluation's claims table."""
    parts = []
    for exp_id, p in store.evaluated():
        if preset is not None and p != preset:
            continue
        latest = store.latest_verdicts(exp_id, p)
        if latest is None:
            continue
        _, claims, run_ids = latest
        walls = [store.run_info(r).wall_time for r in run_ids]
        parts.append(
            f"### `{exp_id}` ({p}, {len(run_ids)} seed(s), {sum(walls):.0f} s of run time)\n\n"
            "| claim | verdict | seeds held | expected | measured (headline) |\n"
            "|---|---|---|---|---|"
        )
        for c in claims:
            verdict = c["verdict"] + ("" if c.get("hard", True) else " (trend)")
            parts.append(
                f"| {c['id']} | **{verdict}** | {c['seeds_passed']}/{c['seeds_total']} | "
                f"{_cell(unicode_math(c['expected']))} | {_cell(unicode_math(headline(c)))} |"
            )
        parts.append("")
    if parts:
        parts.append("Every measured number of a claim: `rankscope show-claim ID CLAIM`.")
    return "\n".join(parts)
