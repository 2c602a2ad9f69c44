"""GNN-1 of ``gnn-walk-index``: exact grid ranks over GF(p) (issue 9).

The bug these guard against: with weights and templates 1 ± 0.3 the product GNN is nearly
separable (s₂/s₁ ≈ 1e-8 on seed 3 at L = 3), and counting float64 singular values above
1e-10·s₁ measured conditioning, not the separation rank.
"""

from __future__ import annotations

from math import comb
from types import SimpleNamespace

import numpy as np
import pytest
import sympy
import torch

from rankscope.experiments.tensor_graph.graph_tasks import (
    GF_PRIME,
    PATH6,
    gnn1_grid_ranks,
    grid_rank_mod_p,
    product_gnn_mod_p,
    rank_mod_p,
)
from rankscope.metrics.graph import adjacency_matrix
from rankscope.models.gnn import ProductGNN


def _exact_forward(x, weights, out) -> int:
    """Reference: the product GNN's graph output on one input, in Python integers."""
    nbr = [[u for u in range(6) if u == v or abs(u - v) == 1] for v in range(6)]
    h = [list(map(int, row)) for row in x]
    for w in weights:
        msg = [
            [sum(int(w[a][b]) * hu[b] for b in range(len(hu))) for a in range(len(w))] for hu in h
        ]
        h = [
            [np.prod([msg[u][a] for u in nbr[v]], dtype=object) for a in range(len(w))]
            for v in range(6)
        ]
    pooled = [np.prod([h[v][a] for v in range(6)], dtype=object) for a in range(len(h[0]))]
    return int(sum(int(out[0][a]) * pooled[a] for a in range(len(pooled))))


def test_mod_p_forward_matches_product_gnn_in_exact_float():
    # depth 1 with entries in {-1, 0, 1}: |f| < 2^53, so float64 is exact
    rng = np.random.default_rng(0)
    w = [rng.integers(-1, 2, (3, 3))]
    o = rng.integers(-1, 2, (1, 3))
    x = rng.integers(-1, 2, (7, 6, 3))
    m = ProductGNN(3, 3, 1)
    with torch.no_grad():
        m.weights[0].copy_(torch.from_numpy(w[0]).double())
        m.out.copy_(torch.from_numpy(o).double())
    adj = torch.from_numpy(adjacency_matrix(PATH6, 6)).double()
    ref = m(torch.from_numpy(x).double(), adj)[:, 0].detach().numpy().astype(np.int64)
    got = product_gnn_mod_p(x, w, o, PATH6, 6)
    np.testing.assert_array_equal(got, ref % GF_PRIME)


def test_mod_p_forward_matches_exact_integers_at_depth_3():
    rng = np.random.default_rng(1)
    w = [rng.integers(-5, 6, (2, 2)) for _ in range(3)]
    o = rng.integers(-5, 6, (1, 2))
    x = rng.integers(-5, 6, (4, 6, 2))
    got = product_gnn_mod_p(x, w, o, PATH6, 6)
    ref = [_exact_forward(xi, w, o) % GF_PRIME for xi in x]
    assert max(abs(_exact_forward(xi, w, o)) for xi in x) > 2**63  # beyond int64 and float64
    np.testing.assert_array_equal(got, ref)


def test_rank_mod_p_matches_sympy():
    rng = np.random.default_rng(2)
    for r in (0, 1, 3, 6):
        a = rng.integers(-4, 5, (9, r)) @ rng.integers(-4, 5, (r, 7)) if r else np.zeros((9, 7))
        a = a.astype(np.int64)
        assert rank_mod_p(a) == sympy.Matrix(a.tolist()).rank()


def test_exact_rank_where_float_fails():
    # det = 1, but s₂/s₁ ≈ 1e-24: float64 sees rank 1 (the old seed-3 failure mode)
    big = [[1, 2**40], [2**40, 2**80 + 1]]
    assert np.linalg.matrix_rank(np.array(big, dtype=np.float64)) == 1
    assert rank_mod_p(np.array([[v % GF_PRIME for v in row] for row in big])) == 2


def test_grid_rank_matches_sympy_on_a_tiny_grid():
    rng = np.random.default_rng(3)
    w = [rng.integers(0, 4, (2, 2)) for _ in range(2)]
    o = rng.integers(1, 4, (1, 2))
    t_in, t_out = rng.integers(0, 4, (10, 3, 2)), rng.integers(0, 4, (10, 3, 2))
    for subset in ([0, 2, 4], [0, 1, 2], [2]):
        rest = [i for i in range(6) if i not in subset]
        t_in_s = t_in[:, : len(subset)]
        t_out_s = np.concatenate([t_out, t_out], 1)[:, : len(rest)]
        grid = []
        for a in t_in_s:
            row = []
            for b in t_out_s:
                x = np.zeros((6, 2), np.int64)
                x[subset], x[rest] = a, b
                row.append(_exact_forward(x, w, o))
            grid.append(row)
        exact = sympy.Matrix(grid).rank()
        assert grid_rank_mod_p(w, o, subset, t_in_s, t_out_s) == exact


def test_contiguous_rank_at_depth_2_is_the_derived_bound():
    # I = {0,1,2}, L = 2: only h^(1,2) and h^(1,3) straddle the cut, each a coordinate-wise
    # product of an I-side and an Iᶜ-side part; each enters three neighbourhoods, so per output
    # coordinate f is (rank-D_h sum)^3·(rank-D_h sum)^3 times one-sided factors: rank ≤
    # C(D_h + 2, 3)^2, and ≤ D_h·C(D_h + 2, 3)^2 = 32 over the D_h = 2 coordinates.
    cfg = SimpleNamespace(depths=(1, 2), templates=(8, 64), hidden=2)
    rows = gnn1_grid_ranks(cfg, np.random.default_rng(0))
    assert rows[0]["alternating"] == rows[0]["contiguous"] == 2  # sep ≤ D_h at L = 1
    assert rows[1]["contiguous"] == 2 * comb(4, 3) ** 2 == 32
    assert rows[1]["alternating"] == 64  # saturates the grid, far above 32


def test_gnn1_grid_ranks_rejects_mismatched_templates():
    with pytest.raises(ValueError, match="one grid side per depth"):
        gnn1_grid_ranks(SimpleNamespace(depths=(1, 2), templates=(8,), hidden=2), None)
