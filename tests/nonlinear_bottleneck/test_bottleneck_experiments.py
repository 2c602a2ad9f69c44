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
