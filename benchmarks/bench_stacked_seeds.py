"""rank-diminishing's seeds as one stacked ensemble (``run_many``) vs one run per seed.

Both arms compute the same thing (records and summaries are bitwise equal, checked here): the
init/trained Jacobian ranks of a plain and a bottleneck MLP per seed, after full-batch Adam.
``run_many`` trains each network kind for all seeds as ONE
:class:`~rankscope.models.StackedModule` through ``rankscope.train.train``; the Jacobian
measurement stays per member in both arms. The arms alternate ``--repeat`` times after one
warm-up of each and the medians are compared, so load on a shared machine hits both alike.
``--train-steps K`` (> 0) also times the training phase alone (the plain network, K Adam
steps): E ``train(MLP)`` calls vs one ``train(StackedModule)`` vs one ``train(MLPEnsemble)``.
Run: ``python benchmarks/bench_stacked_seeds.py [--preset default] [--seeds 3] [--repeat 3]
[--train-steps 100]``.
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
    ap.add_argument("--train-steps", type=int, default=0)
    ap.add_argument("--skip-runs", action="store_true", help="only the training-phase timing")
    args = ap.parse_args()
    if args.train_steps > 0:
        _train_only(rd.PRESETS[args.preset], args.seeds, args.train_steps, args.repeat)
    if args.skip_runs:
        return
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


def _train_only(cfg, n_seeds: int, steps: int, repeat: int) -> None:
    from rankscope.experiments.collapse.fit import ce_loss
    from rankscope.models import MLP, MLPEnsemble, StackedModule
    from rankscope.train import train

    ctxs = [RunContext(seed=s) for s in range(n_seeds)]
    splits = [rd._split(cfg, c)[0] for c in ctxs]
    dims = [splits[0].dim, *cfg.widths, splits[0].num_classes]
    gens = lambda: [c.child_generator(1) for c in ctxs]  # noqa: E731
    data = (torch.stack([s.x_train for s in splits]), torch.stack([s.y_train for s in splits]))
    kw = {"optimizer": "adam", "lr": cfg.train_lr, "steps": steps}

    def seq():
        for s, g in zip(splits, gens()):
            train(
                MLP(dims, generator=g, dtype=torch.float64),
                ce_loss,
                data=(s.x_train, s.y_train),
                **kw,
            )

    def stacked():
        nets = [MLP(dims, generator=g, dtype=torch.float64) for g in gens()]
        train(StackedModule.from_modules(nets), ce_loss, data=data, **kw)

    def mlp_ens():
        train(MLPEnsemble(dims, generators=gens(), dtype=torch.float64), ce_loss, data=data, **kw)

    arms = {"sequential": seq, "StackedModule": stacked, "MLPEnsemble": mlp_ens}
    for fn in arms.values():
        fn()  # warm-up
    times = {k: [] for k in arms}
    for _ in range(repeat):
        for k, fn in arms.items():
            times[k].append(_timed(fn)[0])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"training phase only ({n_seeds} x {steps} Adam steps, dims {dims}): "
        + ", ".join(f"{k} {v:.2f} s ({med['sequential'] / v:.2f}x)" for k, v in med.items())
    )


if __name__ == "__main__":
    main()
