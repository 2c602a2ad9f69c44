"""Bottleneck-family experiments: bad configs, divergence, claim helpers (smoke-sized)."""

from __future__ import annotations

import pytest

from rankscope.experiments.bottleneck import feature_sparsity, leaky_resnet
from rankscope.experiments.bottleneck.feature_sparsity import SweepPoint, saturation_width
from rankscope.experiments.config import apply_overrides
from rankscope.experiments.registry import get_experiment
from rankscope.store import Store
from rankscope.sweep.runner import run_experiment


def test_leaky_config_with_rho_times_leak_at_least_one_is_refused():
    with pytest.raises(ValueError, match=r"ρ·L̃ >= 1 for L̃ = \[8.0\]"):
        leaky_resnet.NetConfig(depth=8, leaks=(2.0, 8.0))
    with pytest.raises(ValueError, match="ρ·L̃"):
        apply_overrides(leaky_resnet.PRESETS["smoke"], ["net.depth=3"])
    with pytest.raises(ValueError, match="lambda_convention"):
        leaky_resnet.NetConfig(lambda_convention="lambda_times_Ltilde_typo")


def test_non_finite_loss_is_recorded_as_diverged(tmp_path):
    exp = get_experiment("depth-rank")
    store = Store(tmp_path / "store")
    overrides = ["slope.adam_lr=1e200"]
    ids = run_experiment(exp, preset="smoke", seeds=1, store=store, overrides=overrides)
    run = store.load_run(ids[0])
    assert run.status == "diverged"


def test_saturation_width():
    pts = [SweepPoint(4, w, v, 0.0) for w, v in ((2, 1.0), (4, 0.5), (8, 0.499), (16, 0.4985))]
    assert saturation_width(pts, 0.01) == 4
    pts = [SweepPoint(4, w, v, 0.0) for w, v in ((2, 1.0), (4, 0.5), (8, 0.25))]
    assert saturation_width(pts, 0.01) is None


def test_feature_sparsity_prunes_a_wide_smoke_net_exactly():
    cfg = feature_sparsity.PRESETS["smoke"].main
    import torch

    from rankscope.experiments.bottleneck.feature_sparsity import _net, _prune_all, _task

    x, _ = _task(torch.Generator().manual_seed(0), cfg.n_points, cfg.d_in, cfg.d_out)
    net = _net([cfg.d_in, 40, 40, cfg.d_out], torch.Generator().manual_seed(1))
    pruned, reports = _prune_all(net, x, 1e-10, 1e-10)
    assert all(r.width_after <= cfg.n_points * (cfg.n_points + 1) for r in reports)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), net(x), atol=1e-9, rtol=1e-9)


def test_min_norm_gap_is_the_projected_gradient_at_a_non_critical_point():
    """FS-1's stationarity bound: off a critical point the part of W̃_ℓ outside the span of
    σ̃(Z_{ℓ−1}) is exactly (∂J/∂W̃_ℓ)P⊥/(2λ) (an explicit projector from the SVD here, not
    the pseudo-inverse of metrics), so the deviation and the form gap obey the bounds."""
    import torch

    from rankscope.experiments.bottleneck.feature_sparsity import (
        _layer_gradients,
        _loss,
        _net,
        _task,
    )
    from rankscope.metrics import activation_form

    lam = 1e-2
    x, y = _task(torch.Generator().manual_seed(3), 6, 4, 2)
    net = _net([4, 20, 20, 2], torch.Generator().manual_seed(4))  # untrained: far from critical
    loss = _loss(x, y)
    params = [q for pair in zip(net.weights, net.biases, strict=True) for q in pair]
    obj = loss(net) + lam * sum((q * q).sum() for q in params)
    grads = torch.autograd.grad(obj, params)
    with torch.no_grad():
        out, _, zs = net.forward_with_hidden(x)
        prev = torch.cat([x, torch.ones(6, 1, dtype=x.dtype)], 1)
        gap = 0.0
        for l, z in enumerate(zs):
            u, s, _ = torch.linalg.svd(prev.mT, full_matrices=True)  # columns span σ̃(Z)
            r = int((s > 1e-10 * s[0]).sum())
            perp = u[:, r:] @ u[:, r:].mT
            w = torch.cat([net.weights[l], net.biases[l][:, None]], 1)
            g = torch.cat([grads[2 * l], grads[2 * l + 1][:, None]], 1)
            torch.testing.assert_close(g @ perp, 2 * lam * w @ perp, atol=1e-12, rtol=1e-9)
            gap += lam * float((w @ perp).square().sum())
            prev = torch.cat([torch.relu(z), torch.ones(6, 1, dtype=z.dtype)], 1)
        j = float(obj)
        form = float(activation_form(x, zs, float(((out - y) ** 2).sum() / 6), lam))
    assert j - form == pytest.approx(gap, rel=1e-8)
    assert gap > 1e-3 * j  # the test point is really off the critical set
    g_layers = _layer_gradients(net, loss, lam)
    assert (j - form) / j <= sum(v * v for v in g_layers) / (4 * lam * j)


def test_fs1_bound_fails_a_form_above_the_loss_and_fs3_a_rising_loss():
    from rankscope.experiments.base import Result

    base = dict(
        n_points=4, width=8, objective=1.0, data_loss=0.5, grad_norm=1e-3,
        activation_form=0.999, form_rel_error=1e-3, min_norm_deviation=0.01,
        min_norm_deviations=[0.0, 0.01, 0.01], layer_grad_norms=[1e-3, 1e-3, 1e-3],
        layer_weight_norms=[2.0, 2.0, 2.0], kink_fraction=0.0, prunes=[],
        pruned_objective=0.999, pruned_rel_change=1e-3, pruned_grad_norm=1e-3, sweep=[],
        sweep_pruned={}, lam=1e-3, rcond=1e-10,
    )  # fmt: skip
    claims = {c.id: c for c in feature_sparsity.CLAIMS}
    ok = Result(summary=feature_sparsity.Summary(**base), records=None)
    # bounds: gap <= 3e-6/(4e-3) = 7.5e-4 < 1e-3 -> fails; deviation 0.01 <= 1e-3/(4e-3) = 0.25
    assert claims["FS-1"].check(ok).verdict == "fail"
    good = feature_sparsity.Summary(**{**base, "layer_grad_norms": [0.0, 3e-3, 3e-3]})
    assert claims["FS-1"].check(Result(summary=good, records=None)).verdict == "pass"
    assert claims["FS-3"].check(ok).verdict == "pass"
    worse = feature_sparsity.Summary(**{**base, "pruned_grad_norm": 3e-3})  # > 2x before
    assert claims["FS-3"].check(Result(summary=worse, records=None)).verdict == "fail"


def test_bs3_extrapolates_the_balanced_layer_norm_to_infinite_depth():
    from rankscope.experiments.bottleneck import bottleneck_structure as bs

    depths = [
        bs.DepthStructure(L, [2], 1.0, 0.1, [2.0 + 30.0 / L] * 3, 0.99, 0.0, 0.0, 0.0, 0.0)
        for L in (4, 6, 8, 12)
    ]
    fit, mean = bs.norm_extrapolation(bs.Summary(depths, -1.0, None, 1e-3))
    assert fit.intercept == pytest.approx(2.0) and fit.slope == pytest.approx(30.0)
    assert mean[0] == pytest.approx(9.5)


def test_bs_student_init_is_validated_and_the_default_is_he_at_deep_depths():
    from rankscope.experiments.bottleneck import bottleneck_structure as bs

    with pytest.raises(ValueError, match="init must be 'he' or 'lecun', got 'xavier'"):
        bs.StudentConfig(init="xavier")
    assert bs.PRESETS["default"].students.init == "he"
    assert min(bs.PRESETS["default"].students.depths) >= bs.DEEP


def test_layers_before_interpolates_between_layer_positions():
    from rankscope.experiments.bottleneck.leaky_resnet import layers_before

    equi = [i / 10 for i in range(11)]
    assert layers_before(equi, 0.2) == pytest.approx(2.0)
    dense = [0.0, 0.09, 0.185, 0.275] + [0.275 + 0.725 * i / 7 for i in range(1, 8)]
    assert layers_before(dense, 0.2) == pytest.approx(2 + 0.015 / 0.09)
    with pytest.raises(ValueError, match="increase"):
        layers_before([0.0, 0.5, 0.5, 1.0], 0.2)


def test_bs_restarts_are_validated_and_the_lowest_objective_is_measured():
    import torch

    from rankscope.experiments.base import RunContext
    from rankscope.experiments.bottleneck import bottleneck_structure as bs
    from rankscope.experiments.bottleneck.data import radial_task

    with pytest.raises(ValueError, match="restarts must be an integer >= 1, got 0"):
        bs.StudentConfig(restarts=0)
    cfg = bs.dataclasses.replace(bs.PRESETS["smoke"].students, restarts=3)
    ctx = RunContext(0)
    task = radial_task(ctx.child_generator(0), d_out=4, n_features=8, n=40, n_test=40)
    got = bs._student(cfg, task, 4, ctx)
    assert len(got.restart_objectives) == 3
    assert got.chosen == min(range(3), key=got.restart_objectives.__getitem__)
    # refit the chosen restart alone: same objective, and it is what was measured
    net, rep = bs._fit_student(cfg, task, 4, RunContext(0), got.chosen)
    assert rep.objective == pytest.approx(got.restart_objectives[got.chosen], rel=1e-12)
    sq = float(sum((w.detach() ** 2).sum() for w in net.weights))
    assert got.sq_norm == pytest.approx(sq, rel=1e-12)
    assert len(set(got.restart_objectives)) == 3  # distinct inits
    assert torch.isfinite(torch.tensor(got.restart_objectives)).all()


def test_leaky_path_length_is_the_sum_of_kernel_norm_steps():
    import numpy as np
    import torch

    from rankscope.experiments.bottleneck.leaky_resnet import gamma_of, path_length
    from rankscope.metrics import hamiltonian_terms
    from rankscope.metrics.bottleneck import kernel_norm_sq

    g = torch.Generator().manual_seed(3)
    reps = [torch.randn(12, 5, generator=g, dtype=torch.float64) for _ in range(5)]
    rho, leak = [0.1, 0.3, 0.4, 0.2], 2.0
    kin = [
        float(hamiltonian_terms(reps[i], (reps[i] - reps[i - 1]) / rho[i - 1], leak)[0])
        for i in range(1, 5)
    ]
    want = sum(float(kernel_norm_sq(reps[i] - reps[i - 1], reps[i])) ** 0.5 for i in range(1, 5))
    assert path_length(kin, rho, leak) == pytest.approx(want, rel=1e-10)
    with pytest.raises(ValueError, match="one kinetic energy per step"):
        path_length(kin, rho[:3], leak)
    f = np.concatenate([np.maximum(reps[0].numpy(), 0), np.ones((12, 1))], 1)
    assert gamma_of(reps[0], 1e-3) == pytest.approx(1e-3 * np.linalg.norm(f, 2) ** 2, rel=1e-10)


def test_leaky_critical_residual_is_the_weight_gradient_rescaled():
    import statistics

    import torch

    from rankscope.experiments.bottleneck.leaky_resnet import critical_residual
    from rankscope.models import LeakyResNet

    g = torch.Generator().manual_seed(5)
    net = LeakyResNet(3, 2, width=6, depth=5, leak=2.0, lam=0.3, generator=g)
    x = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(20, 2, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(net.objective(x, y), list(net.weights))
    # ∂J/∂W_ℓ = (λ/L̃)·ρ_ℓ·(W_ℓ − L̃·B_ℓᵀσ̃(A_ℓ−1)) with λ = lam_eff
    coef = net.lam_eff / net.leak
    want = statistics.median(
        float(gw.norm() / (coef * float(net.rho[l]) * w.detach().norm()))
        for l, (gw, w) in enumerate(zip(grads, net.weights, strict=True))
    )
    reps, bs = net.backward_variables(x, y)
    assert critical_residual(net.weights, reps, bs, net.leak) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="L weights and L \\+ 1"):
        critical_residual(net.weights, reps[:-1], bs, net.leak)


def test_unregularized_leaky_maps_let_a_rescaling_remove_the_bias_cost():
    """Why leaky-resnet regularizes U and V by default (docs/decisions.md, item 52)."""
    import torch

    from rankscope.experiments.bottleneck import leaky_resnet
    from rankscope.models import LeakyResNet

    assert leaky_resnet.PRESETS["default"].net.regularize_maps
    g = torch.Generator().manual_seed(2)
    x = torch.randn(15, 3, generator=g, dtype=torch.float64)
    for reg in (False, True):
        net = LeakyResNet(3, 2, width=6, depth=5, leak=2.0, regularize_maps=reg, generator=g)
        f0, pen0 = net(x).detach(), float(net.penalty().detach())
        c = 0.1
        with torch.no_grad():
            net.u.mul_(c)
            net.v.div_(c)
            for w in net.weights:
                w[:, -1].mul_(c)  # the bias column acts on the constant 1 of σ̃
        assert torch.allclose(net(x), f0, atol=1e-10)  # same function
        if not reg:
            assert float(net.penalty().detach()) < pen0  # cheaper: no minimizer keeps a bias
        else:
            assert float(net.penalty().detach()) > pen0  # ‖V‖²/c² grows: the scale is pinned


def test_theorem4_window_brackets_min_coi_by_the_path_and_gamma_terms():
    import dataclasses

    from rankscope.experiments.bottleneck.leaky_resnet import LeakRun, theorem4_window

    base = {f.name: 0.0 for f in dataclasses.fields(LeakRun)}
    run = LeakRun(**{**base, "leak": 4.0, "min_coi": 3.0, "path_length": 8.0, "gamma_c": 0.25})
    lo, hi = theorem4_window(run)
    assert lo == pytest.approx(3.0 - (8.0 / 4.0 + 0.5) ** 2)  # 3 − 6.25
    assert hi == pytest.approx(3.25)
