"""Top-k (k = 10) singular values of a 4096² matrix with a decaying spectrum.

rankscope.metrics.topk_singular_values (q = k + 10, 4 power iterations) against the full SVD
(rankscope.metrics.singular_values, LAPACK gesdd, values only), both on float64 input, timed
in this run. Variants: the default (float32 range finder with the float64 guard, float64
Rayleigh-Ritz), ``range_dtype=torch.float64`` (all float64, the pre-guard default) and
``torch.svd_lowrank`` with q = k for reference. Matrices are U diag(s) Vᵀ with Haar U, V and
several decaying spectra, so the planted values are the exact reference; the slower the decay
past s_k, the more power iterations a given accuracy needs. ``exp(-i)`` has s_k < 1e-3·‖A‖_F,
so the default takes its two extra float64 iterations there.

Timing on a shared machine: each variant is the best of ``REPEATS`` calls, interleaved with
the others; the full SVD is the best of two calls (one before, one after the top-k runs).
The load average is printed; the full SVD (compute-bound) and the top-k (bandwidth-bound)
slow down differently under load, so the ratio moves with it.

    RANKSCOPE_THREADS=1 python benchmarks/bench_topk.py [n]
"""

from __future__ import annotations

import os
import sys
import time

import torch

from rankscope.metrics import singular_values, topk_singular_values
from rankscope.threads import requested_threads, set_threads

K = 10
REPEATS = 3

SPECTRA = {
    "exp(-i/10)": lambda i: torch.exp(-i / 10),
    "(i+1)^-2": lambda i: (i + 1) ** -2.0,
    "(i+1)^-1": lambda i: (i + 1) ** -1.0,
    "exp(-i/50)": lambda i: torch.exp(-i / 50),
    "exp(-i)": lambda i: torch.exp(-i),
}


def haar(n: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def max_rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(((x[:K] - ref[:K]).abs() / ref[:K]).max())


def variants(a: torch.Tensor, seed: int) -> dict:
    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    return {
        "default": lambda: topk_singular_values(a, K, generator=gen()).values,
        "float64": lambda: (
            topk_singular_values(a, K, generator=gen(), range_dtype=torch.float64).values
        ),
        "svd_lowrank": lambda: torch.svd_lowrank(a, q=K)[1],
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(n: int) -> None:
    g = torch.Generator().manual_seed(0)
    u, v = haar(n, g), haar(n, g)
    idx = torch.arange(n, dtype=torch.float64)
    print(f"top-{K} singular values of {n}x{n} float64 matrices U diag(s) Vᵀ (Haar U, V)")
    print(f"load average at start: {load()}")
    topk_singular_values(u[:256, :256], K, generator=g)  # warm-up of the code path
    full_times, rows = [], []
    for j, (name, fn) in enumerate(SPECTRA.items()):
        s = fn(idx)
        a = (u * s) @ v.T
        if j == 0:  # the full SVD's time does not depend on the spectrum
            full, t = timed(lambda: singular_values(a))  # noqa: B023
            full_times.append(t)
            full_err = max_rel(full, s)
        best, err = {}, {}
        for _ in range(REPEATS):
            for key, f in variants(a, seed=1).items():
                vals, t = timed(f)
                best[key] = min(best.get(key, t), t)
                err[key] = max_rel(vals, s)
        rows.append((name, best, err))
    full_times.append(timed(lambda: singular_values(a))[1])
    t_full = min(full_times)
    print(
        f"  full SVD (gesdd, values only): best {t_full:.2f} s of "
        f"{', '.join(f'{t:.2f}' for t in full_times)} s, max rel. error {full_err:.1e}"
    )
    for name, best, err in rows:
        cells = " | ".join(
            f"{key} {1e3 * best[key]:5.0f} ms = {100 * best[key] / t_full:5.2f}%, "
            f"error {err[key]:.1e}"
            for key in best
        )
        print(f"  s = {name:11s} {cells} | default/float64 {best['default'] / best['float64']:.2f}")
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    set_threads(requested_threads())
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
