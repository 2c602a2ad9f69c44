"""The run store: one SQLite catalog plus one directory per run.

Layout under the store root (default ``./rankscope-runs``, or ``$RANKSCOPE_STORE``)::

    catalog.sqlite            runs, tidy records, claim verdicts (WAL mode)
    runs/<run_id>/            tensors.safetensors, figures
    report/                   the static HTML report (written by rankscope.report)

Only finished runs are written, each in one transaction (run row + all its records), so a
crash loses at most the runs in flight and a re-run skips what is already there. Tensors are
written to a temporary file and renamed into place before the transaction commits.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rankscope.records import Records
from rankscope.results import Result

__all__ = ["DEFAULT_STORE", "RunInfo", "Store", "default_store_path"]

DEFAULT_STORE = "rankscope-runs"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    preset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    diverged_step INTEGER,
    error TEXT,
    summary TEXT NOT NULL,
    provenance TEXT NOT NULL,
    wall_time REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment, preset);
CREATE TABLE IF NOT EXISTS records (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    layer TEXT NOT NULL,
    idx INTEGER NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS records_by_run ON records (run_id, name);
CREATE TABLE IF NOT EXISTS verdicts (
    evaluation INTEGER NOT NULL,
    experiment TEXT NOT NULL,
    preset TEXT NOT NULL,
    claim_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    verdict TEXT NOT NULL,
    run_ids TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS verdicts_by_experiment ON verdicts (experiment, preset, evaluation);
"""


def default_store_path() -> Path:
    return Path(os.environ.get("RANKSCOPE_STORE", DEFAULT_STORE))


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment: str
    preset: str
    seed: int
    status: str
    wall_time: float
    created: float
    diverged_step: int | None
    error: str | None


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"summary value of type {type(obj).__name__} is not JSON-serializable")


def _dumps(obj: Any) -> str:
    # NaN/Inf are kept (Python's json writes NaN/Infinity and reads them back).
    return json.dumps(obj, default=_json_default, sort_keys=True)


class Store:
    """A run store rooted at ``root`` (created on first use)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_store_path()
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"store path {str(self.root)!r} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self.catalog = self.root / "catalog.sqlite"
        with self._connect() as con:
            con.executescript(_SCHEMA)
            row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise RuntimeError(
                    f"store {str(self.root)!r} has schema {row[0]}, this rankscope reads "
                    f"{SCHEMA_VERSION}; use another --store path"
                )

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @contextmanager
    def _connect(self):
        try:
            con = sqlite3.connect(self.catalog, timeout=60.0)
        except sqlite3.Error as exc:
            raise RuntimeError(f"cannot open the run catalog {str(self.catalog)!r}: {exc}") from exc
        with closing(con):
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA foreign_keys=ON")
                con.execute("PRAGMA busy_timeout=60000")
                with con:  # one transaction
                    yield con
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc) or "malformed" in str(exc):
                    raise RuntimeError(
                        f"the run catalog {str(self.catalog)!r} is not a readable SQLite "
                        f"file: {exc}"
                    ) from exc
                raise

    # ---- runs -------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def has_run(self, run_id: str) -> bool:
        with self._connect() as con:
            return (
                con.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None
            )

    def finished(self, run_ids: Iterable[str]) -> set[str]:
        ids = list(run_ids)
        if not ids:
            return set()
        with self._connect() as con:
            out = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                q = f"SELECT run_id FROM runs WHERE run_id IN ({','.join('?' * len(chunk))})"
                out.update(r[0] for r in con.execute(q, chunk))
            return out

    def save_run(
        self,
        result: Result,
        *,
        experiment: str,
        preset: str,
        provenance: dict[str, Any],
        wall_time: float,
    ) -> None:
        """Write one finished run (ok, diverged or failed) atomically. Existing runs are kept."""
        if not result.run_id:
            raise ValueError("result has no run_id; the runner assigns it")
        summary = _dumps(result.summary)
        config = _dumps(result.config)
        prov = _dumps(provenance)
        if result.tensors:
            self._write_tensors(result.run_id, result.tensors)
        rows = [
            (result.run_id, s, n, l, i, None if not math.isfinite(v) and math.isnan(v) else v)
            for s, n, l, i, v in result.records.rows()
        ]
        with self._connect() as con:
            if con.execute("SELECT 1 FROM runs WHERE run_id=?", (result.run_id,)).fetchone():
                return  # never overwrite a stored run
            con.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    result.run_id,
                    experiment,
                    preset,
                    int(result.seed),
                    config,
                    result.status,
                    result.diverged_step,
                    result.error,
                    summary,
                    prov,
                    float(wall_time),
                    time.time(),
                ),
            )
            con.executemany("INSERT INTO records VALUES (?,?,?,?,?,?)", rows)

    def _write_tensors(self, run_id: str, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "tensors.safetensors.tmp"
        clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(clean, str(tmp))
        os.replace(tmp, d / "tensors.safetensors")

    def load_run(self, run_id: str, *, tensors: bool = True) -> Result:
        with self._connect() as con:
            row = con.execute(
                "SELECT seed, config, status, diverged_step, error, summary "
                "FROM runs WHERE run_id=?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise KeyError(f"no run {run_id!r} in store {str(self.root)!r}")
            recs = con.execute(
                "SELECT step, name, layer, idx, value FROM records WHERE run_id=? ORDER BY rowid",
                (run_id,),
            ).fetchall()
        seed, config, status, dstep, error, summary = row
        records = Records.from_rows(
            (s, n, l, i, math.nan if v is None else v) for s, n, l, i, v in recs
        )
        loaded: dict[str, torch.Tensor] = {}
        path = self.run_dir(run_id) / "tensors.safetensors"
        if tensors and path.exists():
            from safetensors.torch import load_file

            loaded = load_file(str(path))
        return Result(
            summary=json.loads(summary),
            records=records,
            tensors=loaded,
            status=status,
            diverged_step=dstep,
            error=error,
            run_id=run_id,
            seed=seed,
            config=json.loads(config),
        )

    def runs(self, experiment: str | None = None, preset: str | None = None) -> list[RunInfo]:
        q = (
            "SELECT run_id, experiment, preset, seed, status, wall_time, created, diverged_step, "
            "error FROM runs"
        )
        cond, args = [], []
        if experiment is not None:
            cond.append("experiment=?")
            args.append(experiment)
        if preset is not None:
            cond.append("preset=?")
            args.append(preset)
        if cond:
            q += " WHERE " + " AND ".join(cond)
        q += " ORDER BY created"
        with self._connect() as con:
            return [RunInfo(*r) for r in con.execute(q, args)]

    def run_info(self, run_id: str) -> RunInfo:
        with self._connect() as con:
            r = con.execute(
                "SELECT run_id, experiment, preset, seed, status, wall_time, created, "
                "diverged_step, error FROM runs WHERE run_id=?",
                (run_id,),
            ).fetchone()
        if r is None:
            raise KeyError(f"no run {run_id!r} in store {str(self.root)!r}")
        return RunInfo(*r)

    def provenance(self, run_id: str) -> dict[str, Any]:
        with self._connect() as con:
            r = con.execute("SELECT provenance FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if r is None:
            raise KeyError(f"no run {run_id!r} in store {str(self.root)!r}")
        return json.loads(r[0])

    # ---- verdicts ---------------------------------------------------------------------
    def save_verdicts(
        self,
        experiment: str,
        preset: str,
        verdicts: Sequence[dict[str, Any]],
        run_ids: Sequence[str],
    ) -> int:
        """Store one evaluation (all claims of one experiment over ``run_ids``); returns its id."""
        now = time.time()
        with self._connect() as con:
            row = con.execute("SELECT COALESCE(MAX(evaluation), 0) + 1 FROM verdicts").fetchone()
            ev = int(row[0])
            con.executemany(
                "INSERT INTO verdicts VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        ev,
                        experiment,
                        preset,
                        v["id"],
                        _dumps(v),
                        v["verdict"],
                        _dumps(list(run_ids)),
                        now,
                    )
                    for v in verdicts
                ],
            )
        return ev

    def latest_verdicts(
        self, experiment: str, preset: str | None = None
    ) -> tuple[str, list[dict[str, Any]], list[str]] | None:
        """(preset, claim dicts, run ids) of the newest evaluation, or None."""
        q = "SELECT MAX(evaluation) FROM verdicts WHERE experiment=?"
        args: list[Any] = [experiment]
        if preset is not None:
            q += " AND preset=?"
            args.append(preset)
        with self._connect() as con:
            ev = con.execute(q, args).fetchone()[0]
            if ev is None:
                return None
            rows = con.execute(
                "SELECT preset, payload, run_ids FROM verdicts WHERE evaluation=? ORDER BY rowid",
                (ev,),
            ).fetchall()
        if not rows:
            return None
        return rows[0][0], [json.loads(r[1]) for r in rows], json.loads(rows[0][2])

    def evaluated(self) -> list[tuple[str, str]]:
        """(experiment, preset) pairs that have stored verdicts, in order of first evaluation."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT experiment, preset, MIN(evaluation) FROM verdicts "
                "GROUP BY experiment, preset ORDER BY 3"
            ).fetchall()
        return [(r[0], r[1]) for r in rows]
