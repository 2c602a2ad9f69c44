"""The neural-rank-collapse bound (docs/results.md "Bounds") on random, non-stationary networks.

References are independent of rankscope.experiments.collapse.bounds: the residual comes from
autograd of the full objective J = mean CE + (λ/2)Σ‖W‖², δ from finite differences, and the
spectra from numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from rankscope.experiments.collapse.bounds import (
    class_means,
    layer_bound,
    network_bounds,
    per_sample_signals,
)

F64 = torch.float64


def _random_net(seed: int, dims=(12, 20, 16, 4), scale=1.0):
    g = torch.Generator().manual_seed(seed)
    ws = [
        scale * torch.randn(o, i, generator=g, dtype=F64) / i**0.5
        for i, o in itertools.pairwise(dims)
    ]
    x = torch.randn(60, dims[0], generator=g, dtype=F64)
    y = torch.arange(60) % dims[-1]
    return ws, x, y


def _objective_grads(ws, x, y, lam):
    """∇_W J for J = mean CE + (λ/2)Σ‖W‖² (plain autograd, no per-sample signals)."""
    params = [w.clone().requires_grad_(True) for w in ws]
    h = x
    for i, w in enumerate(params):
        h = h @ w.T
        if i < len(params) - 1:
            h = torch.relu(h)
    j = F.cross_entropy(h, y) + lam / 2 * sum((w**2).sum() for w in params)
    return torch.autograd.grad(j, params)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("lam", [1e-4, 1e-2, 1.0])
def test_bound_holds_on_random_networks(seed, lam):
    ws, x, y = _random_net(seed, scale=1.0 + seed)
    bounds, _ = network_bounds(ws, x, y, lam=lam, num_classes=4)
    grads = _objective_grads(ws, x, y, lam)
    for w, b, g in zip(ws, bounds, grads):
        s = np.linalg.svd(w.numpy(), compute_uv=False)
        s_k1 = s[4] if s.size > 4 else 0.0
        resid = (g / lam).numpy()  # R_l = ∇J/λ, computed without the module under test
        assert b.s_k1 == pytest.approx(s_k1, rel=1e-12, abs=1e-14)
        assert b.residual_op == pytest.approx(np.linalg.norm(resid, 2), rel=1e-10)
        assert b.residual_fro == pytest.approx(np.linalg.norm(resid), rel=1e-10)
        assert s_k1 <= b.bound_op * (1 + 1e-12)
        assert np.sqrt((s[4:] ** 2).sum()) <= b.bound_fro * (1 + 1e-12)
        assert b.holds


def test_signals_are_per_sample_derivatives_of_the_summed_loss():
    ws, x, y = _random_net(7)
    h_prev, deltas, total = per_sample_signals(ws, x, y)
    # finite differences: perturb z_2 of sample i only
    i, eps = 5, 1e-6
    z = torch.relu(x @ ws[0].T) @ ws[1].T

    def loss_i(zi):
        return float(F.cross_entropy(torch.relu(zi) @ ws[2].T, y[i : i + 1], reduction="sum"))

    fd = torch.tensor(
        [
            (loss_i(z[i : i + 1] + eps * e) - loss_i(z[i : i + 1] - eps * e)) / (2 * eps)
            for e in torch.eye(z.shape[1], dtype=F64)
        ],
        dtype=F64,
    )
    assert_close(deltas[1][i], fd, rtol=1e-6, atol=1e-8)
    assert total == pytest.approx(float(F.cross_entropy(z.relu() @ ws[2].T, y, reduction="sum")))
    assert_close(h_prev[0], x)


def test_mean_reduced_signals_would_break_the_identity():
    """(1/N)ΔHᵀ must equal the gradient of the mean loss: the summed-loss δ are not 1/N-scaled."""
    ws, x, y = _random_net(3)
    h_prev, deltas, _ = per_sample_signals(ws, x, y)
    grads = _objective_grads(ws, x, y, lam=0.0)
    for h, d, g in zip(h_prev, deltas, grads):
        assert_close(d.T @ h / x.shape[0], g)


def test_identical_inputs_per_class_leave_only_the_residual():
    """H_0 = M_0: the variability term vanishes and s_{K+1}(W_1) ≤ ‖R_1‖₂ (exact special case)."""
    ws, _, y = _random_net(11)
    centres = torch.randn(4, 12, generator=torch.Generator().manual_seed(1), dtype=F64)
    x = centres[y]
    (b1, *_), _ = network_bounds(ws, x, y, lam=0.1, num_classes=4)
    assert b1.variability_op == pytest.approx(0.0, abs=1e-12)
    assert b1.s_k1 <= b1.residual_op


def test_class_means_and_shape_errors():
    h = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]], dtype=F64)
    y = torch.tensor([0, 0, 1])
    assert_close(
        class_means(h, y, 2), torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=F64)
    )
    with pytest.raises(ValueError, match="shape mismatch"):
        layer_bound(
            torch.zeros(3, 5, dtype=F64), h, torch.zeros(3, 3, dtype=F64), y, lam=1.0, num_classes=2
        )
    with pytest.raises(ValueError, match="lam > 0"):
        layer_bound(
            torch.zeros(3, 2, dtype=F64), h, torch.zeros(3, 3, dtype=F64), y, lam=0.0, num_classes=2
        )
