"""Pure, batched, device-preserving rank metrics. See ``papers/definitions.md`` for formulas."""

from rankscope.metrics.ranks import (
    RANK_POLICIES,
    effective_rank,
    numerical_rank,
    rank_threshold,
    stable_rank,
)
from rankscope.metrics.spectra import TopK, singular_values, topk_singular_values

__all__ = [
    "RANK_POLICIES",
    "TopK",
    "effective_rank",
    "numerical_rank",
    "rank_threshold",
    "singular_values",
    "stable_rank",
    "topk_singular_values",
]
