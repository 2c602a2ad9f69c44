"""The run store: one SQLite catalog plus one directory per run.

Layout under the store root (default ``./rankscope-runs``, or ``$RANKSCOPE_STORE``)::

    catalog.sqlite            runs, tidy records, claim verdicts (WAL mode)
    runs/<run_id>/            tensors.safetensors, figures
    report/                   the static HTML report (written by rankscope.report)

Only finished runs are written, each in one transaction (run row + all its records), so a
crash loses at most the runs in flight and a re-run skips what is already there (a run stored
as failed is retried and replaced). Tensors are written to a temporary file of the writing
process and renamed into place inside the transaction, so concurrent writers never mix them.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rankscope.records import Records
from rankscope.results import Result, summary_to_dict

__all__ = ["DEFAULT_STORE", "RunInfo", "Store", "StoreError", "default_store_path"]

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


class StoreError(RuntimeError):
    """A store whose files cannot be read (a corrupt catalog or tensors file); names the path."""


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

    def __init__(self, root: str | os.PathLike | None = None, *, create: bool = True):
        """Open the store at ``root``; ``create=False`` (readers) refuses a missing one."""
        self.root = Path(root) if root is not None else default_store_path()
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"store path {str(self.root)!r} exists and is not a directory")
        self.catalog = self.root / "catalog.sqlite"
        if not create and not self.catalog.is_file():
            raise FileNotFoundError(
                f"no run store at {str(self.root)!r} (no catalog.sqlite there); run an "
                "experiment into it first or pass the --store path you ran with"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.executescript(_SCHEMA)
            # OR IGNORE: two processes opening a new store at once both reach this insert
            con.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"store {str(self.root)!r} has schema {row[0]}, this rankscope reads "
                    f"{SCHEMA_VERSION}; use another --store path"
                )

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @contextmanager
    def _connect(self, *, write: bool = False):
        """A connection whose block is one transaction; ``write=True`` takes the write lock
        first (BEGIN IMMEDIATE), so a read-then-insert cannot interleave with another process."""
        try:
            con = sqlite3.connect(self.catalog, timeout=60.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run catalog {str(self.catalog)!r}: {exc}") from exc
        with closing(con):
            try:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA foreign_keys=ON")
                con.execute("PRAGMA busy_timeout=60000")
                with con:  # one transaction
                    if write:
                        con.execute("BEGIN IMMEDIATE")
                    yield con
            except sqlite3.DatabaseError as exc:
                if "not a database" in str(exc) or "malformed" in str(exc):
                    raise StoreError(
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
        """The ids stored with an outcome (ok or diverged). A failed run is not finished: it
        may have failed for a passing reason (a worker killed, out of memory), so a re-run
        computes it again and :meth:`save_run` replaces the failed row."""
        ids = list(run_ids)
        if not ids:
            return set()
        with self._connect() as con:
            out = set()
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT run_id FROM runs WHERE status != 'failed' AND run_id IN ({marks})"
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
        """Write one finished run (ok, diverged or failed) atomically.

        A stored ok or diverged run is never overwritten. A stored *failed* run is replaced
        (a retry); its error is kept in the new row's provenance as ``replaces_failed``.
        """
        if not result.run_id:
            raise ValueError("result has no run_id; the runner assigns it")
        summary = _dumps(summary_to_dict(result.summary))
        config = _dumps(result.config)
        if result.run_id in self.finished([result.run_id]):
            return  # never overwrite a stored run (checked again under the write lock)
        tmp = self._write_tensors(result.run_id, result.tensors) if result.tensors else None
        rows = [
            (result.run_id, s, n, l, i, None if not math.isfinite(v) and math.isnan(v) else v)
            for s, n, l, i, v in result.records.rows()
        ]
        try:
            self._insert_run(
                result, experiment, preset, config, summary, provenance, wall_time, rows, tmp
            )
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _insert_run(self, result, experiment, preset, config, summary, prov, wall_time, rows, tmp):
        """The run row and its records in one write transaction; the tensors file (written to
        ``tmp``) is renamed into place only when this call stores the run."""
        with self._connect(write=True) as con:
            old = con.execute(
                "SELECT status, error, created FROM runs WHERE run_id=?", (result.run_id,)
            ).fetchone()
            if old is not None and old[0] != "failed":
                return  # another process stored it meanwhile: keep its row and its tensors
            if old is not None:  # a retry of a failed run: its records go with it (cascade)
                prov = {**prov, "replaces_failed": {"error": old[1], "created": old[2]}}
                con.execute("DELETE FROM runs WHERE run_id=?", (result.run_id,))
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
                    _dumps(prov),
                    float(wall_time),
                    time.time(),
                ),
            )
            con.executemany("INSERT INTO records VALUES (?,?,?,?,?,?)", rows)
            if tmp is not None:
                os.replace(tmp, self.run_dir(result.run_id) / "tensors.safetensors")

    def _write_tensors(self, run_id: str, tensors: dict[str, torch.Tensor]) -> Path:
        """Write the tensors to a temporary file of this process's own; returns its path."""
        from safetensors.torch import save_file

        d = self.run_dir(run_id)
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="tensors.", suffix=".tmp", dir=d)
        os.close(fd)
        clean = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(clean, name)
        return Path(name)

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
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                loaded = load_file(str(path))
            except (SafetensorError, OSError) as exc:
                raise StoreError(
                    f"run {run_id!r}: its tensors file {str(path)!r} is unreadable ({exc}); "
                    "load_run(..., tensors=False) reads the rest"
                ) from None
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
        with self._connect(write=True) as con:  # the new id and its rows under one lock
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
