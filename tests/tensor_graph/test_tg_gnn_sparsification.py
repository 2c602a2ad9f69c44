"""GNN-3 setup of ``gnn-walk-index``: seeded WIS tie-breaks, the degree-corrected SBM, sparse Â.

The bug these guard against: WIS breaks ties by the lowest canonical edge, and a graph whose
vertices are numbered by class then loses its intra-class edges first (issue 9).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from rankscope.experiments.tensor_graph.data import sbm_graph
from rankscope.experiments.tensor_graph.graph_tasks import (
    dcsbm_graph,
    kept_edge_stats,
    seeded_wis_order,
    sparse_normalized_adjacency,
)
from rankscope.metrics.graph import adjacency_matrix
from rankscope.models.gnn import normalized_adjacency
from rankscope.sparsify import removal_order

CYCLE = np.array([(i, (i + 1) % 12) for i in range(12)], dtype=np.int64)


def _canon(edges) -> set[tuple[int, int]]:
    return {tuple(sorted(e)) for e in np.asarray(edges).tolist()}


@pytest.mark.parametrize("method", ["1-wis", "2-wis"])
def test_wis_ties_are_broken_by_the_generator(method):
    # On a cycle every edge ties at every first step; the numbering rule always takes (0, 1).
    assert removal_order(method, CYCLE, 12, num_remove=1).tolist() == [[0, 1]]
    firsts = Counter()
    for seed in range(120):
        order = seeded_wis_order(method, CYCLE, 12, 6, np.random.default_rng(seed))
        again = seeded_wis_order(method, CYCLE, 12, 6, np.random.default_rng(seed))
        assert np.array_equal(order, again)  # the same seed, the same order
        assert len(_canon(order)) == 6 and _canon(order) <= _canon(CYCLE)
        assert all(u < v for u, v in order.tolist())
        firsts[tuple(order[0])] += 1
    # the cycle is edge-transitive: every edge is equally likely first (10 expected each)
    assert len(firsts) == 12 and max(firsts.values()) <= 25


def test_seeded_one_wis_keeps_the_greedy_rule():
    """Each removed edge maximizes (min deg, max deg) over the remaining edges (Algorithm 2)."""
    edges, _ = dcsbm_graph((30, 30, 30), 5.0, 0.8, 2.5, np.random.default_rng(3))
    order = seeded_wis_order("1-wis", edges, 90, len(edges) // 2, np.random.default_rng(0))
    remaining = _canon(edges)
    for u, v in order.tolist():
        deg = Counter(x for e in remaining for x in e)
        key = {e: (min(deg[e[0]], deg[e[1]]), max(deg[e[0]], deg[e[1]])) for e in remaining}
        assert key[(u, v)] == max(key.values())
        remaining.remove((u, v))


def test_one_wis_statistics_do_not_depend_on_vertex_numbering():
    """Kept same-class share at 90% removal: the class-sorted numbering and a shuffled one give
    the same mean over tie-break seeds; the lowest-index rule on class-sorted ids does not."""
    edges, labels = sbm_graph((40,) * 4, 0.2, 0.04, np.random.default_rng(0))
    n, k = labels.size, round(0.9 * len(edges))
    perm = np.random.default_rng(123).permutation(n)
    shuffled = np.sort(perm[edges], axis=1)
    shuffled_labels = np.empty_like(labels)
    shuffled_labels[perm] = labels

    def mean_share(e, lab) -> float:
        return float(
            np.mean(
                [
                    kept_edge_stats(
                        e, seeded_wis_order("1-wis", e, n, k, np.random.default_rng(s)), lab
                    )[0]
                    for s in range(40)
                ]
            )
        )

    sorted_ids, shuffled_ids = mean_share(edges, labels), mean_share(shuffled, shuffled_labels)
    assert abs(sorted_ids - shuffled_ids) < 0.04  # ≈ 3.5 standard errors of the difference
    by_index = kept_edge_stats(edges, removal_order("1-wis", edges, n, num_remove=k), labels)[0]
    assert by_index < sorted_ids - 0.1  # the leak (0.44 against ≈ 0.63 measured)


def test_dcsbm_degrees_are_heavy_tailed_with_the_requested_mean_and_homophily():
    edges, labels = dcsbm_graph((250,) * 4, 5.0, 0.8, 2.5, np.random.default_rng(1))
    n = labels.size
    assert labels.tolist() == np.repeat(np.arange(4), 250).tolist()  # numbered by class
    assert edges.dtype == np.int64 and np.all(edges[:, 0] < edges[:, 1])
    assert len(np.unique(edges, axis=0)) == len(edges)
    deg = np.bincount(edges.ravel(), minlength=n)
    assert 4.0 < deg.mean() < 5.5  # the cap at probability 1 trims hub pairs a little
    assert np.median(deg) < 0.8 * deg.mean() and deg.max() > 10 * deg.mean()  # heavy tail
    same = np.mean(labels[edges[:, 0]] == labels[edges[:, 1]])
    assert abs(same - 0.8) < 0.04
    # a Poisson SBM of the same mean degree has no such tail
    flat, _ = sbm_graph((250,) * 4, 4.0 / 250, 1.0 / 750, np.random.default_rng(1))
    assert np.bincount(flat.ravel(), minlength=n).max() < 3 * deg.mean()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sizes": (10, 12)},
        {"sizes": (10,)},
        {"homophily": 1.2},
        {"exponent": 2.0},
        {"mean_degree": 0.0},
    ],
)
def test_dcsbm_rejects_bad_input(kwargs):
    args = {"sizes": (10, 10), "mean_degree": 3.0, "homophily": 0.8, "exponent": 2.5}
    args.update(kwargs)
    with pytest.raises(ValueError):
        dcsbm_graph(
            args["sizes"],
            args["mean_degree"],
            args["homophily"],
            args["exponent"],
            np.random.default_rng(0),
        )


def test_seeded_wis_rejects_other_methods():
    with pytest.raises(ValueError, match="1-wis"):
        seeded_wis_order("random", CYCLE, 12, 3, np.random.default_rng(0))


def test_sparse_adjacency_equals_the_dense_one():
    edges = np.array([(0, 1), (1, 2), (0, 2), (3, 4)])  # vertex 5 isolated
    sparse = sparse_normalized_adjacency(edges, 6).to_dense()
    dense = normalized_adjacency(torch.from_numpy(adjacency_matrix(edges, 6)).float())
    torch.testing.assert_close(sparse, dense)
    assert sparse[5, 5] == 1.0 and sparse[0, 1] == pytest.approx(1 / 3)


def test_kept_edge_stats():
    edges = np.array([(0, 1), (1, 2), (2, 3), (0, 3)])
    labels = np.array([0, 0, 1, 1])
    assert kept_edge_stats(edges, np.zeros((0, 2)), labels) == (0.5, 0.0)
    assert kept_edge_stats(edges, np.array([(1, 2), (0, 3)]), labels) == (1.0, 0.0)
    assert kept_edge_stats(edges, np.array([(0, 1), (1, 2), (0, 3)]), labels) == (1.0, 0.5)
