"""Matricization, CP, separation-rank grids and the IGC measure against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.metrics.tensor import (
    check_dense_size,
    cp_als,
    cp_component_norms,
    cp_rank_estimate,
    cp_to_tensor,
    igc_penalty,
    interaction_gradient_cosine,
    learned_cp_rank,
    matricization_effective_rank,
    matricization_rank,
    matricize,
    separation_rank_lower_bound,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_matricize_matches_numpy_transpose_reshape():
    t = torch.randn(2, 3, 4, 5, generator=_gen(), dtype=torch.float64)
    ref = np.transpose(t.numpy(), (1, 3, 0, 2)).reshape(15, 8)
    np.testing.assert_array_equal(matricize(t, [3, 1]).numpy(), ref)
    assert matricize(t, []).shape == (1, 120)
    with pytest.raises(ValueError, match="distinct ints"):
        matricize(t, [0, 0])


def test_cp_tensor_matches_einsum_and_matricization_ranks():
    g = _gen(1)
    f = [torch.randn(d, 2, generator=g, dtype=torch.float64) for d in (3, 4, 5)]
    t = cp_to_tensor(f)
    assert_close(t, torch.einsum("ar,br,cr->abc", *f))
    assert matricization_rank(t, [0]) == 2
    assert matricization_rank(t, [0, 2]) == 2
    s = np.linalg.svd(np.moveaxis(t.numpy(), 1, 0).reshape(4, 15), compute_uv=False)
    p = s[s > 1e-12 * s[0]] / s[s > 1e-12 * s[0]].sum()
    assert abs(matricization_effective_rank(t, [1]) - np.exp(-(p * np.log(p)).sum())) < 1e-10


def test_component_norms_and_learned_rank():
    f = [torch.tensor([[3.0, 0.1]]), torch.tensor([[4.0, 0.001]])]
    assert_close(cp_component_norms(f), torch.tensor([12.0, 1e-4]))
    assert learned_cp_rank(torch.tensor([10.0, 0.2, 0.05])) == 2
    assert learned_cp_rank(torch.zeros(3)) == 0


def test_cp_rank_estimate_planted_ranks():
    g = _gen(2)
    for rank in (1, 3):
        f = [torch.randn(6, rank, generator=g, dtype=torch.float64) for _ in range(3)]
        est = cp_rank_estimate(cp_to_tensor(f), generator=_gen(3))
        assert est.rank == rank
        assert est.errors[rank] < 1e-6
        assert all(r < rank for r in est.failures)
    assert cp_rank_estimate(torch.zeros(3, 3, 3)).rank == 0


def test_cp_als_fits_exact_rank():
    f = [torch.randn(5, 2, generator=_gen(4), dtype=torch.float64) for _ in range(3)]
    fit = cp_als(cp_to_tensor(f), 2, generator=_gen(5))
    assert fit.mse < 1e-6
    assert_close(cp_to_tensor(fit.factors), cp_to_tensor(f), atol=1e-3, rtol=0)


def test_dense_size_refused_before_allocation():
    with pytest.raises(ValueError, match=r"order 64 .* 2\^64\.0 entries"):
        check_dense_size([2] * 64)
    assert check_dense_size([4, 4]) == 16
    big = [torch.ones(2, 1)] * 40
    with pytest.raises(ValueError, match="over the limit"):
        cp_to_tensor(big)


def test_separation_grid_ranks_of_known_functions():
    g = _gen(6)
    a = torch.randn(40, 2, generator=g, dtype=torch.float64)
    b = torch.randn(40, 3, generator=g, dtype=torch.float64)

    def additive(x):
        return torch.sin(x[:, :2].sum(1)) + torch.cos(x[:, 2:].sum(1))

    def product(x):
        return torch.sin(x[:, :2].sum(1)) * torch.cos(x[:, 2:].sum(1))

    def rank3(x):
        return sum(x[:, 0] ** k * x[:, 4] ** k for k in range(3))

    inside = [0, 1]
    assert separation_rank_lower_bound(additive, inside, a, b).rank == 2
    assert separation_rank_lower_bound(product, inside, a, b).rank == 1
    assert separation_rank_lower_bound(rank3, inside, a, b).rank == 3
    with pytest.raises(ValueError, match="templates_in has 2"):
        separation_rank_lower_bound(product, [0], a, b)


def test_igc_separable_is_one_interacting_below():
    g = _gen(7)
    x = torch.randn(32, 6, generator=g, dtype=torch.float64)
    i = torch.tensor([True] * 3 + [False] * 3)
    add = interaction_gradient_cosine(lambda z: z[:, :3].pow(3).sum(1) + z[:, 3:].sum(1), x, i, ~i)
    mul = interaction_gradient_cosine(
        lambda z: torch.sin(z[:, :3]).sum(1) * (2 + torch.tanh(z[:, 3:]).sum(1)), x, i, ~i
    )
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    inter = interaction_gradient_cosine(
        lambda z: (torch.tanh(z[:, :3] @ a) * torch.tanh(z[:, 3:] @ a.T)).sum(1), x, i, ~i
    )
    assert abs(float(add) - 1) < 1e-6
    assert abs(float(mul) - 1) < 1e-6
    assert float(inter) < 0.99


def test_igc_pairs_with_next_example():
    # f = Σ_k x_I,k · c_k(x_J): ∇_{x_I} f = c(x_J), and x̃_b takes x_J from example b + 1.
    x = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    i, j = torch.tensor([True, True, False]), torch.tensor([False, False, True])

    def f(z):
        return z[:, 0] * torch.cos(z[:, 2]) + z[:, 1] * torch.sin(z[:, 2])

    r = interaction_gradient_cosine(f, x, i, j)
    nxt = x[:, 2].roll(-1)
    cos = (torch.cos(x[:, 2]) * torch.cos(nxt) + torch.sin(x[:, 2]) * torch.sin(nxt)).abs()
    assert_close(r, cos.mean())
    with pytest.raises(ValueError, match="B >= 2"):
        interaction_gradient_cosine(lambda z: z.sum(1), x[:1], i, j)
    with pytest.raises(ValueError, match="overlap"):
        interaction_gradient_cosine(lambda z: z.sum(1), x, i, i)


def test_igc_penalty_gradient_matches_finite_differences():
    g = _gen(8)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    i = torch.tensor([True, True, False, False])

    def penalty(weight):
        return igc_penalty(lambda z: torch.tanh(z @ weight).prod(1), x, i, ~i)

    (grad,) = torch.autograd.grad(penalty(w), w)
    eps = 1e-6
    base = w.detach()
    fd = torch.zeros_like(base).view(-1)
    for k in range(base.numel()):
        d = torch.zeros_like(base).view(-1)
        d[k] = eps
        d = d.view_as(base)
        fd[k] = (penalty(base + d) - penalty(base - d)).detach() / (2 * eps)
    fd = fd.view_as(base)
    assert_close(grad, fd, atol=1e-6, rtol=1e-4)
