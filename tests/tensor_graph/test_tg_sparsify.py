"""Edge-removal orders: fast WIS = naive WIS, 1-WIS ≡ (L−1)-WIS at L = 2, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from rankscope.metrics.graph import as_edge_array, vertex_walk_indices
from rankscope.sparsify import (
    effective_resistances,
    one_wis_removal_order,
    random_removal_order,
    removal_order,
    sparsify_edges,
    spectral_removal_order,
    wis_removal_order,
    wis_removal_order_naive,
)


def _gnp(n: int, p: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.argwhere(np.triu(rng.random((n, n)) < p, 1))


def _tuples_after_each(edges, n, order, walk_length):
    cur = {tuple(e) for e in as_edge_array(edges, n).tolist()}
    out = []
    for e in order.tolist():
        cur.remove(tuple(e))
        out.append(sorted(vertex_walk_indices(sorted(cur), n, walk_length).tolist()))
    return out


@pytest.mark.parametrize("seed", range(30))
def test_one_wis_and_general_wis_agree_at_depth_two(seed):
    edges = _gnp(12, 0.3, seed)
    k = len(edges) // 2
    a = one_wis_removal_order(edges, 12, k)
    b = wis_removal_order(edges, 12, k, walk_length=1)
    assert _tuples_after_each(edges, 12, a, 1) == _tuples_after_each(edges, 12, b, 1)


@pytest.mark.parametrize(("walk_length", "chunk"), [(1, 1), (2, 1), (3, 1), (4, 1), (2, 3)])
def test_fast_wis_matches_naive_order(walk_length, chunk):
    for seed in range(4):
        edges = _gnp(11, 0.4, 100 + seed)
        k = (2 * len(edges)) // 3
        fast = wis_removal_order(edges, 11, k, walk_length=walk_length, chunk_size=chunk)
        naive = wis_removal_order_naive(edges, 11, k, walk_length=walk_length, chunk_size=chunk)
        np.testing.assert_array_equal(fast, naive)


def test_fast_wis_exact_with_python_integers():
    # K_8 with walks of length 19: counts exceed 2^62, so both run on Python ints
    edges = np.argwhere(np.triu(np.ones((8, 8)), 1))
    fast = wis_removal_order(edges, 8, 10, walk_length=19)
    naive = wis_removal_order_naive(edges, 8, 10, walk_length=19)
    np.testing.assert_array_equal(fast, naive)


def test_first_wis_choice_is_lexicographic_max_by_brute_force():
    edges = _gnp(9, 0.5, 7)
    first = tuple(wis_removal_order(edges, 9, 1, walk_length=2)[0])
    best = max(
        (tuple(sorted(vertex_walk_indices([f for f in edges.tolist() if f != e], 9, 2))), -i)
        for i, e in enumerate(edges.tolist())
    )
    assert first == tuple(edges[-best[1]])


def test_one_wis_rule():
    # star centre 0 (deg 3) + triangle 1-2-3; edges (1,2),(2,3),(1,3) have min degree 2 ... 3
    edges = [(0, 1), (0, 2), (0, 3), (1, 2), (2, 3), (1, 3), (3, 4)]
    first = one_wis_removal_order(edges, 5, 1)[0].tolist()
    deg = np.bincount(np.array(edges).ravel(), minlength=5)
    keys = [(min(deg[u], deg[v]), max(deg[u], deg[v])) for u, v in as_edge_array(edges, 5)]
    assert tuple(first) == tuple(as_edge_array(edges, 5)[keys.index(max(keys))])


def test_disconnected_empty_duplicates():
    edges = [(0, 1), (1, 0), (1, 2), (4, 5), (4, 5), (3, 3)]  # duplicates, a self-loop
    order = wis_removal_order(edges, 7, walk_length=2)  # vertex 6 isolated
    assert sorted(map(tuple, order.tolist())) == [(0, 1), (1, 2), (4, 5)]
    assert wis_removal_order([], 4, walk_length=2).shape == (0, 2)
    assert one_wis_removal_order([], 4).shape == (0, 2)
    rng = np.random.default_rng(0)
    assert spectral_removal_order([], 4, rng=rng).shape == (0, 2)
    assert len(spectral_removal_order(edges, 7, rng=rng)) == 3
    with pytest.raises(ValueError, match="outside"):
        wis_removal_order([(0, 9)], 5, walk_length=2)
    with pytest.raises(ValueError, match="num_remove"):
        wis_removal_order(edges, 7, 4, walk_length=2)


def test_effective_resistance_closed_forms():
    path = [(i, i + 1) for i in range(4)]
    np.testing.assert_allclose(effective_resistances(path, 5), np.ones(4), atol=1e-10)
    cycle = [(i, (i + 1) % 6) for i in range(6)]
    np.testing.assert_allclose(effective_resistances(cycle, 6), np.full(6, 5 / 6), atol=1e-10)
    two = [(0, 1), (2, 3), (3, 4), (2, 4)]  # disconnected: per-component resistances
    np.testing.assert_allclose(effective_resistances(two, 5), [1, 2 / 3, 2 / 3, 2 / 3], atol=1e-10)


def test_randomized_orders_are_seeded_permutations():
    edges = _gnp(15, 0.3, 1)
    canon = {tuple(e) for e in as_edge_array(edges, 15).tolist()}
    for fn in (random_removal_order, spectral_removal_order):
        a = fn(edges, 15, rng=np.random.default_rng(5))
        b = fn(edges, 15, rng=np.random.default_rng(5))
        np.testing.assert_array_equal(a, b)
        assert {tuple(e) for e in a.tolist()} == canon
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        random_removal_order(edges, 15, rng=5)


def test_api_dispatch_and_fraction():
    edges = _gnp(12, 0.4, 2)
    out = sparsify_edges(edges, 12, 0.5, "2-wis")
    np.testing.assert_array_equal(
        out.removed, wis_removal_order(edges, 12, len(out.removed), walk_length=2)
    )
    assert len(out.kept) + len(out.removed) == len(as_edge_array(edges, 12))
    with pytest.raises(ValueError, match="unknown removal method"):
        removal_order("ugs", edges, 12)
    with pytest.raises(ValueError, match="rng"):
        removal_order("random", edges, 12)
    with pytest.raises(ValueError, match="walk_length"):
        removal_order("wis", edges, 12)
