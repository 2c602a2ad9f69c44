"""GNN interactions and the walk index; Walk Index Sparsification (arXiv:2211.16494).

GNN-0: exact walk-index values and 1-WIS ≡ (L−1)-WIS at L = 2. GNN-1: the separation-rank grid
of a product-aggregation GNN is higher for a partition with a higher walk index. GNN-2: digits
IsSameClass graphs, images placed across the clusters (high walk index) vs one per cluster.
GNN-3: edge sparsification of an SBM by random, spectral, 1-WIS and 2-WIS removal.
Setups and thresholds: tensor_graph.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext, check
from rankscope.experiments.tensor_graph.data import sbm_graph
from rankscope.experiments.tensor_graph.graph_tasks import (
    gnn0_summary,
    gnn1_grid_ranks,
    sparsification_accuracy,
    train_same_class_graph,
)
from rankscope.sparsify import removal_order

PAPER = "arXiv:2211.16494"


@dataclass(frozen=True)
class Config:
    gnn0_graphs: int = 30
    gnn0_nodes: int = 12
    gnn0_p: float = 0.3
    gnn1_depths: tuple[int, ...] = (1, 2, 3)
    gnn1_templates: int = 60
    gnn1_noise: float = 0.3
    gnn2_variants: tuple[str, ...] = ("two_cliques", "as_released")
    gnn2_seeds: int = 3
    gnn2_train: int = 2000
    gnn2_test: int = 500
    gnn2_epochs: int = 500
    gnn2_lr: float = 5e-3
    gnn2_width: int = 16
    gnn3_sizes: tuple[int, ...] = (100, 100, 100, 100)
    gnn3_p_in: float = 0.05
    gnn3_p_out: float = 0.01
    gnn3_feature_dim: int = 16
    gnn3_feature_signal: float = 0.5
    gnn3_levels: tuple[float, ...] = (0.3, 0.6, 0.9)
    gnn3_methods: tuple[str, ...] = ("random", "spectral", "1-wis", "2-wis")
    gnn3_seeds: int = 5
    gnn3_epochs: int = 200
    gnn3_lr: float = 1e-2
    gnn3_weight_decay: float = 1e-3
    gnn3_width: int = 32
    depth: int = 3


PRESETS = {
    "smoke": Config(
        gnn0_graphs=5,
        gnn1_templates=30,
        gnn2_seeds=1,
        gnn2_train=200,
        gnn2_test=100,
        gnn2_epochs=30,
        gnn3_sizes=(30, 30, 30, 30),
        gnn3_p_in=0.15,
        gnn3_p_out=0.03,
        gnn3_seeds=2,
        gnn3_epochs=30,
    ),
    "default": Config(),
    "paper": Config(
        gnn2_seeds=5,
        gnn2_epochs=1000,
        gnn3_seeds=10,
        gnn3_levels=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    ),
}


def _gnn2(cfg: Config, ctx: RunContext) -> dict:
    from rankscope.experiments.tensor_graph.data import digits, same_class_pairs

    images, labels = digits()
    out: dict = {}
    for variant in cfg.gnn2_variants:
        out[variant] = {"low_walk": [], "high_walk": [], "walk_index": {}}
        for s in range(cfg.gnn2_seeds):
            rng = np.random.default_rng(int(ctx.rng.integers(2**31)))
            train = same_class_pairs(labels, cfg.gnn2_train, rng)
            test = same_class_pairs(labels, cfg.gnn2_test, rng)
            for part in ("low_walk", "high_walk"):
                res = train_same_class_graph(
                    images,
                    labels,
                    train,
                    test,
                    variant,
                    part,
                    cfg,
                    ctx.child_generator(200 + s),
                    ctx.log,
                )
                out[variant][part].append(res["test_accuracy"])
                out[variant]["walk_index"][part] = res["walk_index"]
    return out


def _gnn3(cfg: Config, ctx: RunContext) -> dict:
    edges, labels = sbm_graph(cfg.gnn3_sizes, cfg.gnn3_p_in, cfg.gnn3_p_out, ctx.rng)
    n = labels.size
    feats = _sbm_features(labels, cfg, ctx.child_generator(300))
    orders, seconds = {}, {}
    for method in ("1-wis", "2-wis"):
        if method in cfg.gnn3_methods:
            t0 = time.perf_counter()
            k = round(max(cfg.gnn3_levels) * len(edges))
            orders[method] = removal_order(method, edges, n, num_remove=k)
            seconds[method] = time.perf_counter() - t0
    acc = {m: [[math.nan] * cfg.gnn3_seeds for _ in cfg.gnn3_levels] for m in cfg.gnn3_methods}
    none_removed = []
    for s in range(cfg.gnn3_seeds):
        rng = np.random.default_rng(int(ctx.rng.integers(2**31)))
        split = rng.permutation(n)
        for method in ("random", "spectral"):
            if method in cfg.gnn3_methods:
                orders[method] = removal_order(method, edges, n, rng=rng)
        gen_seed = 400 + s
        none_removed.append(
            sparsification_accuracy(
                edges,
                np.zeros((0, 2), np.int64),
                feats,
                labels,
                split,
                cfg,
                ctx.child_generator(gen_seed),
            )
        )
        for m in cfg.gnn3_methods:
            for i, level in enumerate(cfg.gnn3_levels):
                k = round(level * len(edges))
                acc[m][i][s] = sparsification_accuracy(
                    edges, orders[m][:k], feats, labels, split, cfg, ctx.child_generator(gen_seed)
                )
                ctx.log.log(
                    "test_accuracy",
                    acc[m][i][s],
                    step=round(100 * level),
                    layer=f"{m},seed={s}",
                )
        ctx.progress(0.5 + 0.5 * (s + 1) / cfg.gnn3_seeds)
    return {
        "num_nodes": int(n),
        "num_edges": len(edges),
        "levels": list(cfg.gnn3_levels),
        "accuracy": acc,
        "mean": {m: [float(np.mean(a)) for a in acc[m]] for m in acc},
        "none_removed": none_removed,
        "wis_seconds": seconds,
    }


def _sbm_features(labels: np.ndarray, cfg: Config, gen: torch.Generator) -> torch.Tensor:
    """x_i = signal·μ_{y_i} + N(0, I), μ_c ~ N(0, I) in R^feature_dim (weak on their own)."""
    k = int(labels.max()) + 1
    means = torch.randn(k, cfg.gnn3_feature_dim, generator=gen)
    noise = torch.randn(labels.size, cfg.gnn3_feature_dim, generator=gen)
    return cfg.gnn3_feature_signal * means[torch.from_numpy(labels)] + noise


def run(config: Config, ctx: RunContext) -> Result:
    summary = {"gnn0": gnn0_summary(config, ctx.rng)}
    summary["gnn1"] = gnn1_grid_ranks(config, ctx.child_generator(100))
    ctx.progress(0.1)
    summary["gnn2"] = _gnn2(config, ctx)
    ctx.progress(0.5)
    summary["gnn3"] = _gnn3(config, ctx)
    return Result(summary=summary, records=ctx.log.freeze())


def _gnn0_check(result: Result):
    r = result.summary["gnn0"]
    ok = (
        r["figure_wi2"] == 48
        and r["path_wi"] == [2, 6, 18]
        and r["one_wis_equal"] == r["graphs"]
        and r["fast_equals_naive"] == r["graphs"]
    )
    return check(
        ok,
        figure_wi2=r["figure_wi2"],
        path_wi=r["path_wi"],
        one_wis_equal=f"{r['one_wis_equal']}/{r['graphs']}",
        fast_equals_naive=f"{r['fast_equals_naive']}/{r['graphs']}",
    )


def _gnn1_check(result: Result):
    rows = {int(r["depth"]): r for r in result.summary["gnn1"]}
    if not all(d in rows for d in (2, 3)):
        return check(None, note="GNN-1 compares depths 2 and 3", depths=sorted(rows))
    ok = all(rows[d]["alternating"] > rows[d]["contiguous"] for d in (2, 3))
    return check(
        ok,
        **{f"L={d}": [rows[d]["alternating"], rows[d]["contiguous"]] for d in rows},
        walk_index={f"L={d}": [rows[d]["wi_alternating"], rows[d]["wi_contiguous"]] for d in rows},
    )


def _gnn2_for(variant: str):
    def _check(result: Result):
        r = result.summary["gnn2"].get(variant)
        if r is None:
            return check(None, note=f"variant {variant} not run")
        low, high = float(np.mean(r["low_walk"])), float(np.mean(r["high_walk"]))
        return check(
            high >= low + 5.0,
            low_walk=low,
            high_walk=high,
            walk_index=r["walk_index"],
            seeds=len(r["low_walk"]),
        )

    return _check


GNN3_LEVELS = (0.3, 0.6, 0.9)  # tensor_graph.md: 1-WIS >= random at >= 2 of these 3 levels


def _gnn3_check(result: Result):
    r = result.summary["gnn3"]
    if "1-wis" not in r["mean"] or "random" not in r["mean"]:
        return check(None, note="needs 1-WIS and random removal", methods=sorted(r["mean"]))
    at = [
        next((i for i, v in enumerate(r["levels"]) if math.isclose(v, x)), None)
        for x in GNN3_LEVELS
    ]
    if None in at:  # more levels (paper preset) must not loosen "2 of 3"
        return check(None, note=f"GNN-3 is read at levels {GNN3_LEVELS}", levels=r["levels"])
    one, rnd = [r["mean"]["1-wis"][i] for i in at], [r["mean"]["random"][i] for i in at]
    wins = [a >= b for a, b in zip(one, rnd)]
    return check(
        sum(wins) >= 2,
        levels=list(GNN3_LEVELS),
        one_wis=one,
        random=rnd,
        two_wis=[r["mean"]["2-wis"][i] for i in at] if "2-wis" in r["mean"] else None,
        spectral=[r["mean"]["spectral"][i] for i in at] if "spectral" in r["mean"] else None,
        none_removed=float(np.mean(r["none_removed"])),
        seeds=len(r["none_removed"]),
    )


CLAIMS = (
    Claim(
        "GNN-0",
        PAPER,
        "Walk indices are exact (figure graph WI_2 = 48; path of 6: 2, 6, 18) "
        "and 1-WIS gives the same walk-index tuples as (L−1)-WIS at L = 2 after every removal.",
        "48; 2, 6, 18; 30/30 graphs",
        check=_gnn0_check,
    ),
    Claim(
        "GNN-1",
        PAPER,
        "Product-aggregation GNN on a path of 6: the separation-rank grid "
        "(60×60) of the alternating partition {0,2,4} exceeds the contiguous {0,1,2}.",
        "alt > contiguous at L = 2 and 3",
        check=_gnn1_check,
    ),
    Claim(
        "GNN-2",
        PAPER,
        "IsSameClass graph (two cliques): placing each image across both "
        "clusters (high walk index) beats one image per cluster by >= 5 test points.",
        "high >= low + 5",
        check=_gnn2_for("two_cliques"),
        hard=False,
    ),
    Claim(
        "GNN-2-as-released",
        PAPER,
        "Same, with the released code's cluster edges (only the first cluster is a clique).",
        "high >= low + 5",
        check=_gnn2_for("as_released"),
        hard=False,
    ),
    Claim(
        "GNN-3",
        PAPER,
        "Edge sparsification: mean 1-WIS accuracy over seeds >= random "
        "removal at >= 2 of the 3 removal levels (SBM, GCN).",
        ">= 2 of 3 levels",
        check=_gnn3_check,
        hard=False,
    ),
)

EXPERIMENT = Experiment(
    id="gnn-walk-index",
    title="GNN interactions, the walk index and Walk Index Sparsification",
    papers=(PAPER,),
    description=(
        "The interaction a GNN can model between a vertex subset and the rest (its separation "
        "rank) is governed by the walk index: the number of walks from the cut's boundary. "
        "Exact walk indices, a separation-rank grid of a product-aggregation GNN, an "
        "IsSameClass graph task where the image-to-vertex layout changes the walk index, and "
        "edge sparsification that greedily keeps walk indices high (WIS) against random and "
        "spectral removal."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    seeds={"smoke": 1, "default": 1, "paper": 1},
)
