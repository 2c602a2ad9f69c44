"""rank-diminishing's seeds as one stacked ensemble (``run_many``) vs one run per seed.

Both arms compute the same thing (records and summaries are bitwise equal, checked here): the
init/trained Jacobian ranks of a plain and a bottleneck MLP per seed, after full-batch Adam.
``run_many`` trains each network kind for all seeds as ONE
:class:`~rankscope.models.StackedModule` through ``rankscope.train.train``; the Jacobian
measurement stays per member in both arms. The arms alternate ``--repeat`` times after one
warm-up of each and the medians are compared, so load on a shared machine hits both alike.
Run: ``python benchmarks/bench_stacked_seeds.py [--preset default] [--seeds 3] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rankscope.experiments.base import RunContext
from rankscope.experiments.collapse import rank_diminishing as rd


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = rd.PRESETS[args.preset]
    seeds = list(range(args.seeds))

    def sequential():
        return [rd.run(cfg, RunContext(seed=s)) for s in seeds]

    def ensemble():
        return rd.run_many([cfg] * len(seeds), [RunContext(seed=s) for s in seeds])

    _, solo = _timed(sequential)
    _, many = _timed(ensemble)
    same = all(
        a.summary == b.summary and list(a.records.rows()) == list(b.records.rows())
        for a, b in zip(solo, many)
    )
    t_seq, t_ens = [], []
    for _ in range(args.repeat):
        t_seq.append(_timed(sequential)[0])
        t_ens.append(_timed(ensemble)[0])
    s, e = statistics.median(t_seq), statistics.median(t_ens)
    print(
        f"rank-diminishing {args.preset}, {len(seeds)} seeds, torch threads "
        f"{torch.get_num_threads()}: sequential {s:.2f} s, ensemble {e:.2f} s (median of "
        f"{args.repeat}), speed-up {s / e:.2f}x; records and summaries bitwise equal: {same}"
    )


if __name__ == "__main__":
    main()
