"""Vectorized ensembles vs per-network loops, as ratios measured in one process.

Run: ``RANKSCOPE_THREADS=1 python benchmarks/bench_ensemble.py [--quick] [--json PATH]``

1. DLN ensemble (depth 4, width 10 and 50, E members, full-batch GD on a small regression)
   vs a naive per-network autograd loop (one ``nn.Sequential`` of ``nn.Linear`` and one
   ``torch.optim.SGD`` per network). Ratio = per-network step time, loop / ensemble.
   Targets (issue 3): ≥ 30× at width 10, ≥ 3× at width 50.
2. Achieved FLOP/s of the ensemble step vs a bare ``torch.bmm`` of the same shapes timed in
   the same process. Target ≥ 50%.
3. MLP 64-64-64-64-10 on digits-sized data (1797×64, 10 classes, synthetic), 8 λ values:
   one ensemble vs 8 sequential :func:`rankscope.train.train` runs, full-batch Adam and
   minibatch SGD; results must agree to float tolerance. Target (issue 4) ≥ 3×.

The ensemble is :func:`rankscope.train.train` (the one engine, autograd) on a stacked
:class:`~rankscope.models.DeepLinearEnsemble` / :class:`~rankscope.models.MLPEnsemble`
(the hand-derived backward it once had is gone, see ``bench_closed_form.py``). Each timing is
the best of ``repeats`` interleaved measurements (the machine is shared); the load average is
printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn

from rankscope.models import DeepLinearEnsemble, MLPEnsemble
from rankscope.threads import requested_threads, set_threads
from rankscope.train import cross_entropy, ensemble_speedup, mse, train

DEPTH = 4


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _regression(width: int, n: int):
    x = torch.randn(n, width, generator=_gen(0))
    y = x @ torch.randn(width, width, generator=_gen(1)) / width**0.5
    return x, y


def _naive_nets(ens: DeepLinearEnsemble, count: int, lr: float):
    nets, opts = [], []
    for e in range(count):
        layers = []
        for w in ens.weights:
            lin = nn.Linear(w.shape[2], w.shape[1], bias=False)
            with torch.no_grad():
                lin.weight.copy_(w[e])
            layers.append(lin)
        net = nn.Sequential(*layers)
        nets.append(net)
        opts.append(torch.optim.SGD(net.parameters(), lr=lr))
    return nets, opts


def _naive_steps(nets, opts, x, y, steps: int) -> None:
    for net, opt in zip(nets, opts):
        for _ in range(steps):
            opt.zero_grad()
            loss = ((net(x) - y) ** 2).sum(dim=1).mean()
            loss.backward()
            opt.step()


def _bare_bmm_step(members: int, n: int, width: int):
    """The 3L−1 bmm calls of one ensemble GD step, same shapes and transposes, nothing else:
    forward h W_lᵀ (L), input gradients g W_l (L−1), weight gradients gᵀ h (L)."""
    g = _gen(2)
    h = torch.randn(members, n, width, generator=g)
    ws = [torch.randn(members, width, width, generator=g) for _ in range(DEPTH)]

    def step():
        acts = [h]
        for w in ws:
            acts.append(torch.bmm(acts[-1], w.mT))
        grad = acts[-1]
        for l in reversed(range(DEPTH)):
            torch.bmm(grad.mT, acts[l])
            if l:
                grad = torch.bmm(grad, ws[l])

    return step


def bench_dln(width: int, members: int, n: int, steps: int, repeats: int, naive_count: int):
    """Per-network step time of the naive loop and of the ensemble, plus FLOP/s vs bmm."""
    x, y = _regression(width, n)
    lr = 1e-3

    def make_ens():
        gens = [_gen(10 + e) for e in range(members)]
        return DeepLinearEnsemble([width] * (DEPTH + 1), sigma=width**-0.5, generators=gens)

    ens = make_ens()
    nets, opts = _naive_nets(ens, naive_count, lr)
    loss = lambda m, b: mse(m(b[0]), b[1])  # noqa: E731
    runs = {
        "naive": lambda: _naive_steps(nets, opts, x, y, steps),
        "ensemble": lambda: train(ens, loss, lr=lr, steps=steps, data=(x, y)),
        "bmm": lambda: [bare() for _ in range(steps)],
    }
    bare = _bare_bmm_step(members, n, width)
    times = {k: [] for k in runs}
    for _ in range(repeats):  # interleave: the machine is shared
        for k, fn in runs.items():
            times[k].append(_best(fn, 1))
    best = {k: min(v) for k, v in times.items()}
    per_naive = best["naive"] / (steps * naive_count)
    per_ens = best["ensemble"] / (steps * members)
    step_flops = (3 * DEPTH - 1) * 2.0 * members * n * width * width
    rate_bmm = step_flops * steps / best["bmm"]
    rate_ens = step_flops * steps / best["ensemble"]
    # check: the naive nets trained on the same data from the same init agree with members
    check = make_ens()
    train(check, loss, lr=lr, steps=5, data=(x, y))
    nets2, opts2 = _naive_nets(make_ens(), 2, lr)
    _naive_steps(nets2, opts2, x, y, 5)
    err = max(
        float((nets2[e][l].weight.detach() - check.weights[l][e].detach()).abs().max())
        for e in range(2)
        for l in range(DEPTH)
    )
    return {
        "width": width,
        "members": members,
        "samples": n,
        "naive_us_per_net_step": per_naive * 1e6,
        "ensemble_us_per_net_step": per_ens * 1e6,
        "speedup": per_naive / per_ens,
        "model_speedup": ensemble_speedup(members, [width] * (DEPTH + 1), n),
        "bmm_gflops": rate_bmm / 1e9,
        "ensemble_gflops": rate_ens / 1e9,
        "flops_fraction_of_bmm": rate_ens / rate_bmm,
        "max_abs_diff_vs_naive": err,
    }


def bench_mlp_lambdas(optimizer: str, steps: int, repeats: int, dtype: torch.dtype):
    """8 λ values, MLP 64-64-64-64-10 on 1797×64 synthetic digits: ensemble vs sequential."""
    g = _gen(4)
    x = torch.randn(1797, 64, generator=g, dtype=dtype)
    labels = torch.randint(10, (1797,), generator=g)
    dims, lams = [64, 64, 64, 64, 10], [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1]
    opts = {
        "adam": {"optimizer": "adam", "lr": 1e-3},
        "sgd": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32},
    }[optimizer]
    loss = lambda m, b: cross_entropy(m(b[0]), b[1])  # noqa: E731
    from rankscope.models import MLP

    def sequential():
        nets = []
        for e, lam in enumerate(lams):
            net = MLP(dims, generator=_gen(20 + e), dtype=dtype)
            train(net, loss, steps=steps, data=(x, labels), l2=lam, generator=_gen(40 + e), **opts)
            nets.append(net)
        return nets

    def ensemble():
        ens = MLPEnsemble(dims, generators=[_gen(20 + e) for e in range(8)], dtype=dtype)
        gens = [_gen(40 + e) for e in range(8)]
        train(ens, loss, steps=steps, data=(x, labels), l2=lams, generator=gens, **opts)
        return ens

    runs = {"sequential": sequential, "ensemble": ensemble}
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            times[k].append(_best(fn, 1))
    best = {k: min(v) for k, v in times.items()}
    nets, ens = (fn() for fn in runs.values())
    err = max(
        float((n.weights[l].detach() - ens.weights[l][e].detach()).abs().max())
        for e, n in enumerate(nets)
        for l in range(len(dims) - 1)
    )
    return {
        "optimizer": optimizer,
        "dtype": str(dtype).replace("torch.", ""),
        "steps": steps,
        "sequential_s": best["sequential"],
        "ensemble_s": best["ensemble"],
        "speedup": best["sequential"] / best["ensemble"],
        "max_abs_diff": err,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--members", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    set_threads(requested_threads())
    steps, repeats = (20, 2) if args.quick else (60, 5)
    out = {"threads": torch.get_num_threads(), "load": os.getloadavg(), "dln": [], "mlp": []}
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for width, members in [(w, e) for w in (10, 50) for e in args.members]:
        r = bench_dln(width, members, 64, steps, repeats, naive_count=16)
        out["dln"].append(r)
        print(
            f"DLN depth {DEPTH} width {width:3d} E={r['members']:3d}: naive "
            f"{r['naive_us_per_net_step']:.0f} us/net-step, ensemble "
            f"{r['ensemble_us_per_net_step']:.1f} us/net-step -> {r['speedup']:.1f}x "
            f"(model {r['model_speedup']:.1f}x); ensemble {r['ensemble_gflops']:.2f} GFLOP/s = "
            f"{100 * r['flops_fraction_of_bmm']:.0f}% of bare bmm {r['bmm_gflops']:.2f} GFLOP/s; "
            f"max|diff| {r['max_abs_diff_vs_naive']:.1e}"
        )
    mlp_steps = 10 if args.quick else 30
    for optimizer, dtype in (
        ("adam", torch.float64),
        ("adam", torch.float32),
        ("sgd", torch.float32),
    ):
        r = bench_mlp_lambdas(optimizer, mlp_steps, min(repeats, 3), dtype)
        out["mlp"].append(r)
        print(
            f"MLP 8 lambdas, {optimizer} {r['dtype']}, {r['steps']} steps: sequential "
            f"{r['sequential_s']:.2f} s, ensemble {r['ensemble_s']:.2f} s -> "
            f"{r['speedup']:.2f}x; max|diff| {r['max_abs_diff']:.1e}"
        )
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
