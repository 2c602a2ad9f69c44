"""A λ grid as one vectorized ensemble vs sequential runs, on the real digits (issue 4).

The workload of `neural-rank-collapse`'s Adam protocol: MLP 64-64-64-64-10 (ReLU, no biases,
He init) on scikit-learn digits (1438 training images after the 20% split, /16, centred),
full-batch Adam with the penalty (λ/2)·Σ‖W‖², for 8 values of λ. Both sides start every λ
from its own seeded init and run the same number of steps:

- sequential: 8 × :func:`rankscope.train.train` (torch.optim.Adam), one network after another;
- ensemble: one :class:`rankscope.models.MLPEnsemble` with per-member l2, one batched step.

``--batch-size B`` switches both sides to minibatch Adam with the same batch sequence (the
regime of `sgd-weight-decay-rank`, where a step is small and per-op overhead dominates; at
full batch N = 1438 a step is ~140 MFLOP per network and the work, not the overhead, is
what the ensemble shares).

Reports the ratio sequential / ensemble (best of ``--repeats`` interleaved timings, the
machine being shared) and the largest weight difference between ensemble member e and the
e-th sequential network (must be at float tolerance). Target: ratio ≥ 3.

Run: ``RANKSCOPE_THREADS=1 python benchmarks/bench_lambda_ensemble.py [--steps 200]
[--dtype float64|float32] [--repeats 3] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from rankscope.experiments.collapse.data import digits_split
from rankscope.experiments.collapse.fit import ce_loss
from rankscope.models import MLPEnsemble
from rankscope.models.mlp import MLP
from rankscope.threads import requested_threads, set_threads
from rankscope.train import train

DIMS = [64, 64, 64, 64, 10]
LAMS = [1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2]


def _gen(e: int) -> torch.Generator:
    return torch.Generator().manual_seed(100 + e)


def sequential(x, y, steps: int, dtype, batch: int | None) -> list[list[torch.Tensor]]:
    out = []
    for e, lam in enumerate(LAMS):
        net = MLP(DIMS, generator=_gen(e), dtype=dtype)
        train(
            net,
            ce_loss,
            optimizer="adam",
            lr=1e-3,
            steps=steps,
            data=(x, y),
            l2=lam / 2,
            batch_size=batch,
            generator=torch.Generator().manual_seed(7),
        )
        out.append([w.detach().clone() for w in net.weights])
    return out


def ensemble(x, y, steps: int, dtype, batch: int | None) -> list[list[torch.Tensor]]:
    ens = MLPEnsemble(DIMS, generators=[_gen(e) for e in range(len(LAMS))], dtype=dtype)
    train(
        ens,
        ce_loss,
        optimizer="adam",
        lr=1e-3,
        steps=steps,
        data=(x, y),
        l2=[lam / 2 for lam in LAMS],
        batch_size=batch,
        batches="shared",
        generator=torch.Generator().manual_seed(7),
    )
    return [[w[e].detach().clone() for w in ens.weights] for e in range(len(LAMS))]


def _timed(fn) -> tuple[float, list]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="minibatch Adam with this batch (shared batches); default full batch",
    )
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()
    set_threads(requested_threads())
    dtype = getattr(torch, args.dtype)
    split = digits_split(np.random.default_rng(0))
    x, y = split.x_train.to(dtype), split.y_train
    t_seq, t_ens = [], []
    for _ in range(args.repeats):  # interleaved: both sides see the same machine load
        t, seq_w = _timed(lambda: sequential(x, y, args.steps, dtype, args.batch_size))
        t_seq.append(t)
        t, ens_w = _timed(lambda: ensemble(x, y, args.steps, dtype, args.batch_size))
        t_ens.append(t)
    diff = max(float((a - b).abs().max()) for sw, ew in zip(seq_w, ens_w) for a, b in zip(sw, ew))
    scale = max(float(w.abs().max()) for sw in seq_w for w in sw)
    mode = "full-batch" if args.batch_size is None else f"batch-{args.batch_size}"
    report = {
        "workload": f"MLP {DIMS} on digits N={split.n_train}, {mode} Adam, {len(LAMS)} λ",
        "dtype": args.dtype,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "sequential_s": min(t_seq),
        "ensemble_s": min(t_ens),
        "ratio": min(t_seq) / min(t_ens),
        "max_weight_diff": diff,
        "max_weight": scale,
        "target_ratio": 3.0,
    }
    print(f"{report['workload']}, {args.dtype}, {args.steps} steps, {report['threads']} thread(s)")
    print(
        f"  sequential {report['sequential_s']:.2f} s   ensemble {report['ensemble_s']:.2f} s   "
        f"ratio {report['ratio']:.2f}x (target >= 3x)"
    )
    print(f"  max |W_ens - W_seq| = {diff:.2e} (max |W| = {scale:.2f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
