"""CP/HT factorizations, GNNs, the small CNN and GroupRMSprop against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.metrics.graph import adjacency_matrix
from rankscope.models.cnn import SmallCNN, receptive_field
from rankscope.models.cp import CPFactorization
from rankscope.models.gnn import DenseGCN, ProductGNN, normalized_adjacency
from rankscope.models.ht import HTFactorization
from rankscope.train.group_rmsprop import GroupRMSprop


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_cp_model_matches_dense_einsum():
    m = CPFactorization([3, 4, 2, 5], 6, init_std=1.0, generator=_gen())
    ref = torch.einsum("az,bz,cz,dz->abcd", *m.factors())
    assert_close(m.full(), ref)
    idx = torch.tensor([[2, 3, 1, 4], [0, 0, 0, 0]])
    assert_close(m(idx), ref[idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]])


def test_cp_unequal_dims_use_only_their_rows():
    m = CPFactorization([2, 5], 3, init_std=1.0, generator=_gen(1))
    assert torch.count_nonzero(m.weight[0, 2:]) == 0
    with pytest.raises(ValueError, match="out of range"):
        m(torch.tensor([[2, 0]]))


def test_log_domain_matches_direct_products_and_gradients():
    m = CPFactorization([3] * 8, 5, init_std=0.8, init_mean=0.1, generator=_gen(2))
    idx = torch.randint(0, 3, (20, 8), generator=_gen(3))
    w = m.weight.detach().clone().requires_grad_(True)
    direct = w[torch.arange(8)[None, :], idx].prod(1).sum(-1)  # (20,)
    assert_close(m(idx), direct)
    (m(idx) ** 2).sum().backward()
    (direct**2).sum().backward()
    assert_close(m.weight.grad, w.grad)


def test_log_domain_survives_products_that_overflow_directly():
    # 800 modes with |w| ≈ 3: Π overflows float64 (3^800 ≈ 1e381), but log|entry| is finite
    m = CPFactorization([2] * 800, 2, init_std=0.0, init_mean=3.0, generator=_gen(4))
    with torch.no_grad():
        m.weight[..., 1] = -1.0  # second component: (−1)^800 = +1
    idx = torch.zeros(1, 800, dtype=torch.long)
    log_abs, sign = m.log_components(idx)
    assert_close(log_abs[0], torch.tensor([800 * math.log(3.0), 0.0], dtype=torch.float64))
    assert sign.tolist() == [[1.0, 1.0]]
    assert m.weight[0, 0].prod() ** 800 == math.inf  # the direct product does overflow
    small = CPFactorization([2] * 800, 1, init_std=0.0, init_mean=0.5, generator=_gen(4))
    assert_close(
        small.log_components(idx)[0][0, 0], torch.tensor(800 * math.log(0.5), dtype=torch.float64)
    )


def test_dense_materialization_refused_for_large_order():
    m = CPFactorization([2] * 64, 3, generator=_gen())
    with pytest.raises(ValueError, match="order 64"):
        m.full()
    h = HTFactorization([2] * 64, [2] * 6, generator=_gen())
    with pytest.raises(ValueError, match="order 64"):
        h.full()


def _ht_reference(m: HTFactorization) -> torch.Tensor:
    """Node tensors φ^v by einsum (docs/results.md): pool pairs, then W^{(l, v)}, then output."""
    nodes = [m.layers[0][n, : m.dims[n]] for n in range(m.order)]  # (d_n, R_1)
    for level, perm in enumerate(m.perms):
        nodes = [nodes[i] for i in perm]
        pooled = []
        for k in range(0, len(nodes), 2):
            a, b = nodes[k], nodes[k + 1]
            pooled.append(a.reshape(*a.shape[:-1], *[1] * (b.ndim - 1), a.shape[-1]) * b)
        if level + 1 < len(m.perms):
            pooled = [
                torch.einsum("...z,zc->...c", t, m.layers[level + 1][j])
                for j, t in enumerate(pooled)
            ]
        nodes = pooled
    return torch.einsum("...z,z->...", nodes[0], m.output)


@pytest.mark.parametrize("pattern", ["adjacent", "half"])
def test_ht_model_matches_einsum_reference(pattern):
    m = HTFactorization([3, 2, 4, 3], [5, 4], pattern=pattern, init_std=1.0, generator=_gen(5))
    ref = _ht_reference(m)
    if pattern == "half":  # reference built on the pooled order (0, 2, 1, 3)
        ref = ref.permute(0, 2, 1, 3)
    assert_close(m.full(), ref)


def test_ht_order_eight_and_tree():
    m = HTFactorization([2] * 8, [3, 3, 2], init_std=1.0, generator=_gen(6))
    assert_close(m.full(), _ht_reference(m))
    assert m.mode_tree()[1] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert HTFactorization([2] * 4, [2, 2], pattern="half").mode_tree()[1] == [(0, 2), (1, 3)]


def test_ht_local_component_norms():
    m = HTFactorization([2] * 4, [3, 2], init_std=1.0, generator=_gen(7))
    top = m.local_component_norms()
    w = m.layers[1]  # (2 nodes, R_1, R_2)
    ref = w[0].norm(dim=0) * w[1].norm(dim=0) * m.output.abs()
    assert_close(top[0], ref.detach())
    low = m.local_component_norms(0)  # windows (0,1), (2,3); next-layer rows W^{(2,v)}[r, :]
    w0 = m.layers[0]
    ref0 = w0[0].norm(dim=0) * w0[1].norm(dim=0) * w[0].norm(dim=1)
    assert_close(low[0], ref0.detach())


def test_product_gnn_matches_explicit_loops():
    edges = [(0, 1), (1, 2), (2, 3)]
    adj = torch.from_numpy(adjacency_matrix(edges, 4)).double()
    m = ProductGNN(2, 3, 2, generator=_gen(8))
    x = torch.randn(5, 4, 2, generator=_gen(9), dtype=torch.float64)
    h = x
    for w in m.weights:
        msg = h @ w.T
        h = torch.stack(
            [torch.stack([msg[:, j] for j in range(4) if adj[i, j]]).prod(0) for i in range(4)], 1
        )
    assert_close(m(x, adj), h.prod(1) @ m.out.T)
    assert_close(m(x, adj, target=2), h[:, 2] @ m.out.T)


def test_normalized_adjacency_and_gcn_shapes():
    adj = torch.from_numpy(adjacency_matrix([(0, 1), (1, 2)], 3, self_loops=False)).float()
    a = normalized_adjacency(adj)
    deg = torch.tensor([2.0, 3.0, 2.0])
    ref = (adj + torch.eye(3)) / torch.sqrt(deg[:, None] * deg[None, :])
    assert_close(a, ref)
    g = DenseGCN(4, 8, 3, 2, generator=_gen(10))
    assert g(torch.randn(5, 3, 4, generator=_gen(11)), a).shape == (5, 2)
    v = DenseGCN(4, 8, 2, 3, readout="none", generator=_gen(10))
    assert v(torch.randn(3, 4, generator=_gen(11)), a).shape == (3, 3)


def test_models_are_reproducible_from_generator():
    a = DenseGCN(4, 8, 2, 1, generator=_gen(12)).state_dict()
    b = DenseGCN(4, 8, 2, 1, generator=_gen(12)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = SmallCNN(1, [4, 4], generator=_gen(12)).state_dict()
    d = SmallCNN(1, [4, 4], generator=_gen(12)).state_dict()
    assert all(torch.equal(c[k], d[k]) for k in c)


def test_cnn_receptive_field_is_the_gradient_support():
    net = SmallCNN(1, [2, 2, 2], strides=[2, 2, 2], generator=_gen(13), dtype=torch.float64)
    with torch.no_grad():
        for conv in net.convs:
            conv.weight.abs_()
            conv.bias.fill_(0.1)
    assert net.receptive_field == receptive_field([3, 3, 3], [2, 2, 2]) == 15
    x = torch.rand(1, 1, 1, 64, dtype=torch.float64, requires_grad=True)
    h = x
    for conv in net.convs:
        h = torch.relu(conv(h))
    (g,) = torch.autograd.grad(h[0, 0, 0, 3], x)  # an output column away from the border
    cols = torch.nonzero(g[0, 0, 0]).ravel()
    assert int(cols.max() - cols.min()) + 1 == net.receptive_field


def test_group_rmsprop_matches_formula_over_steps():
    p1 = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    p2 = torch.nn.Parameter(torch.tensor([[0.5]], dtype=torch.float64))
    opt = GroupRMSprop([{"params": [p1]}, {"params": [p2], "lr": 0.05}], lr=0.1, eps=1e-8)
    x1, x2, v = p1.detach().numpy().copy(), p2.detach().numpy().copy(), 0.0
    for t in range(1, 6):
        g1, g2 = 2 * x1 + 1, 3 * x2  # gradients of a quadratic
        p1.grad, p2.grad = torch.from_numpy(g1.copy()), torch.from_numpy(g2.copy())
        opt.step()
        v = 0.99 * v + 0.01 * float((g1**2).sum() + (g2**2).sum())
        denom = math.sqrt(v / (1 - 0.99**t)) + 1e-8
        x1, x2 = x1 - 0.1 * g1 / denom, x2 - 0.05 * g2 / denom
        np.testing.assert_allclose(p1.detach().numpy(), x1, rtol=1e-12)
        np.testing.assert_allclose(p2.detach().numpy(), x2, rtol=1e-12)
    state = opt.state_dict()
    fresh = GroupRMSprop([{"params": [p1]}, {"params": [p2], "lr": 0.05}], lr=0.1)
    fresh.load_state_dict(state)
    assert fresh.steps == 5 and float(fresh.square_avg[0]) == pytest.approx(v)
    with pytest.raises(ValueError, match="alpha"):
        GroupRMSprop([p1], alpha=1.0)


def test_group_rmsprop_members_equal_separate_runs():
    g = _gen(14)
    w = torch.randn(3, 4, generator=g, dtype=torch.float64) * torch.tensor([[1.0], [0.1], [3.0]])
    target = torch.randn(4, generator=g, dtype=torch.float64)
    joint = torch.nn.Parameter(w.clone())
    opt = GroupRMSprop([joint], lr=0.05, members=3)
    singles = [torch.nn.Parameter(w[k].clone()) for k in range(3)]
    opts = [GroupRMSprop([p], lr=0.05) for p in singles]
    for _ in range(4):
        opt.zero_grad()
        ((joint**3 - target) ** 2).sum().backward()  # members do not interact
        opt.step()
        for p, o in zip(singles, opts):
            o.zero_grad()
            ((p**3 - target) ** 2).sum().backward()
            o.step()
    assert_close(joint.detach(), torch.stack([p.detach() for p in singles]))


def test_ht_log_domain_deep_tree_does_not_overflow():
    # 256 modes, 8 levels, every weight = 3: log|root| follows v_1 = 2 log 3,
    # v_l = 2(log(3·R) + v_{l−1}) and ends above log(1e308): the entry itself overflows.
    m = HTFactorization([2] * 256, [2] * 8, init_std=0.0, init_mean=3.0, generator=_gen(15))
    idx = torch.zeros(1, 256, dtype=torch.long)
    log_abs, sign = m.log_root(idx)
    v = 2 * math.log(3.0)
    for _ in range(7):
        v = 2 * (math.log(3.0 * 2) + v)
    assert v > math.log(torch.finfo(torch.float64).max)
    assert_close(log_abs[0], torch.full((2,), v, dtype=torch.float64))
    assert sign.tolist() == [[1.0, 1.0]]
    assert m(idx).isinf().all()  # the value is beyond float64; its log is not


def _he_second_moment(x: torch.Tensor, layers: int) -> torch.Tensor:
    """Closed form of E_init[z_L²] per output position under He init (zero biases).

    Given the layer below, a pre-activation is a zero-mean Gaussian, so E[relu(z)²] = E[z²]/2
    exactly; with weights N(0, 2/(c·9)) over a 3×3 window that gives
    q_1 = (2/9)·Σ_window mean_c x² and q_l = (1/9)·Σ_window q_{l−1} (zero padding: taps
    outside the image contribute 0), at any width.
    """
    ones = torch.ones(1, 1, 3, 3, dtype=x.dtype)
    q = (
        2
        / 9
        * torch.nn.functional.conv2d(x.pow(2).mean(1, keepdim=True), ones, stride=2, padding=1)
    )
    for _ in range(layers - 1):
        q = torch.nn.functional.conv2d(q, ones, stride=2, padding=1) / 9
    return q


def test_he_init_logit_second_moment_matches_the_closed_form():
    # 8×8 input, three stride-2 layers: the last map is 1×1, so the global average pool is
    # the identity and E[logit²] = (1/c_L)·c_L·E[relu(z_L)²] = q_L/2 exactly
    from rankscope.experiments.tensor_graph.locality import he_init_

    x = torch.rand(1, 2, 8, 8, generator=_gen(20), dtype=torch.float64)
    expected = float(_he_second_moment(x, 3)[0, 0, 0, 0]) / 2
    draws = []
    for k in range(1500):
        g = _gen(1000 + k)
        net = he_init_(SmallCNN(2, [4, 4, 4], generator=g, dtype=torch.float64), g)
        with torch.no_grad():
            draws.append(float(net(x)[0, 0]) ** 2)
    draws = torch.tensor(draws, dtype=torch.float64)
    se = float(draws.std() / len(draws) ** 0.5)
    assert abs(float(draws.mean()) - expected) < 4 * se, (float(draws.mean()), expected, se)
    assert 4 * se < 0.5 * expected  # resolves a wrong gain (conv gain 1 instead of 2: ÷8)


def test_he_init_lifts_the_input_dependent_logit_scale_off_the_plateau():
    # the bug of issue 9: under SmallCNN's own U(±1/√fan_in) init the logits on the IsSameClass
    # canvas vary with the input by ~1e-4 (the rest is the head bias); He init gives ~1e-2
    from rankscope.experiments.tensor_graph.locality import he_init_

    x = torch.rand(64, 1, 8, 40, generator=_gen(21))
    x[..., 8:32] = 0.0  # two 8×8 "digits" at gap 24
    spread = {}
    for init in ("torch", "he"):
        values = []
        for k in range(5):
            g = _gen(2000 + k)
            net = SmallCNN(1, [16, 32, 32, 32, 32], generator=g)
            if init == "he":
                he_init_(net, g)
            with torch.no_grad():
                values.append(float(net(x)[:, 0].std()))
        spread[init] = sum(values) / len(values)
    assert spread["torch"] < 1e-3
    assert spread["he"] > 30 * spread["torch"]
    biases = [c.bias for c in he_init_(SmallCNN(1, [4, 4], generator=_gen(3)), _gen(3)).convs]
    assert all(torch.equal(b, torch.zeros_like(b)) for b in biases)
