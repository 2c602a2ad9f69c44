"""Baseline edge-removal orders: uniformly random, and spectral (Spielman–Srivastava).

Spectral follows ``get_spectral_graph_sparsify_edge_removal_order`` in
``noamrazin/gnn_interactions`` (adapted from PyGSP): edges are sampled *to keep* without
replacement with probability ∝ w_e·R_e (effective resistance, unit weights here), and the
removal order is that keep order reversed, so low-resistance (redundant) edges go first.
"""

from __future__ import annotations

import numpy as np

from rankscope.metrics.graph import as_edge_array

__all__ = ["effective_resistances", "random_removal_order", "spectral_removal_order"]


def _rng(rng) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def random_removal_order(edges, num_nodes: int, *, rng: np.random.Generator) -> np.ndarray:
    """Every edge (canonical (u < v) form) in a uniformly random order, shape (E, 2)."""
    e = as_edge_array(edges, num_nodes)
    return e[_rng(rng).permutation(len(e))]


def effective_resistances(edges, num_nodes: int) -> np.ndarray:
    """R_e = L⁺_uu + L⁺_vv − 2 L⁺_uv for each canonical edge (E,), L the combinatorial Laplacian.

    Uses the dense pseudo-inverse, which is block-wise per connected component, so disconnected
    graphs are handled; O(n³).
    """
    e = as_edge_array(edges, num_nodes)
    if len(e) == 0:
        return np.zeros(0)
    lap = np.zeros((num_nodes, num_nodes))
    np.add.at(lap, (e[:, 0], e[:, 1]), -1.0)
    np.add.at(lap, (e[:, 1], e[:, 0]), -1.0)
    lap[np.diag_indices(num_nodes)] = -lap.sum(axis=1)
    lp = np.linalg.pinv(lap, hermitian=True)
    u, v = e[:, 0], e[:, 1]
    return np.maximum(lp[u, u] + lp[v, v] - 2 * lp[u, v], 0.0)


def spectral_removal_order(edges, num_nodes: int, *, rng: np.random.Generator) -> np.ndarray:
    """Spielman–Srivastava removal order (E, 2): reverse of a keep order sampled ∝ R_e.

    Edges with zero sampling probability (numerically zero resistance) are removed first.
    """
    e = as_edge_array(edges, num_nodes)
    if len(e) == 0:
        return e
    p = effective_resistances(e, num_nodes)
    pos = np.flatnonzero(p > 0)
    zero = np.flatnonzero(p <= 0)
    keep = _rng(rng).choice(pos, size=pos.size, replace=False, p=p[pos] / p[pos].sum())
    return e[np.concatenate([zero, keep[::-1]])]
