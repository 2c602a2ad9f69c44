"""Top-k (k = 10) singular values of a 4096² matrix with a decaying spectrum.

rankscope.metrics.topk_singular_values (q = k + 10, 4 power iterations) against the full SVD
(rankscope.metrics.singular_values, LAPACK gesdd, values only), both float64, timed in this run;
also ``torch.svd_lowrank`` with q = k for reference. Matrices are U diag(s) Vᵀ with Haar U, V
and several decaying spectra, so the planted values are the exact reference; the slower the
decay past s_k, the more power iterations a given accuracy needs.

    RANKSCOPE_THREADS=1 python benchmarks/bench_topk.py [n]
"""

from __future__ import annotations

import sys
import time

import torch

from rankscope.metrics import singular_values, topk_singular_values
from rankscope.threads import requested_threads, set_threads

K = 10


SPECTRA = {
    "exp(-i/10)": lambda i: torch.exp(-i / 10),
    "(i+1)^-2": lambda i: (i + 1) ** -2.0,
    "(i+1)^-1": lambda i: (i + 1) ** -1.0,
    "exp(-i/50)": lambda i: torch.exp(-i / 50),
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


def main(n: int) -> None:
    g = torch.Generator().manual_seed(0)
    u, v = haar(n, g), haar(n, g)
    idx = torch.arange(n, dtype=torch.float64)
    print(f"top-{K} singular values of {n}x{n} float64 matrices U diag(s) Vᵀ (Haar U, V)")
    topk_singular_values(u[:256, :256], K, generator=g)  # warm-up of the code path
    t_full = None
    for name, fn in SPECTRA.items():
        s = fn(idx)
        a = (u * s) @ v.T
        if t_full is None:  # the full SVD's time does not depend on the spectrum
            full, t_full = timed(lambda: singular_values(a))  # noqa: B023
            print(
                f"  full SVD (gesdd, values only): {t_full:.2f} s, "
                f"max rel. error {max_rel(full, s):.1e} on s = {name}"
            )
        top, t_top = timed(lambda: topk_singular_values(a, K, generator=g))  # noqa: B023
        f32, t_f32 = timed(
            lambda: topk_singular_values(a, K, generator=g, range_dtype=torch.float32)  # noqa: B023
        )
        low, t_low = timed(lambda: torch.svd_lowrank(a, q=K)[1])  # noqa: B023
        print(
            f"  s = {name:11s} top-k {t_top:6.3f} s = {100 * t_top / t_full:5.2f}% of full, "
            f"error {max_rel(top.values, s):.1e} (bound {top.rel_error:.1e}) | float32 range "
            f"{100 * t_f32 / t_full:5.2f}%, error {max_rel(f32.values, s):.1e} | "
            f"svd_lowrank(q=k) {100 * t_low / t_full:5.2f}%, error {max_rel(low, s):.1e}"
        )


if __name__ == "__main__":
    set_threads(requested_threads())
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4096)
