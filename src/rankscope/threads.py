"""Thread policy: one intra-op thread per process unless asked otherwise.

Measured on 2-core machines: with 2 threads, torch's OpenMP pool stalls as soon as anything
else runs on the cores (svdvals of a 256x256 matrix went from 4 ms to 600 ms). rankscope's
processes (the CLI, sweep workers, the test suite) therefore run single-threaded and scale
out with processes. ``RANKSCOPE_THREADS=N`` or ``rankscope --threads N`` raises the count.

Importing :mod:`rankscope` as a library changes nothing; call :func:`set_threads` yourself.
"""

from __future__ import annotations

import os

ENV_VAR = "RANKSCOPE_THREADS"
_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def requested_threads(default: int = 1) -> int:
    """The thread count asked for by ``RANKSCOPE_THREADS`` (``default`` when unset)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return default
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(
            f"{ENV_VAR}={raw!r} is not an integer; expected a thread count >= 1"
        ) from None
    if n < 1:
        raise ValueError(f"{ENV_VAR}={n} must be >= 1")
    return n


def set_blas_env(n: int) -> None:
    """Set the BLAS/OpenMP environment variables; effective only before numpy/torch load."""
    for var in _BLAS_VARS:
        os.environ[var] = str(n)


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads in torch and in numpy's BLAS (when threadpoolctl is present)."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"thread count must be an int >= 1, got {n!r}")
    import torch

    torch.set_num_threads(n)
    try:  # numpy's BLAS pool after import; threadpoolctl ships with scikit-learn
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        set_blas_env(n)
