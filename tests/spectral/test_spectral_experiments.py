"""The spectral family's experiments: configs, losses, ensembles and claims on tiny runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from rankscope.experiments.base import Result, RunContext
from rankscope.experiments.registry import get_experiment
from rankscope.experiments.spectral import cnn_bottleneck as cnn
from rankscope.experiments.spectral import compositionality as comp
from rankscope.experiments.spectral import layerwise_spectral_bias as lsb
from rankscope.experiments.spectral.data import rank_one_frequency_target
from rankscope.experiments.summary import summary_from_dict, summary_to_dict
from rankscope.models.circular_cnn import CircularCNN, circular_conv

IDS = ("cnn-bottleneck", "layerwise-spectral-bias", "compositionality")


def test_registered_with_typed_summaries_and_inversions():
    for exp_id in IDS:
        exp = get_experiment(exp_id)
        assert exp.summary_cls is not None
        assert all(c.invert is not None for c in exp.claims if c.check is not None)


def test_fourier_mse_equals_the_forward_pass_loss():
    rng = np.random.default_rng(0)
    kernel, _ = rank_one_frequency_target(8, 3, (0, 2), (1.5, 0.8), rng)
    target = torch.from_numpy(kernel)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 3, 8, generator=g, dtype=torch.float64)
    net = CircularCNN([3, 3, 3, 3], 8, activation="identity", generator=g, dtype=torch.float64)
    direct = (net(x) - circular_conv(x, target)).pow(2).sum((1, 2)).mean() / 8
    assert_close(cnn.FourierMSE(x, target, 8)(net), direct)


def test_config_validation_names_the_value():
    with pytest.raises(ValueError, match="kernel_size 20"):
        cnn.NonlinearStudy(kernel_size=20)
    with pytest.raises(ValueError, match="wd_mode"):
        comp.Schedule(wd_mode="adamw")
    with pytest.raises(ValueError, match="regimes"):
        comp.Config(regimes=("A",))
    with pytest.raises(ValueError, match="nu must be > 0"):
        comp.Config(nu_g=(8.0, 8.0, 0.0))


TINY = comp.Config(
    sizes=(20, 40),
    n_test=20,
    net=comp.AccNetShape(d_full=8, d_narrow=4, blocks=2),
    schedule=comp.Schedule(epochs=(2, 2, 2)),
    kernel=comp.KernelBaseline(alphas=(0.1,), gammas=(0.05,)),
)


def test_compositionality_seed_results_do_not_depend_on_the_ensemble():
    together = comp.run_many([TINY, TINY], [RunContext(3), RunContext(4)])
    alone = comp.run(TINY, RunContext(4))
    assert summary_to_dict(together[1].summary) == summary_to_dict(alone.summary)
    assert list(together[1].records.rows()) == list(alone.records.rows())
    s = summary_from_dict(comp.Summary, summary_to_dict(alone.summary))
    assert s == alone.summary


def test_compositionality_without_scikit_learn_fails_before_training(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises
    calls = []
    monkeypatch.setattr(comp, "_train_accnets", lambda *a, **k: calls.append(a))
    with pytest.raises(ImportError, match=r"rankscope\[digits\]"):
        comp.run(TINY, RunContext(0))
    assert calls == []


ACROSS_INVERSIONS = {"COMP-1": comp.invert_comp1, "COMP-2": comp.invert_comp2}


def _run_claims(exp_id: str, result: Result):
    exp = get_experiment(exp_id)
    for claim in exp.claims:
        fn = claim.check or (lambda r, c=claim: c.across_seeds([r]))
        got = fn(result)
        assert got.headline
        invert = claim.invert or ACROSS_INVERSIONS[claim.id]
        flipped = dataclasses.replace(result, summary=invert(result.summary))
        assert fn(flipped).verdict == "fail", (claim.id, fn(flipped).headline)


def test_claims_of_a_tiny_compositionality_run_have_headlines_and_invert():
    _run_claims("compositionality", comp.run(TINY, RunContext(0)))


def test_layerwise_claims_on_a_tiny_run():
    cfg = lsb.Config(
        analytic=lsb.AnalyticStudy(depths=(3,), dims=(5, 10), max_degree=4, nodes=100),
        finite=lsb.FiniteStudy(width=64, n=64, degrees=(1, 2, 3)),
    )
    res = lsb.run(cfg, RunContext(0))
    assert res.summary.shares and len(res.summary.shares) == 5
    assert lsb.CLAIMS[0].check(res).verdict == "pass"  # analytic: exact
    assert lsb.CLAIMS[1].check(res).verdict == "pass"
    _run_claims("layerwise-spectral-bias", res)


def test_cnn_bottleneck_claims_on_a_tiny_run():
    cfg = cnn.Config(
        linear=cnn.LinearStudy(d=8, channels=2, depth=4, kept=(0, 2), strengths=(1.5, 0.8),
                               n_samples=32, steps=50),
        nonlinear=cnn.NonlinearStudy(d=8, channels=3, depth=4, n_train=16, n_test=16, steps=5),
    )  # fmt: skip
    _run_claims("cnn-bottleneck", cnn.run(cfg, RunContext(0)))


def test_degree_shares_estimate_the_analytic_limit_and_ignore_diagonal_and_constant():
    # independent reference: Gauss–Jacobi eigenvalues μ_k^(ℓ) of the analytic layer kernels
    from rankscope.experiments.spectral.data import gegenbauer_targets, sphere_points
    from rankscope.metrics.ntk import (
        layer_shares,
        layerwise_ntk_eigenvalues,
        relu_ntk_layer_kernels,
    )

    x = sphere_points(800, 5, torch.Generator().manual_seed(0))
    t = np.clip((x @ x.T).numpy(), -1.0, 1.0)
    grams = torch.from_numpy(relu_ntk_layer_kernels(t, 3))
    est = lsb.degree_shares(grams, x, (1, 2, 3))
    mu = layerwise_ntk_eigenvalues(5, 3, [1, 2, 3])
    assert_close(est, torch.from_numpy(mu / mu.sum(0)), atol=0.02, rtol=0)
    # the finite-N terms it drops: the constant part exactly, the i = j terms up to the O(1/N)
    # they enter through the centring
    shifted = grams + 3.0 + torch.diag_embed(torch.rand(3, 800, dtype=torch.float64))
    assert_close(lsb.degree_shares(shifted, x, (1, 2, 3)), est, atol=1e-4, rtol=0)
    plain = layer_shares(grams, gegenbauer_targets(x, (1, 2, 3), x[0]))
    assert (plain - est).abs().max() > 0.02  # the single-target form is not this estimate
    with pytest.raises(ValueError, match="degrees must be >= 1"):
        lsb.degree_shares(grams, x, (0, 1, 2))
