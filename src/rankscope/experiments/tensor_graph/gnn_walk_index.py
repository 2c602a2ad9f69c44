"""GNN interactions and the walk index; Walk Index Sparsification (arXiv:2211.16494).

GNN-0: exact walk-index values and 1-WIS ≡ (L−1)-WIS at L = 2. GNN-1: the exact (GF(p))
separation-rank grid of a product-aggregation GNN is higher for a partition with a higher walk
index. GNN-2: digits IsSameClass graphs, images placed across the clusters (high walk index) vs
one per cluster.
GNN-3: edge sparsification of a degree-corrected SBM (heavy-tailed degrees) by random, spectral,
1-WIS and 2-WIS removal, WIS ties broken by the seeded generator.
Setups and thresholds: docs/results.md.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rankscope.experiments.base import (
    Claim,
    Experiment,
    Result,
    RunContext,
    check,
    inconclusive,
)
from rankscope.experiments.tensor_graph.graph_tasks import (
    dcsbm_graph,
    gnn0_summary,
    gnn1_grid_ranks,
    kept_edge_stats,
    seeded_wis_order,
    sparsification_accuracy,
    train_same_class_graph,
)
from rankscope.experiments.tensor_graph.headline import nums, outcome
from rankscope.sparsify import removal_order

PAPER = "arXiv:2211.16494"


@dataclass(frozen=True)
class GNN0Config:
    """GNN-0: 1-WIS vs (L−1)-WIS and fast vs naive 2-WIS on random G(nodes, p) graphs."""

    graphs: int = 30
    nodes: int = 12
    p: float = 0.3


@dataclass(frozen=True)
class GNN1Config:
    """GNN-1: exact separation-rank grids of a product-aggregation GNN on a path of 6.

    ``templates``: grid side per depth, above the contiguous partition's generic rank (2, 32,
    1116 at D_h = 2); weights and templates uniform integers in [0, p), ranks over GF(p),
    p = 2^31 − 1 (decision 9.gnn1-1)."""

    depths: tuple[int, ...] = (1, 2, 3)
    templates: tuple[int, ...] = (8, 64, 1200)
    hidden: int = 2


@dataclass(frozen=True)
class GNN2Config:
    """GNN-2: digits IsSameClass graphs, dense GCN, full-batch Adam."""

    variants: tuple[str, ...] = ("two_cliques", "as_released")
    train: int = 2000
    test: int = 500
    epochs: int = 500
    lr: float = 5e-3
    width: int = 16


@dataclass(frozen=True)
class GNN3Config:
    """GNN-3: edge sparsification of one degree-corrected SBM graph (``dcsbm_graph``, drawn
    from ``graph_seed``, the same for every run seed: the data set), GCN with Adam;
    ``weight_decay`` is torch's λ, trained as the explicit penalty l2 = λ/2 on every
    parameter. The WIS orders break ties by the run seed's generator (``seeded_wis_order``)."""

    sizes: tuple[int, ...] = (500, 500, 500, 500)
    mean_degree: float = 5.0
    homophily: float = 0.8
    degree_exponent: float = 2.5
    feature_dim: int = 16
    feature_signal: float = 0.5
    graph_seed: int = 0
    levels: tuple[float, ...] = (0.3, 0.6, 0.9)
    methods: tuple[str, ...] = ("random", "spectral", "1-wis")
    epochs: int = 200
    lr: float = 1e-2
    weight_decay: float = 1e-3
    width: int = 32


@dataclass(frozen=True)
class Config:
    gnn0: GNN0Config = field(default_factory=GNN0Config)
    gnn1: GNN1Config = field(default_factory=GNN1Config)
    gnn2: GNN2Config = field(default_factory=GNN2Config)
    gnn3: GNN3Config = field(default_factory=GNN3Config)
    depth: int = 3  # GCN depth of GNN-2 and GNN-3


@dataclass(frozen=True)
class WalkIndexChecks:
    """GNN-0: exact walk indices and the WIS equivalences, counted over ``graphs``."""

    figure_wi2: int
    path_wi: tuple[int, ...]
    graphs: int
    one_wis_equal: int
    fast_equals_naive: int


@dataclass(frozen=True)
class GridRanks:
    """GNN-1 at one depth: exact grid ranks (side × side grid) and walk indices of the two
    partitions."""

    depth: int
    alternating: int
    wi_alternating: int
    contiguous: int
    wi_contiguous: int
    side: int = 0  # grid side; 0 in summaries from before issue 9 (float 60×60 grid)


@dataclass(frozen=True)
class SameClassGraph:
    """GNN-2 for one cluster-edge variant and this seed: test accuracy (%) per layout."""

    low_walk: float
    high_walk: float
    low_walk_index: int
    high_walk_index: int


@dataclass(frozen=True)
class Sparsification:
    """GNN-3 for this seed: test accuracy (%) per method at each removal level."""

    num_nodes: int
    num_edges: int
    levels: tuple[float, ...]
    accuracy: dict[str, tuple[float, ...]]
    none_removed: float
    same_class: dict[str, tuple[float, ...]] = field(default_factory=dict)
    isolated: dict[str, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Summary:
    gnn0: WalkIndexChecks
    gnn1: tuple[GridRanks, ...]
    gnn2: dict[str, SameClassGraph]
    gnn3: Sparsification


PRESETS = {
    "smoke": Config(
        gnn0=GNN0Config(graphs=5),
        gnn1=GNN1Config(templates=(8, 64, 80)),
        gnn2=GNN2Config(train=200, test=100, epochs=30),
        gnn3=GNN3Config(
            sizes=(30, 30, 30, 30), methods=("random", "spectral", "1-wis", "2-wis"), epochs=30
        ),
    ),
    "default": Config(),
    "paper": Config(
        gnn2=GNN2Config(epochs=1000),
        gnn3=GNN3Config(
            levels=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
            methods=("random", "spectral", "1-wis", "2-wis"),
        ),
    ),
}


def _gnn2(cfg: Config, ctx: RunContext) -> dict[str, SameClassGraph]:
    """This seed's pairs per variant; one GCN per (variant, layout)."""
    from rankscope.experiments.tensor_graph.data import digits, same_class_pairs

    images, labels = digits()
    out = {}
    for variant in cfg.gnn2.variants:
        rng = np.random.default_rng(int(ctx.rng.integers(2**31)))
        train = same_class_pairs(labels, cfg.gnn2.train, rng)
        test = same_class_pairs(labels, cfg.gnn2.test, rng)
        res = {
            part: train_same_class_graph(
                images,
                labels,
                train,
                test,
                variant,
                part,
                cfg.gnn2,
                cfg.depth,
                ctx.child_generator(200),
                ctx.log,
                device=ctx.device,
            )
            for part in ("low_walk", "high_walk")
        }
        out[variant] = SameClassGraph(
            low_walk=res["low_walk"]["test_accuracy"],
            high_walk=res["high_walk"]["test_accuracy"],
            low_walk_index=res["low_walk"]["walk_index"],
            high_walk_index=res["high_walk"]["walk_index"],
        )
    return out


@functools.lru_cache(maxsize=2)
def _data_set(cfg: GNN3Config):
    """GNN-3's data set, the same for every run seed: the degree-corrected SBM graph from
    ``graph_seed`` and its vertex features (cached within a process; callers must not modify
    them)."""
    edges, labels = dcsbm_graph(
        cfg.sizes,
        cfg.mean_degree,
        cfg.homophily,
        cfg.degree_exponent,
        np.random.default_rng(cfg.graph_seed),
    )
    feats = _sbm_features(labels, cfg, torch.Generator().manual_seed(cfg.graph_seed))
    return edges, labels, feats


def _gnn3(cfg: GNN3Config, depth: int, ctx: RunContext) -> Sparsification:
    edges, labels, feats = _data_set(cfg)
    n = labels.size
    rng = np.random.default_rng(int(ctx.rng.integers(2**31)))
    split = rng.permutation(n)
    orders = {}
    k = round(max(cfg.levels) * len(edges))
    for method in cfg.methods:
        if method in ("random", "spectral"):
            orders[method] = removal_order(method, edges, n, rng=rng)
        else:  # WIS: ties broken by this seed's generator, not by the vertex numbering
            orders[method] = seeded_wis_order(method, edges, n, k, rng)

    def accuracy(removed) -> float:
        return sparsification_accuracy(
            edges, removed, feats, labels, split, cfg, depth, ctx.child_generator(400), ctx.device
        )

    none_removed = accuracy(np.zeros((0, 2), np.int64))
    acc, same, isolated = {}, {}, {}
    for m in cfg.methods:
        acc[m], same[m], isolated[m] = [], [], []
        for level in cfg.levels:
            removed = orders[m][: round(level * len(edges))]
            acc[m].append(accuracy(removed))
            share, alone = kept_edge_stats(edges, removed, labels)
            same[m].append(share)
            isolated[m].append(alone)
            ctx.log.log(
                "test_accuracy", acc[m][-1], step=round(100 * level), layer=f"{m},seed={ctx.seed}"
            )
        ctx.progress(0.5 + 0.5 * len(acc) / len(cfg.methods))
    return Sparsification(
        num_nodes=int(n),
        num_edges=len(edges),
        levels=tuple(cfg.levels),
        accuracy={m: tuple(a) for m, a in acc.items()},
        none_removed=none_removed,
        same_class={m: tuple(a) for m, a in same.items()},
        isolated={m: tuple(a) for m, a in isolated.items()},
    )


def _sbm_features(labels: np.ndarray, cfg: GNN3Config, gen: torch.Generator) -> torch.Tensor:
    """x_i = signal·μ_{y_i} + N(0, I), μ_c ~ N(0, I) in R^feature_dim (weak on their own)."""
    k = int(labels.max()) + 1
    means = torch.randn(k, cfg.feature_dim, generator=gen)
    noise = torch.randn(labels.size, cfg.feature_dim, generator=gen)
    return cfg.feature_signal * means[torch.from_numpy(labels)] + noise


def run(config: Config, ctx: RunContext) -> Result:
    walk = gnn0_summary(config.gnn0, ctx.rng)
    gnn0 = WalkIndexChecks(**{**walk, "path_wi": tuple(walk["path_wi"])})
    gnn1_rng = np.random.default_rng((int(ctx.seed), 100))  # ctx.rng left to GNN-2 and GNN-3
    gnn1 = tuple(GridRanks(**row) for row in gnn1_grid_ranks(config.gnn1, gnn1_rng))
    ctx.progress(0.1)
    gnn2 = _gnn2(config, ctx)
    ctx.progress(0.5)
    gnn3 = _gnn3(config.gnn3, config.depth, ctx)
    summary = Summary(gnn0=gnn0, gnn1=gnn1, gnn2=gnn2, gnn3=gnn3)
    return Result(summary=summary, records=ctx.log.freeze())


def _gnn0_check(result: Result):
    r = result.summary.gnn0
    exact = r.figure_wi2 == 48 and tuple(r.path_wi) == (2, 6, 18)
    ok = exact and r.one_wis_equal == r.graphs and r.fast_equals_naive == r.graphs
    return check(
        ok,
        headline=(
            f"WI_2 = {r.figure_wi2} (48), path WI {', '.join(map(str, r.path_wi))} (2, 6, 18); "
            f"1-WIS ≡ 2-WIS in {r.one_wis_equal}/{r.graphs} graphs, fast = naive 2-WIS in "
            f"{r.fast_equals_naive}/{r.graphs} → "
            + outcome(ok, "walk indices off" if not exact else "WIS orders disagree")
        ),
        figure_wi2=r.figure_wi2,
        path_wi=list(r.path_wi),
        one_wis_equal=f"{r.one_wis_equal}/{r.graphs}",
        fast_equals_naive=f"{r.fast_equals_naive}/{r.graphs}",
    )


def _gnn1_check(result: Result):
    rows = {r.depth: r for r in result.summary.gnn1}
    if not all(d in rows for d in (2, 3)):
        note = "GNN-1 compares depths 2 and 3"
        return inconclusive(
            note, headline=f"depths {sorted(rows)} run; {note}", depths=sorted(rows)
        )
    text = "; ".join(
        f"L = {d}: {rows[d].alternating} vs {rows[d].contiguous} (grid {rows[d].side})"
        for d in (2, 3)
    )
    details = {
        **{f"L={d}": [rows[d].alternating, rows[d].contiguous] for d in rows},
        "side": {f"L={d}": rows[d].side for d in rows},
        "walk_index": {f"L={d}": [rows[d].wi_alternating, rows[d].wi_contiguous] for d in rows},
    }
    # a full contiguous grid cannot order the partitions, unless alternating is strictly lower
    below = [d for d in (2, 3) if rows[d].alternating < rows[d].contiguous]
    full = [d for d in (2, 3) if rows[d].contiguous >= rows[d].side]
    if full and not below:
        note = f"contiguous rank fills the grid at L = {', '.join(map(str, full))}"
        return inconclusive(note, headline=f"grid rank {text}; {note}", **details)
    bad = [d for d in (2, 3) if not rows[d].alternating > rows[d].contiguous]
    return check(
        not bad,
        headline=(
            f"exact grid rank alternating vs contiguous {text}; need alternating > contiguous "
            "→ " + outcome(not bad, f"not at L = {', '.join(map(str, bad))}")
        ),
        **details,
    )


def _gnn2_for(variant: str):
    def _check(results: Sequence[Result]):
        runs = [res.summary.gnn2[variant] for res in results if variant in res.summary.gnn2]
        if not runs:
            note = f"variant {variant} not run"
            return inconclusive(note, headline=f"{note}: nothing to read")
        low = float(np.mean([r.low_walk for r in runs]))
        high = float(np.mean([r.high_walk for r in runs]))
        ok = high >= low + 5.0
        return check(
            ok,
            headline=(
                f"{variant}: test accuracy high-walk {high:.1f} vs low-walk {low:.1f} (mean of "
                f"{len(runs)} seeds); need +5 points → " + outcome(ok, f"{high - low:+.1f}")
            ),
            low_walk=low,
            high_walk=high,
            walk_index={"low_walk": runs[0].low_walk_index, "high_walk": runs[0].high_walk_index},
            seeds=len(runs),
        )

    return _check


GNN3_LEVELS = (0.3, 0.6, 0.9)  # docs/results.md: 1-WIS >= random at >= 2 of these 3 levels


def _mean_over_seeds(results: Sequence[Result], method: str, at: list[int]) -> list[float]:
    return [float(np.mean([res.summary.gnn3.accuracy[method][i] for res in results])) for i in at]


def _gnn3_check(results: Sequence[Result]):
    r = results[0].summary.gnn3
    methods = sorted(r.accuracy)
    if "1-wis" not in r.accuracy or "random" not in r.accuracy:
        note = "needs 1-WIS and random removal"
        return inconclusive(note, headline=f"methods {methods} run; {note}", methods=methods)
    at = [
        next((i for i, v in enumerate(r.levels) if math.isclose(v, x)), None) for x in GNN3_LEVELS
    ]
    if None in at:  # more levels (paper preset) must not loosen "2 of 3"
        note = f"GNN-3 is read at levels {GNN3_LEVELS}"
        return inconclusive(
            note, headline=f"levels {list(r.levels)} run; {note}", levels=list(r.levels)
        )
    one, rnd = _mean_over_seeds(results, "1-wis", at), _mean_over_seeds(results, "random", at)
    wins = [a >= b for a, b in zip(one, rnd)]
    ok = sum(wins) >= 2
    return check(
        ok,
        headline=(
            f"1-WIS {nums(one, '.1f')} vs random {nums(rnd, '.1f')} at "
            f"{nums((100 * x for x in GNN3_LEVELS), '.0f')} % removed (mean of {len(results)} "
            f"seeds); need >= 2 of 3 → " + outcome(ok, f"{sum(wins)} of 3")
        ),
        levels=list(GNN3_LEVELS),
        one_wis=one,
        random=rnd,
        two_wis=_mean_over_seeds(results, "2-wis", at) if "2-wis" in r.accuracy else None,
        spectral=_mean_over_seeds(results, "spectral", at) if "spectral" in r.accuracy else None,
        none_removed=float(np.mean([res.summary.gnn3.none_removed for res in results])),
        isolated=_diagnostic(results, "isolated", at),
        same_class=_diagnostic(results, "same_class", at),
        seeds=len(results),
    )


def _diagnostic(results: Sequence[Result], name: str, at: list[int]) -> dict[str, list[float]]:
    """Mean over seeds of a kept-graph statistic (share of isolated vertices, share of
    same-class kept edges) per method at the read levels; empty for summaries without it."""
    first = getattr(results[0].summary.gnn3, name)
    return {
        m: [float(np.mean([getattr(r.summary.gnn3, name)[m][i] for r in results])) for i in at]
        for m in first
        if all(m in getattr(r.summary.gnn3, name) for r in results)
    }


# Inversions (the wrong-way perturbations the shared tester applies): each must fail its check.


def _wrong_walk_index(s: Summary) -> Summary:
    return replace(s, gnn0=replace(s.gnn0, figure_wi2=s.gnn0.figure_wi2 + 1))


def _contiguous_wins(s: Summary) -> Summary:
    return replace(s, gnn1=tuple(replace(r, alternating=r.contiguous - 1) for r in s.gnn1))


CLAIMS = (
    Claim(
        "GNN-0",
        PAPER,
        "Walk indices are exact (figure graph WI_2 = 48; path of 6: 2, 6, 18) "
        "and 1-WIS gives the same walk-index tuples as (L−1)-WIS at L = 2 after every removal.",
        "48; 2, 6, 18; 30/30 graphs",
        check=_gnn0_check,
        invert=_wrong_walk_index,
    ),
    Claim(
        "GNN-1",
        PAPER,
        "Product-aggregation GNN on a path of 6: the exact separation-rank grid rank "
        "(over GF(p), grid larger than the contiguous rank) of the alternating partition "
        "{0,2,4} exceeds the contiguous {0,1,2}.",
        "alt > contiguous at L = 2 and 3",
        check=_gnn1_check,
        invert=_contiguous_wins,
    ),
    Claim(
        "GNN-2",
        PAPER,
        "IsSameClass graph (two cliques): placing each image across both "
        "clusters (high walk index) beats one image per cluster by >= 5 test points (mean over "
        "seeds).",
        "high >= low + 5",
        across_seeds=_gnn2_for("two_cliques"),
        hard=False,
    ),
    Claim(
        "GNN-2-as-released",
        PAPER,
        "Same, with the released code's cluster edges (only the first cluster is a clique).",
        "high >= low + 5",
        across_seeds=_gnn2_for("as_released"),
        hard=False,
    ),
    Claim(
        "GNN-3",
        PAPER,
        "Edge sparsification: mean 1-WIS accuracy over seeds >= random "
        "removal at >= 2 of the 3 removal levels (degree-corrected SBM, GCN).",
        ">= 2 of 3 levels",
        across_seeds=_gnn3_check,
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
    seeds={"smoke": 2, "default": 5, "paper": 10},
    summary_cls=Summary,
)
