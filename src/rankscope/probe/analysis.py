"""The result of :func:`rankscope.analyze`: tidy per-layer tables plus the spectra.

``layers``: one dict per ≥2-D weight (name, shape, kind, method, metrics..., and the ``rep_*``
and collapse metrics of the module that applies it when data was given).
``representations``: one dict per hooked module (also parameter-free ones such as ReLU).
``skipped``: the state_dict entries with no matrix (0-D/1-D), each with its reason.
``spectra``: name -> float64 singular values behind each ``layers`` row (top-k on the
randomized path); ``rep_spectra``: the same for ``representations``.
``model`` and ``settings``: what was analysed and how (provenance, definitions §0).

NaN marks a value that could not be computed (the row's ``unavailable`` says why); JSON
writes it as ``null``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rankscope.optional import require

__all__ = ["TABLE_COLUMNS", "Analysis"]

TABLES = ("layers", "representations", "skipped")
# columns of the terminal table, in order; those absent from every row are left out
TABLE_COLUMNS = (
    "name",
    "kind",
    "shape",
    "method",
    "rank_torch",
    "rank_rel1e-2",
    "rank_galanti",
    "max_rank",
    "stable_rank",
    "effective_rank",
    "s_max",
    "rep_rank_rel1e-2",
    "rep_effective_rank",
    "nc1",
)


@dataclass
class Analysis:
    """Per-layer rank metrics of one model (see module docstring)."""

    layers: list[dict[str, Any]]
    skipped: list[dict[str, Any]]
    spectra: dict[str, torch.Tensor]
    model: dict[str, Any]
    settings: dict[str, Any]
    representations: list[dict[str, Any]] = field(default_factory=list)
    rep_spectra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __repr__(self) -> str:
        rep = f", {len(self.representations)} representations" if self.representations else ""
        return (
            f"Analysis({len(self.layers)} weight matrices, {len(self.skipped)} skipped "
            f"tensors{rep}; source={self.model.get('source')!r})"
        )

    def to_rows(self, table: str = "layers") -> list[dict[str, Any]]:
        """Copies of the rows of ``table`` ('layers', 'representations' or 'skipped')."""
        return [dict(r) for r in self._table(table)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"layers": [...], "representations": [...], "skipped": [...],
        "model": {...}, "settings": {...}}`` with NaN/inf as None."""
        out = {t: [_jsonable(r) for r in self._table(t)] for t in TABLES}
        out["model"] = _jsonable(self.model)
        out["settings"] = _jsonable(self.settings)
        return out

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        """The :meth:`to_dict` object as strict JSON text; also written to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    def to_csv(self, path: str | Path | None = None, *, table: str = "layers") -> str:
        """One table as CSV (shape as ``AxB``, NaN as ``nan``); also written to ``path``."""
        rows = self._table(table)
        cols = _columns(rows)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: _csv_cell(r.get(c, "")) for c in cols})
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_frame(self, table: str = "layers"):
        """A pandas DataFrame of ``table`` (needs the ``pandas`` extra)."""
        pd = require(
            "pandas", extra="pandas", needed_for="Analysis.to_frame()",
            instead="use to_rows() or to_csv(), which need no pandas",
        )  # fmt: skip
        rows = self._table(table)
        return pd.DataFrame(rows, columns=_columns(rows))

    def to_text(self, table: str = "layers", columns: tuple[str, ...] | None = None) -> str:
        """An aligned plain-text table (numbers right-aligned, 4 significant digits)."""
        rows = self._table(table)
        present = _columns(rows)
        if columns is None:
            columns = tuple(c for c in TABLE_COLUMNS if c in present) if table == "layers" else ()
            columns = columns or tuple(c for c in present if c not in ("note", "unavailable"))
        cells = [[_text_cell(r.get(c, "")) for c in columns] for r in rows]
        widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
        numeric = [all(_is_number(r.get(c)) for r in rows if c in r) for c in columns]

        def fmt(values: list[str]) -> str:
            parts = [
                v.rjust(w) if num else v.ljust(w)
                for v, w, num in zip(values, widths, numeric, strict=True)
            ]
            return "  ".join(parts).rstrip()

        lines = [fmt(list(columns)), fmt(["-" * w for w in widths])]
        lines += [fmt(row) for row in cells]
        return "\n".join(lines)

    def _table(self, table: str) -> list[dict[str, Any]]:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; expected one of {TABLES}")
        return getattr(self, table)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    return obj


def _csv_cell(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return "x".join(str(i) for i in v)
    return v


def _text_cell(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "x".join(str(i) for i in v)
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:.4g}"
    return str(v)
