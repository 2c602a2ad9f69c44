"""A killed sweep leaves no process behind; SIGTERM stops it cleanly with finished runs stored.

Each test starts a real ``python -m rankscope sweep`` on a grid of one fast point (seconds)
and two that would run for hours, so that both workers are computing when the signal comes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rankscope

psutil = pytest.importorskip("psutil")

SRC = str(Path(rankscope.__file__).resolve().parents[1])
GRID = "lr=5e-3,1e-7,2e-7"  # scalar-mode smoke: 5e-3 finishes in < 1 s, the others never


def _start(store: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "RANKSCOPE_THREADS": "1"}
    cmd = [sys.executable, "-m", "rankscope", "sweep", "scalar-mode", "--preset", "smoke"]
    cmd += ["--grid", GRID, "--workers", "2", "--store", str(store)]
    store.parent.mkdir(parents=True, exist_ok=True)
    log = open(store.parent / "sweep.log", "wb")  # a file, not a pipe a survivor could hold
    try:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()


def _log(store: Path) -> str:
    return (store.parent / "sweep.log").read_text(errors="replace")[-3000:]


def _alive(p) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_until(cond, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _finished_runs(store: Path) -> int:
    from rankscope.store import Store

    if not (store / "catalog.sqlite").exists() and not any(store.glob("*.sqlite*")):
        return 0
    try:
        return sum(r.status == "ok" for r in Store(store, create=False).runs())
    except Exception:  # the store is being created
        return 0


def _running_sweep(tmp_path: Path):
    store = tmp_path / "st"
    proc = _start(store)
    main = psutil.Process(proc.pid)
    try:
        _wait_until(lambda: _finished_runs(store) >= 1, 120, "the fast grid point to be stored")
        _wait_until(lambda: len(main.children(recursive=True)) >= 2, 60, "two worker processes")
    except AssertionError as exc:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"{exc}\n{_log(store)}") from None
    return proc, main, main.children(recursive=True), store


def _assert_all_gone(procs, timeout: float = 10.0) -> None:
    try:
        _wait_until(lambda: not any(_alive(p) for p in procs), timeout, "every descendant to end")
    finally:
        for p in procs:  # never leave them behind, even when the assertion fails
            if _alive(p):
                p.kill()


def test_sigkill_of_a_sweep_leaves_no_worker_or_resource_tracker(tmp_path):
    proc, main, descendants, _ = _running_sweep(tmp_path)
    assert any("resource_tracker" in " ".join(p.cmdline()) for p in descendants)
    main.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    _assert_all_gone(descendants)


def test_sigterm_ends_a_sweep_cleanly_with_the_finished_runs_stored(tmp_path):
    proc, main, descendants, store = _running_sweep(tmp_path)
    main.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        _assert_all_gone([main, *descendants])
    assert proc.returncode == 143, _log(store)
    assert "stopped by SIGTERM" in _log(store)
    from rankscope.store import Store

    runs = Store(store, create=False).runs("scalar-mode")
    assert [r.status for r in runs] == ["ok"]  # the in-flight runs are lost, not half-saved
