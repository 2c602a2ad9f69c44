"""Executors behind one interface (``concurrent.futures.Executor``): inline, process pool, Dask.

- ``inline``: runs each job in the calling process at ``submit`` (progress inside a run shows);
- ``process``: a spawn-context process pool, one intra-op thread per worker (measured here: two
  1-thread processes beat one 2-thread process on 2 cores);
- ``dask``: a ``distributed.Client`` executor, connected to ``scheduler`` or to a LocalCluster
  of ``dask_workers`` single-threaded worker processes (optional extra ``rankscope[dask]``).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from rankscope.optional import require

__all__ = ["InlineExecutor", "make_executor", "terminate_workers", "worker_init"]

_WATCH_INTERVAL_S = 0.5


def worker_init(threads: int = 1, parent_pid: int | None = None) -> None:
    """Process initializer: die with the parent, then fix the thread policy.

    A worker must not outlive the process that submitted its job (a killed sweep would leave
    it computing under PID 1). On Linux the kernel sends it SIGKILL when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also polls the parent pid and
    exits the process when it changes.
    """
    if parent_pid is not None:
        die_with_parent(parent_pid)
    from rankscope import threads as th

    th.set_blas_env(threads)
    th.set_threads(threads)


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` (its parent) ends."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            pr_set_pdeathsig = 1
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl: the thread remains
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            threading.Event().wait(_WATCH_INTERVAL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="rankscope-parent-watch", daemon=True).start()


def terminate_workers(executor: Executor) -> None:
    """Stop an executor now: cancel queued jobs and kill the worker processes in flight.

    ``shutdown(wait=True)`` would wait for every running job (minutes); on SIGTERM or Ctrl-C
    the finished runs are already stored, so the workers are killed instead.
    """
    if isinstance(executor, ProcessPoolExecutor):
        procs = list(getattr(executor, "_processes", {}).values())  # no public handle
        executor.shutdown(wait=False, cancel_futures=True)
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(timeout=5)
        executor.shutdown(wait=True)
        return
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except TypeError:  # an executor without cancel_futures
        executor.shutdown(wait=False)


class InlineExecutor(Executor):
    """Runs a job immediately in this process; exceptions land in the returned future."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            fut.set_exception(exc)
        return fut


class _DaskExecutor(Executor):
    """Wraps a distributed Client's executor and closes the client (and its cluster) on exit."""

    def __init__(self, client, cluster=None):
        self.client = client
        self.cluster = cluster
        self._ex = client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._ex.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._ex.shutdown(wait=wait)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(
    kind: str = "inline",
    *,
    workers: int = 2,
    scheduler: str | None = None,
    dask_workers: int | None = None,
    threads: int = 1,
) -> Executor:
    """Build an executor. ``kind`` is ``inline``, ``process`` or ``dask``."""
    if scheduler is not None or dask_workers is not None:
        kind = "dask"
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_init,
            initargs=(threads, os.getpid()),
        )
    if kind == "dask":
        distributed = require("distributed", extra="dask", needed_for="Dask execution")
        Client, LocalCluster = distributed.Client, distributed.LocalCluster
        if scheduler is not None:
            client = Client(scheduler, set_as_default=False)
            client.run(worker_init, threads)
            return _DaskExecutor(client)
        n = dask_workers or workers
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        )
        client = Client(cluster, set_as_default=False)
        client.run(worker_init, threads)
        return _DaskExecutor(client, cluster)
    raise ValueError(f"unknown executor kind {kind!r}; expected 'inline', 'process' or 'dask'")
