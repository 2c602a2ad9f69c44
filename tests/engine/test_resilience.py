"""A sweep killed with SIGKILL resumes; process pool and Dask give the same records."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rankscope.store import Store
from rankscope.sweep.executors import make_executor
from rankscope.sweep.runner import run_experiment

SLOW = ["--set", "lr=5e-4", "--set", "max_time=12"]
GRID = ["--grid", "target=1,1.5,2,2.5,3,3.5"]


def _sweep(store, extra=()):
    cmd = [
        sys.executable,
        "-m",
        "rankscope",
        "sweep",
        "scalar-mode",
        "--preset",
        "smoke",
        *GRID,
        *SLOW,
        "--store",
        str(store),
        "--workers",
        "1",
        *extra,
    ]
    return cmd


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    store = tmp_path / "st"
    proc = subprocess.Popen(
        _sweep(store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            if (store / "catalog.sqlite").exists() and len(Store(store).runs()) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the sweep never finished two runs")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {r.run_id: r.created for r in Store(store).runs()}
    assert 2 <= len(before) < 6
    done = subprocess.run(_sweep(store, ["--json"]), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    st = Store(store)  # opens cleanly
    after = {r.run_id: r.created for r in st.runs()}
    assert len(after) == 6
    for run_id, created in before.items():  # finished runs neither lost nor recomputed
        assert after[run_id] == created
    assert f"{len(before)} run(s) already in the store" in done.stderr


def _records(store, run_ids):
    return {r: Store(store).load_run(r).records.value for r in run_ids}


@pytest.mark.slow
def test_process_pool_and_dask_match_inline(tmp_path):
    pytest.importorskip("distributed")
    over = ["max_time=3", "lr=0.005"]
    inline = run_experiment(
        "scalar-mode", preset="smoke", seeds=[0, 1, 2], overrides=over, store=Store(tmp_path / "a")
    )
    pool = make_executor("process", workers=2)
    try:
        ids = run_experiment(
            "scalar-mode",
            preset="smoke",
            seeds=[0, 1, 2],
            overrides=over,
            store=Store(tmp_path / "b"),
            executor=pool,
        )
    finally:
        pool.shutdown()
    dask = make_executor("dask", dask_workers=2)
    try:
        ids2 = run_experiment(
            "scalar-mode",
            preset="smoke",
            seeds=[0, 1, 2],
            overrides=over,
            store=Store(tmp_path / "c"),
            executor=dask,
        )
    finally:
        dask.shutdown()
    assert inline == ids == ids2
    a, b, c = (_records(tmp_path / x, inline) for x in "abc")
    for r in inline:
        np.testing.assert_array_equal(a[r], b[r])
        np.testing.assert_array_equal(a[r], c[r])
