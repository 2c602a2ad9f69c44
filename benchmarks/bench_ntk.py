"""Finite-width per-layer NTK Grams (definitions §20) at width 1000, N = 1000, depth 5.

``layerwise_ntk_grams`` (δ·h factorisation, float64) against the size of what it avoids: the
per-layer Jacobian, N × n_{ℓ−1}·n_ℓ values (1e9 float64 = 8 GB for one 1000×1000 layer), and
against the explicit Jacobian Gram on a small slice (N = 64, width 128) as a correctness
baseline. Each case runs in a fresh subprocess that reports its wall time and the growth of
``ru_maxrss`` (the resident-set high-water mark, which sees torch's allocations) across the call.

    RANKSCOPE_THREADS=1 python benchmarks/bench_ntk.py
"""

from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import time

N, WIDTH, DEPTH, D = 1000, 1000, 5, 10


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(n: int, width: int) -> dict:
    """Runs inside the child process."""
    import torch

    from rankscope.metrics import layerwise_ntk_grams
    from rankscope.threads import requested_threads, set_threads

    set_threads(requested_threads())
    g = torch.Generator().manual_seed(0)
    dims = [D] + [width] * (DEPTH - 1) + [1]
    ws = [torch.randn(b, a, generator=g, dtype=torch.float64) for a, b in itertools.pairwise(dims)]
    x = torch.randn(n, D, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    before = _rss_mb()
    start = time.perf_counter()
    grams = layerwise_ntk_grams(ws, x)
    wall = time.perf_counter() - start
    peak = _rss_mb() - before
    jac_gb = n * max(a * b for a, b in itertools.pairwise(dims)) * 8 / 1e9
    return {"n": n, "width": width, "depth": DEPTH, "wall_s": round(wall, 3),
            "peak_increase_mb": round(peak, 1), "grams_mb": round(grams.numel() * 8 / 1e6, 1),
            "largest_layer_jacobian_gb": round(jac_gb, 2)}  # fmt: skip


def check_small() -> float:
    """max |δ·h Gram − explicit Jacobian Gram| on N = 64, width 128 (float64)."""
    import math

    import torch

    from rankscope.metrics import layerwise_ntk_grams

    g = torch.Generator().manual_seed(1)
    dims = [D] + [128] * (DEPTH - 1) + [1]
    ws = [torch.randn(b, a, generator=g, dtype=torch.float64) for a, b in itertools.pairwise(dims)]
    x = torch.randn(64, D, generator=g, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    scales = [1.0] + [1 / math.sqrt(w.shape[1]) for w in ws[1:]]

    def f(params, xi):
        h = xi
        for l, (w, c) in enumerate(zip(params, scales)):
            z = c * (w @ h)
            h = math.sqrt(2) * torch.relu(z) if l < len(params) - 1 else z
        return h[0]

    jac = torch.func.vmap(torch.func.jacrev(f), in_dims=(None, 0))(ws, x)
    grams = layerwise_ntk_grams(ws, x)
    return max(float((grams[l] - j.reshape(64, -1) @ j.reshape(64, -1).T).abs().max())
               for l, j in enumerate(jac))  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(run_one(int(sys.argv[2]), int(sys.argv[3]))))
        return
    rows = []
    for n, width in ((N, WIDTH), (N // 2, WIDTH), (N, WIDTH // 2)):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), str(width)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(
        f"{'N':>6} {'width':>6} {'wall s':>8} {'peak +MB':>9} {'Grams MB':>9} {'1 Jacobian GB':>14}"
    )
    for r in rows:
        print(f"{r['n']:>6} {r['width']:>6} {r['wall_s']:>8} {r['peak_increase_mb']:>9} "
              f"{r['grams_mb']:>9} {r['largest_layer_jacobian_gb']:>14}")  # fmt: skip
    print(f"max |δ·h Gram − Jacobian Gram| at N = 64, width 128: {check_small():.2e}")


if __name__ == "__main__":
    main()
