"""Representation and collapse metrics: streaming equals one-shot equals a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rankscope.probe import RepresentationProbe, analyze
from rankscope.probe.layer_stats import LayerStats


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp(g: torch.Generator) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model


def _rep(a, name):
    return next(r for r in a.representations if r["name"] == name)


def test_streaming_equals_one_shot_equals_numpy():
    g = _gen(0)
    model = _mlp(g).double()  # float64 outputs: batching changes them only at 1e-16
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=g)
    streamed = analyze(model, x, labels=y, batch_size=7)  # 8 batches, the last of 1
    batches = [(x[i : i + 7], y[i : i + 7]) for i in range(0, 50, 7)]
    iterable = analyze(model, batches)
    one_shot = analyze(model, x, labels=y, batch_size=50)
    h = model[0](x).detach().double().numpy()  # (N, 10) output of layer '0'
    hc = h - h.mean(0)
    s_ref = np.linalg.svd(hc, compute_uv=False)
    for a in (streamed, iterable, one_shot):
        s = a.rep_spectra["0"].numpy()
        np.testing.assert_allclose(s, s_ref, rtol=1e-8, atol=1e-7 * s_ref[0])
        row = _rep(a, "0")
        assert (row["samples"], row["features"]) == (50, 10)
        assert row["rep_rank_torch"] == np.linalg.matrix_rank(hc.astype(np.float32)) == 6
        assert row["rep_stable_rank"] == pytest.approx((s_ref**2).sum() / s_ref[0] ** 2, rel=1e-9)
        p = s_ref / s_ref.sum()
        assert row["rep_effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-9)
    for key in ("nc1", "nc1_quotient", "tcv2", "rep_stable_rank"):
        assert _rep(streamed, "0")[key] == pytest.approx(_rep(one_shot, "0")[key], rel=1e-10)
        assert _rep(iterable, "0")[key] == pytest.approx(_rep(one_shot, "0")[key], rel=1e-10)
    # the weight row of the layer carries its output's representation metrics
    layer = next(r for r in streamed.layers if r["name"] == "0.weight")
    assert layer["rep_module"] == "0" and layer["rep_samples"] == 50


def test_nc1_tcv_by_hand():
    g = _gen(1)
    h = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    a = analyze(nn.Identity(), h, labels=y, batch_size=5)
    row = _rep(a, "(model)")
    hn, yn = h.numpy(), y.numpy()
    mus = np.stack([hn[yn == c].mean(0) for c in range(3)])
    mu_g = hn.mean(0)
    diff = hn - mus[yn]
    sw = diff.T @ diff / len(hn)
    sb = (mus - mu_g).T @ (mus - mu_g) / 3
    assert row["n_classes"] == 3
    assert row["nc1"] == pytest.approx(np.trace(sw @ np.linalg.pinv(sb)) / 3, rel=1e-9)
    assert row["nc1_quotient"] == pytest.approx(np.trace(sw) / np.trace(sb), rel=1e-9)
    assert row["tcv2"] == pytest.approx(np.linalg.norm(diff) / np.sqrt(len(hn)), rel=1e-9)


def test_memory_does_not_grow_with_samples():
    g = _gen(2)
    sizes = []
    for n in (10, 1000):
        stats = LayerStats(5)
        for chunk in torch.randn(n, 5, generator=g).split(10):
            stats.update(chunk, torch.randint(0, 3, (chunk.shape[0],), generator=g))
        held = (stats.cov.mean, stats.cov.covariance(), stats.class_sum, stats.class_count)
        sizes.append(sum(t.numel() for t in held))
    assert sizes[0] == sizes[1] == 5 + 25 + 15 + 3


def test_conv_layouts_channelwise_and_flatten():
    g = _gen(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    x = torch.randn(5, 2, 4, 4, generator=g)
    with RepresentationProbe(model) as probe:
        probe.run_batch(x)
    rows = {r["name"]: r for r in probe.results()[0]}
    assert rows["0"]["layout"] == rows["1"]["layout"] == "channels_first"  # ReLU inherits it
    assert (rows["1"]["samples"], rows["1"]["features"]) == (5 * 16, 3)
    assert (rows["2"]["samples"], rows["2"]["features"]) == (5, 48)
    with RepresentationProbe(model, conv_mode="flatten") as probe:
        probe.run_batch(x)
    rows = {r["name"]: r for r in probe.results()[0]}
    assert (rows["0"]["samples"], rows["0"]["features"]) == (5, 48)
    with pytest.raises(ValueError, match="unknown conv_mode 'pooled'"):
        RepresentationProbe(model, conv_mode="pooled")


def test_transformer_hooks_fire_in_eval_and_out_proj_maps_to_attention():
    torch.manual_seed(0)  # nn layer construction draws from the global generator
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(3, 5, 8, generator=_gen(4))
    a = analyze(model, x)
    rows = {r["name"]: r for r in a.representations}
    assert rows["layers.0.linear1"]["status"] == "ok"  # the fused fast path was bypassed
    assert (rows["layers.0.linear1"]["samples"], rows["layers.0.linear1"]["features"]) == (15, 16)
    assert rows["layers.0.self_attn.out_proj"]["status"] == "not called"
    layer_rows = {r["name"]: r for r in a.layers}
    assert layer_rows["layers.1.self_attn.out_proj.weight"]["rep_module"] == "layers.1.self_attn"
    assert "rep_module" not in layer_rows["layers.1.self_attn.in_proj_weight"]


def test_labels_that_do_not_fit_rows_give_nan_with_reason():
    model = nn.Sequential(nn.Linear(4, 4))
    x = torch.randn(2, 3, 4, generator=_gen(5))  # (B, T, d): 6 rows, 2 labels
    a = analyze(model, x, labels=torch.tensor([0, 1]))
    row = _rep(a, "0")
    assert np.isnan(row["nc1"]) and "2 labels for 6 rows" in row["collapse_note"]


def test_bad_data_errors(zoo):
    with pytest.raises(ValueError, match="need a model that can run"):
        analyze(zoo.state_dict(), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="integer class ids"):
        analyze(nn.Linear(3, 2), torch.zeros(4, 3), labels=torch.zeros(4))
    with pytest.raises(ValueError, match="3 labels for 4 inputs"):
        analyze(nn.Linear(3, 2), torch.zeros(4, 3), labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="got int"):
        analyze(nn.Linear(3, 2), 5)
    with pytest.raises(ValueError, match="no batches"):
        analyze(nn.Linear(3, 2), [])


def test_data_the_model_cannot_run_names_the_batch_and_the_layer():
    model = _mlp(_gen(6))  # 6 inputs
    with pytest.raises(
        ValueError, match=r"running Sequential on data batch 0 of shape \(5, 7\) failed: Runtime"
    ):
        analyze(model, torch.ones(5, 7))
    x = torch.ones(5, 6)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"output of layer '0': batch of shape \(5, 10\) contains"):
        analyze(model, x)
