"""(L−1)-WIS: batched incremental walk counts vs a naive recompute per candidate edge.

Run: ``python benchmarks/bench_wis.py [--nodes 250 --edges 2000 --removals 3 --walk-length 2]``

Graph: G(n, m) with ``--edges`` edges drawn from one seeded generator. Both implementations
remove the same number of edges one at a time (chunk_size = 1, the paper's Algorithm 1):

- naive (:func:`rankscope.sparsify.wis_removal_order_naive`, the official code's method): for
  every candidate edge, rebuild A' and recompute A'^{L−1} by dense matrix products (float64
  BLAS, exact below 2^53), then the walk-index tuple, then Python tuple comparison;
- fast (:func:`rankscope.sparsify.wis_removal_order`): every candidate evaluated from the
  powers of the current A by a rank-2 recursion restricted to the affected vertices, powers
  updated incrementally after each removal.

The removal orders must be identical. Prints per-removal times and the ratio naive / fast
(target ≥ 10× on a 2,000-edge graph). Each timing is the best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from rankscope.sparsify import wis_removal_order, wis_removal_order_naive  # noqa: E402


def gnm_edges(n: int, m: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    iu = np.triu_indices(n, 1)
    pick = rng.choice(iu[0].size, size=m, replace=False)
    return np.stack([iu[0][pick], iu[1][pick]], 1)


def best_time(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=250)
    p.add_argument("--edges", type=int, default=2000)
    p.add_argument("--removals", type=int, default=3)
    p.add_argument("--walk-length", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    edges = gnm_edges(args.nodes, args.edges, args.seed)
    k, ell = args.removals, args.walk_length
    t_fast, fast = best_time(
        lambda: wis_removal_order(edges, args.nodes, k, walk_length=ell), args.repeat
    )
    t_naive, naive = best_time(
        lambda: wis_removal_order_naive(edges, args.nodes, k, walk_length=ell), 1
    )
    same = bool(np.array_equal(fast, naive))
    print(
        f"graph: G(n={args.nodes}, m={len(edges)}), {ell}-WIS (L = {ell + 1}), "
        f"{k} removals, chunk_size 1"
    )
    print(f"naive recompute : {t_naive / k:9.4f} s per removal")
    print(f"batched/incr.   : {t_fast / k:9.4f} s per removal")
    print(f"identical removal order: {same}")
    print(f"ratio naive / fast: {t_naive / t_fast:.1f}x (target >= 10x)")
    t_long, _ = best_time(lambda: wis_removal_order(edges, args.nodes, 10 * k, walk_length=ell), 1)
    print(f"fast, {10 * k} removals: {t_long / (10 * k):.4f} s per removal (amortized setup)")
    if not same:
        raise SystemExit("removal orders differ")


if __name__ == "__main__":
    main()
