"""Whole-model weight analysis: rankscope vs a per-layer numpy loop vs WeightWatcher.

Model: a randomly initialised ``nn.TransformerEncoder`` (12 blocks, d_model 512, ff 2048 by
default; every block re-drawn from one seeded generator so no two matrices are equal).
All three compute, for every weight matrix, its spectrum and the stable rank and a
numerical rank:

- rankscope: ``rankscope.analyze(model)`` (weights only; all metrics of the table);
- numpy loop: ``np.linalg.svd(W, compute_uv=False)`` in float64 per matrix, then the same
  metrics (stable, effective and three numerical ranks, norms) in numpy;
- WeightWatcher (if installed; ``pip install -c constraints.txt weightwatcher``):
  ``analyze(plot=False, randomize=False, mp_fit=False)``, once as shipped (its power-law
  fit always runs) and once with the fit replaced by a no-op ("fits off").

WeightWatcher only sees modules it recognises (Linear, Conv, Embedding): the packed
``in_proj_weight`` of ``nn.MultiheadAttention`` is not among them, so it analyses 36 of the
48 matrices. Agreement is measured on the matrices both see, matched by name:
WW ``stable_rank`` = Σλ/λ_max with λ = s² (ours: Σs²/s_1²), and WW ``matrix_rank`` =
#{s_i > s_1·max(m,n)·eps(float64)} (ours ``rank_torch`` uses eps of the weight dtype, float32,
so the thresholds differ; on full-rank random weights both give min(m, n)).

Prints one report; ratios are WW time / rankscope time (> 1: rankscope faster). The row
"rankscope.analyze, WW's 36" analyses only the matrices WW sees (a state_dict of them), so
that its ratio to "WeightWatcher, fits off" compares the same work.
Run: ``python benchmarks/bench_analyze.py [--d-model 768 --ff 3072] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import rankscope  # noqa: E402


def build_model(d_model: int, ff: int, blocks: int, seed: int) -> nn.TransformerEncoder:
    heads = d_model // 64
    layer = nn.TransformerEncoderLayer(d_model, heads, ff, batch_first=True)
    model = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # clones start equal; draw every matrix anew (Glorot-uniform scale)
        for p in model.parameters():
            if p.ndim >= 2:
                bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return model.eval()


def numpy_loop(model: nn.Module) -> dict[str, dict[str, float]]:
    """The baseline: one float64 np.linalg.svd per matrix, then the metrics in numpy."""
    out = {}
    for name, p in model.state_dict().items():
        if p.ndim < 2:
            continue
        w = p.detach().numpy().reshape(p.shape[0], -1).astype(np.float64)
        s = np.linalg.svd(w, compute_uv=False)
        m, n = w.shape
        fro = math.sqrt(float((s**2).sum()))
        prob = s[s > 0] / s.sum()
        out[name] = {
            "stable_rank": float((s**2).sum() / s[0] ** 2),
            "effective_rank": float(np.exp(-(prob * np.log(prob)).sum())),
            "rank_torch": int((s > max(m, n) * np.finfo(np.float32).eps * s[0]).sum()),
            "rank_rel1e-2": int((s > 1e-2 * s[0]).sum()),
            "rank_galanti": int((s > 1e-3 * fro).sum()),
            "nuclear_norm": float(s.sum()),
            "s_max": float(s[0]),
        }
    return out


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


def max_rel(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for k in a)


def _have_ww() -> bool:
    try:
        import weightwatcher  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--ff", type=int, default=2048)
    ap.add_argument("--blocks", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-ww", action="store_true", help="skip WeightWatcher")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model = build_model(args.d_model, args.ff, args.blocks, seed=0)
    n_mat = sum(p.ndim >= 2 for p in model.state_dict().values())
    runs = {
        "rankscope.analyze": lambda: rankscope.analyze(model),
        "rankscope.analyze, exact SVD": lambda: rankscope.analyze(model, gram=False),
        "numpy svd loop": lambda: numpy_loop(model),
    }
    use_ww = not args.no_ww and _have_ww()
    if use_ww:  # the matrices WW sees, so that one row times the same work on both sides
        seen = {
            f"{r['longname']}.weight" for _, r in weightwatcher_run(model, fits=False).iterrows()
        }
        same = {k: v for k, v in model.state_dict().items() if k in seen}
        runs[f"rankscope.analyze, WW's {len(same)}"] = lambda: rankscope.analyze(same)
        runs["WeightWatcher, fits off"] = lambda: weightwatcher_run(model, fits=False)
        runs["WeightWatcher, as shipped"] = lambda: weightwatcher_run(model, fits=True)
    results, times = interleaved(runs, args.repeat)
    print(
        f"model: TransformerEncoder, {args.blocks} blocks, d_model {args.d_model}, ff {args.ff}: "
        f"{n_mat} matrices; 1 thread; {args.repeat} interleaved rounds; min (median) seconds"
    )
    base = min(times["rankscope.analyze"])
    for label, ts in times.items():
        print(
            f"  {label:30s} {min(ts):7.3f} ({statistics.median(ts):7.3f})"
            f"   time / rankscope time: {min(ts) / base:5.2f}x"
        )
    rows = {r["name"]: r for r in results["rankscope.analyze"].layers}
    ref = results["numpy svd loop"]
    print("rankscope vs the numpy loop, max relative difference over all matrices:")
    for c in ("stable_rank", "effective_rank", "nuclear_norm", "rank_torch", "rank_rel1e-2"):
        got = max_rel({k: rows[k][c] for k in ref}, {k: v[c] for k, v in ref.items()})
        print(f"  {c:16s} {got:.2e}")
    if args.no_ww:
        print("WeightWatcher: skipped (--no-ww)")
    elif not use_ww:
        print("WeightWatcher: not installed (pip install -c constraints.txt weightwatcher)")
    else:
        for line in compare_ww(results["WeightWatcher, fits off"], rows, times, n_mat):
            print(line)


def compare_ww(details, rows: dict[str, dict], times: dict, n_ours: int) -> list[str]:
    matched = [(r, rows.get(f"{r['longname']}.weight")) for _, r in details.iterrows()]
    matched = [(w, o) for w, o in matched if o is not None]
    same = next(k for k in times if k.startswith("rankscope.analyze, WW's"))
    per_ours = min(times["rankscope.analyze"]) / n_ours
    per_ww = min(times["WeightWatcher, fits off"]) / len(details)
    srank = max(abs(o["stable_rank"] - w["stable_rank"]) / w["stable_rank"] for w, o in matched)
    nrank = max(
        abs(o["rank_torch"] - w["matrix_rank"]) / max(w["matrix_rank"], 1) for w, o in matched
    )
    return [
        f"WeightWatcher analysed {len(details)} matrices, {len(matched)} matched by name "
        f"(it does not see nn.MultiheadAttention.in_proj_weight)",
        f"  max relative difference, stable_rank vs WW stable_rank: {srank:.2e}",
        f"  max relative difference, rank_torch vs WW matrix_rank:  {nrank:.2e}",
        f"  per matrix: rankscope {per_ours * 1e3:.1f} ms, WW fits off {per_ww * 1e3:.1f} ms "
        f"({per_ww / per_ours:.2f}x)",
        f"  same {len(matched)} matrices: rankscope {min(times[same]):.3f} s, WW fits off "
        f"{min(times['WeightWatcher, fits off']):.3f} s "
        f"({min(times['WeightWatcher, fits off']) / min(times[same]):.2f}x)",
    ]


if __name__ == "__main__":
    main()
