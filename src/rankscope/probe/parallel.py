"""Thread control for whole-model analysis: one BLAS thread per layer, a pool over layers.

``analyze`` is called from a user's own process, with whatever thread settings it has (torch
and OpenBLAS each default to one thread per core). Letting every layer's BLAS call spread
over all cores while the layers run one after another oversubscribes small matrices (measured
on 2 cores: 2.3–2.8 s for MiniLM's 37 matrices, against 0.4–0.5 s at one thread). Instead,
:func:`scoped_kernel_threads` holds BLAS (through ``threadpoolctl``) and torch's intra-op
pool at one thread for the duration of the call, and :func:`map_ordered` runs independent
layers in a thread pool (numpy, scipy and torch release the GIL in their kernels), so every
core works on its own layer. Both restore the caller's settings on exit, also on error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

__all__ = ["available_cores", "map_ordered", "scoped_kernel_threads"]

T = TypeVar("T")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def scoped_kernel_threads(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` BLAS threads and ``n`` torch intra-op threads, then restore.

    >>> before = torch.get_num_threads()
    >>> with scoped_kernel_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"thread count must be an int >= 1, got {n!r}")
    previous = torch.get_num_threads()
    limiter = None
    try:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=n, user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn/scipy stacks
        limiter = None
    try:
        if previous != n:
            torch.set_num_threads(n)
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
        if limiter is not None:
            limiter.restore_original_limits()


def map_ordered(fn: Callable[[T], Any], items: Sequence[T] | Iterable[T], workers: int) -> list:
    """``[fn(x) for x in items]``, computed by ``workers`` threads, results in input order."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))
