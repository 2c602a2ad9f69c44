"""Pure, batched, device-preserving rank metrics. See ``papers/definitions.md`` for formulas.

Compute a spectrum once with :func:`singular_values` and pass it to any function of a
spectrum (ranks, norms, RankMe, the depth expansion). :data:`METRICS` declares each scalar
metric's range, scale behaviour, differentiability and input kind.
"""

from rankscope.metrics.coi import cost_of_identity
from rankscope.metrics.collapse import (
    GLOBAL_MEANS,
    NC1_VARIANTS,
    ClassStatsAccumulator,
    check_labelled,
)
from rankscope.metrics.conv import (
    activation_frequency_energy,
    conv_flatten,
    conv_frequency_blocks,
    conv_operator_singular_values,
    conv_operator_spectrum,
    frequency_channel_covariance,
    frequency_mass,
    frequency_rank,
    linear_cnn_blocks,
    pooled_kernel_spectrum,
    total_frequency_rank,
)
from rankscope.metrics.expansion import (
    DepthExpansion,
    depth_expansion,
    linear_representation_cost,
)
from rankscope.metrics.jacobians import (
    JACOBIAN_METHODS,
    JacobianRank,
    jacobian_rank,
    jacobian_sketch,
    jacobians,
    summarize_ranks,
)
from rankscope.metrics.neural_collapse import (
    cdnv,
    class_stats,
    nc1,
    nc2_equinorm,
    nc2_etf_error,
    nc3,
    nc4,
    tcv1,
    tcv2,
)
from rankscope.metrics.norms import (
    distance_to_rank,
    frobenius_norm,
    log_pdet,
    nuclear_norm,
    operator_norm,
    schatten_norm,
    schatten_power,
    smoothed_schatten_power,
)
from rankscope.metrics.ranks import (
    RANK_POLICIES,
    drop_small,
    effective_rank,
    numerical_rank,
    participation_ratio,
    rank_threshold,
    stable_rank,
    variance_dimension,
)
from rankscope.metrics.registry import INPUT_KINDS, INVARIANCES, METRICS, MetricInfo
from rankscope.metrics.representations import (
    CONV_MODES,
    CovarianceAccumulator,
    conv_samples,
    representation_metrics,
    representation_rank,
)
from rankscope.metrics.spectra import TopK, singular_values, topk_singular_values
from rankscope.metrics.spectral_entropy import (
    RANKME_VARIANTS,
    RankMeVariant,
    rankme,
    rankme_all,
    rankme_from_spectrum,
)

__all__ = [
    "CONV_MODES",
    "GLOBAL_MEANS",
    "INPUT_KINDS",
    "INVARIANCES",
    "JACOBIAN_METHODS",
    "METRICS",
    "NC1_VARIANTS",
    "RANKME_VARIANTS",
    "RANK_POLICIES",
    "ClassStatsAccumulator",
    "CovarianceAccumulator",
    "DepthExpansion",
    "JacobianRank",
    "MetricInfo",
    "RankMeVariant",
    "TopK",
    "activation_frequency_energy",
    "cdnv",
    "check_labelled",
    "class_stats",
    "conv_flatten",
    "conv_frequency_blocks",
    "conv_operator_singular_values",
    "conv_operator_spectrum",
    "conv_samples",
    "cost_of_identity",
    "depth_expansion",
    "distance_to_rank",
    "drop_small",
    "effective_rank",
    "frequency_channel_covariance",
    "frequency_mass",
    "frequency_rank",
    "frobenius_norm",
    "jacobian_rank",
    "jacobian_sketch",
    "jacobians",
    "linear_cnn_blocks",
    "linear_representation_cost",
    "log_pdet",
    "nc1",
    "nc2_equinorm",
    "nc2_etf_error",
    "nc3",
    "nc4",
    "nuclear_norm",
    "numerical_rank",
    "operator_norm",
    "participation_ratio",
    "pooled_kernel_spectrum",
    "rank_threshold",
    "rankme",
    "rankme_all",
    "rankme_from_spectrum",
    "representation_metrics",
    "representation_rank",
    "schatten_norm",
    "schatten_power",
    "singular_values",
    "smoothed_schatten_power",
    "stable_rank",
    "summarize_ranks",
    "tcv1",
    "tcv2",
    "topk_singular_values",
    "total_frequency_rank",
    "variance_dimension",
]
