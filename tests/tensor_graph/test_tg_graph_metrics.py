"""Walk counts and walk indices (definitions §18) against hand counts and numpy references."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.metrics.graph import (
    adjacency_matrix,
    as_edge_array,
    cut_boundary,
    vertex_walk_indices,
    walk_count,
    walk_index,
    walk_matrix,
)

FIGURE = [(0, 2), (2, 4), (4, 6), (1, 3), (3, 5), (0, 1), (2, 5), (5, 6)]
PATH6 = [(i, i + 1) for i in range(5)]


def test_figure_graph_unit_value():
    assert cut_boundary(FIGURE, 7, [0, 1, 2, 3]).tolist() == [2, 3, 4, 5]
    assert walk_index(FIGURE, 7, [0, 1, 2, 3], 2) == 48


def test_path_unit_values_hand_counted():
    # C_I = {2, 3}; with self-loops deg+1 = 3 for both; length-2 walks: 9 from each.
    assert [walk_index(PATH6, 6, [0, 1, 2], ell) for ell in (0, 1, 2)] == [2, 6, 18]


def test_vertex_target_walk_index_hand_count():
    # walks of length 1 from C_I = {2, 3} to t = 3: A[2,3] + A[3,3] = 2
    assert walk_index(PATH6, 6, [0, 1, 2], 1, target=3) == 2
    assert walk_index(PATH6, 6, [0, 1, 2], 1, target=0) == 0


def test_walk_matrix_matches_numpy_and_exact_fallback():
    rng = np.random.default_rng(3)
    a = adjacency_matrix(np.argwhere(np.triu(rng.random((9, 9)) < 0.4, 1)), 9)
    np.testing.assert_array_equal(walk_matrix(a, 5), np.linalg.matrix_power(a, 5))
    big = a * 10**6  # entries of A^4 reach ~1e24 > int64: Python integers, exactly
    w = walk_matrix(big, 4)
    assert w.dtype == object
    ref = np.linalg.matrix_power(a.astype(object), 4) * 10**24
    assert all(int(x) == int(y) for x, y in zip(w.ravel(), ref.ravel()))


def test_walk_count_definition():
    a = adjacency_matrix(PATH6, 6)
    w = np.linalg.matrix_power(a, 3)
    assert walk_count(a, [0, 5], [1, 2], 3) == int(w[np.ix_([0, 5], [1, 2])].sum())
    assert walk_count(a, [], [1], 3) == 0


def test_vertex_walk_indices_equal_singleton_walk_indices():
    rng = np.random.default_rng(0)
    edges = np.argwhere(np.triu(rng.random((10, 10)) < 0.3, 1))
    edges = np.concatenate([edges, [[3, 3]]])  # a self-loop in the input is ignored
    for ell in (1, 2, 3):
        s = vertex_walk_indices(edges, 10, ell)
        ref = [walk_index(edges, 10, [t], ell, target=t) for t in range(10)]
        assert s.tolist() == ref


def test_isolated_and_disconnected_vertices():
    edges = [(0, 1), (3, 4)]  # vertex 2 isolated, two components
    s = vertex_walk_indices(edges, 5, 2)
    assert s[2] == 0
    assert walk_index(edges, 5, [0, 1], 2) == 0  # no edge crosses the cut
    assert walk_index([], 4, [0], 3) == 0


def test_edge_list_canonicalization():
    e = as_edge_array([(2, 1), (1, 2), (0, 0), (1, 2), (0, 3)], 4)
    assert e.tolist() == [[0, 3], [1, 2]]
    assert as_edge_array([], 3).shape == (0, 2)
    assert as_edge_array(np.array([[0.0, 1.0]]), 2).tolist() == [[0, 1]]


@pytest.mark.parametrize(
    ("edges", "n", "match"),
    [
        ([(0, 5)], 5, r"row 0 = \[0, 5\] has a vertex outside \[0, 4\]"),
        ([(-1, 2)], 5, "outside"),
        (np.array([[0.5, 1.0]]), 3, "integer vertex ids"),
        (np.zeros((2, 3), dtype=int), 3, r"shape \(E, 2\)"),
        (np.array([[0, 1, 2], [1, 2, 0]]), 3, r"pass edges.T"),
    ],
)
def test_bad_edge_lists_raise(edges, n, match):
    with pytest.raises(ValueError, match=match):
        as_edge_array(edges, n)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="num_nodes"):
        as_edge_array([(0, 1)], -1)
    with pytest.raises(ValueError, match="subset"):
        walk_index(PATH6, 6, [7], 1)
    with pytest.raises(ValueError, match="target"):
        walk_index(PATH6, 6, [0], 1, target=9)
    with pytest.raises(ValueError, match="length"):
        walk_matrix(adjacency_matrix(PATH6, 6), -1)
