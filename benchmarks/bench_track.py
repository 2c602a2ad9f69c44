"""Overhead of rankscope.track.RankTracker in a plain PyTorch loop (width-512 MLP).

Model: 784 → 512 → 512 → 512 → 10 ReLU MLP, SGD on random data, batch 128, float32, CPU.
The same process trains two identical copies in alternating blocks of ``every`` steps, one
plain and one calling ``tracker.step()`` after every optimizer step (a measurement each
``every`` steps: stable, effective and numerical rank of the 4 weights, spectra batched by
shape). Reported, as ratios measured in this run:

- ``per-step overhead`` = (time in the tracker / steps) / (median plain step time);
- ``end-to-end overhead`` = tracked wall time / plain wall time − 1.

Target: < 5% at every = 100. Run: ``python benchmarks/bench_track.py [--every 100]
[--blocks 5] [--batch 128]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402


def make(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(784, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 512), nn.ReLU(),
        nn.Linear(512, 10),
    )  # fmt: skip


def block(model, opt, x, y, steps, tracker=None, start=0) -> list[float]:
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if tracker is not None:
            tracker.step(start + i)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from rankscope.track import RankTracker

    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 784, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)
    plain, tracked = make(0), make(0)
    opt_p = torch.optim.SGD(plain.parameters(), lr=1e-2)
    opt_t = torch.optim.SGD(tracked.parameters(), lr=1e-2)
    tracker = RankTracker(tracked, every=args.every)
    block(plain, opt_p, x, y, 10)  # warm-up
    tracker.measure(-1)
    tracker.seconds = 0.0
    t_plain, t_tracked = [], []
    for b in range(args.blocks):
        t_plain += block(plain, opt_p, x, y, args.every)
        t_tracked += block(tracked, opt_t, x, y, args.every, tracker, start=b * args.every)
    steps = args.blocks * args.every
    step = statistics.median(t_plain)
    per_step = tracker.seconds / steps / step
    end_to_end = sum(t_tracked) / sum(t_plain) - 1
    measurements = steps // args.every
    print(f"width-512 MLP, batch {args.batch}, {steps} steps per copy, every={args.every}")
    print(
        f"median plain step {step * 1e3:.2f} ms; one measurement "
        f"{tracker.seconds / measurements * 1e3:.1f} ms ({measurements} measurements)"
    )
    print(
        f"per-step overhead {per_step:.2%}; end-to-end overhead {end_to_end:+.2%} "
        f"(target < 5%: {'met' if per_step < 0.05 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
