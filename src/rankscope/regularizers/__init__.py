"""rankscope.regularizers: differentiable rank penalties and a proximal low-rank step.

- :func:`schatten_penalty` Σ_i (s_i² + ε²)^{p/2} of a matrix (p = 1 nuclear, p = 2/L), with
  :func:`nuclear_penalty` and :func:`depth_penalty`; :class:`RankPenalty` sums one over the
  chosen layers of a model, for a ``loss_fn``;
- :func:`factor_penalty` Σ_l ‖W_l‖_F², the depth-L factor penalty whose minimum over
  factorisations of A is L·‖A‖_{S_{2/L}}^{2/L} (:func:`factor_penalty_floor`);
- :func:`prox_nuclear` singular-value soft-thresholding, and :class:`ProximalNuclear`, the
  step applied to chosen layers after each optimizer step.
"""

from rankscope.regularizers.penalties import (
    DEFAULT_EPS,
    RankPenalty,
    depth_penalty,
    factor_penalty,
    factor_penalty_floor,
    layer_weights,
    nuclear_penalty,
    schatten_penalty,
)
from rankscope.regularizers.proximal import ProximalNuclear, prox_nuclear

__all__ = [
    "DEFAULT_EPS",
    "ProximalNuclear",
    "RankPenalty",
    "depth_penalty",
    "factor_penalty",
    "factor_penalty_floor",
    "layer_weights",
    "nuclear_penalty",
    "prox_nuclear",
    "schatten_penalty",
]
