"""One entry point for every removal method, and fraction-based sparsification of an edge list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rankscope.metrics.graph import as_edge_array
from rankscope.sparsify.baselines import random_removal_order, spectral_removal_order
from rankscope.sparsify.wis import one_wis_removal_order, wis_removal_order

__all__ = ["METHODS", "Sparsified", "removal_order", "sparsify_edges"]

METHODS = ("random", "spectral", "1-wis", "2-wis", "wis")


def removal_order(
    method: str,
    edges,
    num_nodes: int,
    *,
    num_remove: int | None = None,
    rng: np.random.Generator | None = None,
    walk_length: int | None = None,
    chunk_size: int = 1,
) -> np.ndarray:
    """Removed edges (k, 2) in removal order (canonical u < v rows; all edges when k is None).

    ``method``: ``random`` and ``spectral`` need ``rng``; ``1-wis`` is the degree-based
    Algorithm 2; ``2-wis`` is (L−1)-WIS with L = 3; ``wis`` needs ``walk_length`` = L − 1.
    ``chunk_size`` applies to ``2-wis``/``wis`` (default 1, the paper's algorithm).
    """
    if method not in METHODS:
        raise ValueError(f"unknown removal method {method!r}; expected one of {METHODS}")
    if method in ("random", "spectral"):
        if rng is None:
            raise ValueError(f"method {method!r} is randomized: pass rng=np.random.default_rng(..)")
        fn = random_removal_order if method == "random" else spectral_removal_order
        order = fn(edges, num_nodes, rng=rng)
        return order if num_remove is None else order[: _count(num_remove, len(order))]
    if method == "1-wis":
        return one_wis_removal_order(edges, num_nodes, num_remove)
    if method == "2-wis":
        walk_length = 2
    elif walk_length is None:
        raise ValueError("method 'wis' needs walk_length= (L − 1 for a depth-L GNN)")
    return wis_removal_order(
        edges, num_nodes, num_remove, walk_length=walk_length, chunk_size=chunk_size
    )


def _count(num_remove, total: int) -> int:
    if isinstance(num_remove, bool) or not isinstance(num_remove, int | np.integer):
        raise ValueError(f"num_remove must be an int, got {num_remove!r}")
    if not 0 <= num_remove <= total:
        raise ValueError(f"num_remove must be in [0, {total}], got {num_remove}")
    return int(num_remove)


@dataclass(frozen=True)
class Sparsified:
    """``kept`` (E − k, 2) and ``removed`` (k, 2, in removal order), canonical edges."""

    kept: np.ndarray
    removed: np.ndarray


def sparsify_edges(edges, num_nodes: int, fraction: float, method: str, **kwargs) -> Sparsified:
    """Remove round(fraction·E) edges of the canonical edge list by ``method`` (see removal_order).

    >>> s = sparsify_edges([(0, 1), (1, 2), (2, 0), (2, 3)], 4, 0.25, "1-wis")
    >>> s.removed.tolist(), len(s.kept)
    ([[0, 2]], 3)
    """
    e = as_edge_array(edges, num_nodes)
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    k = round(float(fraction) * len(e))
    removed = removal_order(method, e, num_nodes, num_remove=k, **kwargs).reshape(-1, 2)
    gone = {tuple(r) for r in removed.tolist()}
    kept = np.array([r for r in e.tolist() if tuple(r) not in gone], dtype=np.int64)
    return Sparsified(kept=kept.reshape(-1, 2), removed=removed)
