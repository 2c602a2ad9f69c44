"""Per-input Jacobians of 512 inputs through a depth-6, width-256 MLP (d_out = 10).

rankscope.metrics.jacobians (per-output ``rows`` loop, and ``vmap``+jacrev) against a loop of
``torch.autograd.functional.jacobian`` over the inputs. Each method runs in a fresh
subprocess that reports its wall time and its peak-memory increase: the growth of
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's resident-set high-water mark,
which sees torch's allocations, unlike tracemalloc) from just before the call to just after.

    RANKSCOPE_THREADS=1 python benchmarks/bench_jacobians.py
"""

from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import time

N_INPUTS, DEPTH, WIDTH, D_OUT = 512, 6, 256, 10
METHODS = (("autograd_loop", 0), ("rows", 128), ("rows", 512), ("vmap", 128))


def build(d_in: int):
    import torch

    g = torch.Generator().manual_seed(0)
    layers, widths = [], [d_in] + [WIDTH] * (DEPTH - 1) + [D_OUT]
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g) * (2 / a) ** 0.5)
            lin.bias.zero_()
        layers += [lin] if i == DEPTH - 1 else [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers)
    x = torch.randn(N_INPUTS, d_in, generator=g)
    return net, x


def run_one(method: str, d_in: int, chunk_size: int) -> dict:
    """Runs inside the child process."""
    import torch

    from rankscope.metrics import jacobians
    from rankscope.threads import requested_threads, set_threads

    set_threads(requested_threads())
    net, x = build(d_in)
    if method == "autograd_loop":

        def fn():
            return torch.stack(
                [torch.autograd.functional.jacobian(lambda v: net(v[None])[0], xi) for xi in x]
            )
    else:

        def fn():
            return jacobians(net, x, method=method, chunk_size=chunk_size)

    if method != "autograd_loop":  # warm up the code path on 2 inputs: no high-water mark set
        jacobians(net, x[:2], method=method, chunk_size=2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    jac = fn()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ref = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x[7])
    err = float((jac[7] - ref).abs().max() / ref.abs().max())
    return {
        "wall_s": wall,
        "peak_delta_mib": (after - before) / 1024,
        "peak_mib": after / 1024,
        "err": err,
        "result_mib": jac.numel() * jac.element_size() / 2**20,
    }


def measure(method: str, d_in: int, chunk_size: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(d_in), str(chunk_size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    for d_in in (64, 256):
        print(
            f"Jacobians of {N_INPUTS} inputs, MLP depth {DEPTH} width {WIDTH}, "
            f"d_in={d_in}, d_out={D_OUT} (float32, one process per method)"
        )
        res = {(m, c): measure(m, d_in, max(c, 1)) for m, c in METHODS}
        base = res[METHODS[0]]["wall_s"]
        for (m, c), r in res.items():
            name = m if m == "autograd_loop" else f"{m}/chunk {c}"
            print(
                f"  {name:16s} {r['wall_s']:7.3f} s  speed-up {base / r['wall_s']:5.1f}x  "
                f"peak +{r['peak_delta_mib']:6.1f} MiB (process {r['peak_mib']:.0f} MiB, "
                f"result {r['result_mib']:.1f} MiB)  rel. err {r['err']:.1e}"
            )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(run_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
