"""Batched spectra: rankscope.metrics.singular_values on (1000, 32, 32) vs a Python loop.

Also times the two backends (torch.linalg.svdvals and scipy's gesdd) on single square
matrices, which is how ``backend='auto'`` was chosen. Prints ratios measured in this run.

    RANKSCOPE_THREADS=1 python benchmarks/bench_spectra.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import scipy.linalg
import torch

from rankscope.metrics import numerical_rank, singular_values, stable_rank
from rankscope.threads import requested_threads, set_threads


def best_of(fn, repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def batched_vs_loop(batch: int = 1000, n: int = 32) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n, n, generator=g)
    arr = x.double().numpy()

    def rankscope_batched():
        s = singular_values(x)
        return numerical_rank(s, shape=(n, n)), stable_rank(s)

    def python_loop():
        return [singular_values(x[i]) for i in range(batch)]

    def numpy_loop():
        return [np.linalg.svd(arr[i], compute_uv=False) for i in range(batch)]

    t_b, t_l, t_n = best_of(rankscope_batched), best_of(python_loop), best_of(numpy_loop)
    assert torch.allclose(rankscope_batched()[1], stable_rank(torch.stack(python_loop())))
    print(f"batched spectra ({batch}, {n}, {n}), float64 SVD + rank + stable rank:")
    print(f"  rankscope batched  {t_b * 1e3:8.1f} ms")
    print(f"  loop of singular_values {t_l * 1e3:8.1f} ms   ratio {t_l / t_b:5.1f}x")
    print(f"  loop of numpy svd  {t_n * 1e3:8.1f} ms   ratio {t_n / t_b:5.1f}x")


def backends(sizes=(64, 256, 512, 1024)) -> None:
    print("single square matrix, median of 7: time(torch svdvals) / time(scipy gesdd)")
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        for n in sizes:
            x = torch.randn(n, n, generator=g, dtype=dtype)
            a = x.numpy()
            reps = 7 if n < 1024 else 3
            t_t = best_of(lambda: torch.linalg.svdvals(x), reps)  # noqa: B023
            t_s = best_of(lambda: scipy.linalg.svdvals(a, check_finite=False), reps)  # noqa: B023
            name = str(dtype).removeprefix("torch.")
            print(
                f"  {name:8s} n={n:5d}  torch {t_t * 1e3:8.2f} ms  scipy {t_s * 1e3:8.2f} ms  "
                f"ratio {t_t / t_s:4.2f}"
            )


if __name__ == "__main__":
    set_threads(requested_threads())
    print(f"threads: {torch.get_num_threads()}")
    batched_vs_loop()
    backends()
