"""The explicit registry: experiment id -> :class:`Experiment`.

Each family module defines ``EXPERIMENT`` (or ``EXPERIMENTS``); add its dotted path here.
"""

from __future__ import annotations

import difflib
import importlib

from rankscope.experiments.base import Experiment

__all__ = ["all_experiments", "get_experiment"]

_MODULES: tuple[str, ...] = (
    "rankscope.experiments.scalar_mode",
    "rankscope.experiments.linear.saddle_to_saddle",
    "rankscope.experiments.linear.schatten_l2",
    "rankscope.experiments.linear.mc_not_norms",
    "rankscope.experiments.linear.mixed_dynamics",
    "rankscope.experiments.linear.sgd_rank_jumps",
    "rankscope.experiments.collapse.neural_rank_collapse",
    "rankscope.experiments.collapse.sgd_weight_decay_rank",
    "rankscope.experiments.collapse.rank_diminishing",
    "rankscope.experiments.tensor_graph.tensor_factorization",
    "rankscope.experiments.tensor_graph.htf_locality",
    "rankscope.experiments.tensor_graph.gnn_walk_index",
    "rankscope.experiments.compression.low_rank_compression",
    "rankscope.experiments.bottleneck.depth_rank",
    "rankscope.experiments.bottleneck.bottleneck_structure",
    "rankscope.experiments.bottleneck.feature_sparsity",
    "rankscope.experiments.bottleneck.leaky_resnet",
    "rankscope.experiments.spectral.cnn_bottleneck",
    "rankscope.experiments.spectral.layerwise_spectral_bias",
    "rankscope.experiments.spectral.compositionality",
)

_cache: dict[str, Experiment] | None = None


def all_experiments() -> dict[str, Experiment]:
    global _cache
    if _cache is None:
        reg: dict[str, Experiment] = {}
        for path in _MODULES:
            mod = importlib.import_module(path)
            exps = getattr(mod, "EXPERIMENTS", None) or (mod.EXPERIMENT,)
            for exp in exps:
                if exp.id in reg:
                    raise RuntimeError(f"experiment id {exp.id!r} registered twice ({path})")
                reg[exp.id] = exp
        _cache = reg
    return dict(_cache)


def get_experiment(exp_id: str) -> Experiment:
    reg = all_experiments()
    if exp_id in reg:
        return reg[exp_id]
    close = difflib.get_close_matches(exp_id, list(reg), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown experiment {exp_id!r}{hint}; valid ids: {sorted(reg)}")
