"""Sparsification: Walk Index Sparsification of graphs (edges) and Carathéodory pruning of
neurons (:mod:`rankscope.sparsify.caratheodory`).

Graphs:

Works on any undirected edge list (E, 2) over ``num_nodes`` vertices (canonicalized by
:func:`rankscope.metrics.graph.as_edge_array`: duplicates merged, self-loops ignored,
out-of-range vertices rejected). Every function returns the removed edges in removal order.
"""

from rankscope.sparsify.api import METHODS, Sparsified, removal_order, sparsify_edges
from rankscope.sparsify.baselines import (
    effective_resistances,
    random_removal_order,
    spectral_removal_order,
)
from rankscope.sparsify.caratheodory import (
    HOMOGENEOUS_ACTIVATIONS,
    CaratheodoryResult,
    PrunedLayer,
    caratheodory_reduce,
    cone_generators,
    prune_layer,
)
from rankscope.sparsify.wis import (
    one_wis_removal_order,
    wis_removal_order,
    wis_removal_order_naive,
)

__all__ = [
    "HOMOGENEOUS_ACTIVATIONS",
    "METHODS",
    "CaratheodoryResult",
    "PrunedLayer",
    "Sparsified",
    "caratheodory_reduce",
    "cone_generators",
    "effective_resistances",
    "one_wis_removal_order",
    "prune_layer",
    "random_removal_order",
    "removal_order",
    "sparsify_edges",
    "spectral_removal_order",
    "wis_removal_order",
    "wis_removal_order_naive",
]
