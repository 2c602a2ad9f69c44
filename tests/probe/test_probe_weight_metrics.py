"""Per-layer weight metrics against numpy references, full and randomized paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rankscope.probe import analyze
from rankscope.probe.weight_metrics import SpectrumSettings, weight_row
from rankscope.probe.weights import WeightMatrix

RTOL = 1e-10  # float64 spectra of the same matrix by LAPACK (scipy vs numpy)


def _planted(s: np.ndarray, m: int, n: int, seed: int) -> torch.Tensor:
    """U diag(s) Vᵀ with random orthonormal U (m, k), V (n, k), float64."""
    rng = np.random.default_rng(seed)
    k = s.size
    u = np.linalg.qr(rng.standard_normal((m, k)))[0]
    v = np.linalg.qr(rng.standard_normal((n, k)))[0]
    return torch.from_numpy((u * s) @ v.T)


def _matrix(name: str, w: torch.Tensor) -> WeightMatrix:
    return WeightMatrix(name, "linear", tuple(w.shape), w, "", "shape", None)


def test_every_layer_matches_numpy(zoo):
    a = analyze(zoo)
    for row in a.layers:
        w = dict(zoo.named_parameters())[row["name"]].detach()
        mat = w.reshape(w.shape[0], -1).double().numpy()
        s = np.linalg.svd(mat, compute_uv=False)
        np.testing.assert_allclose(a.spectra[row["name"]].numpy(), s, rtol=RTOL)
        assert row["method"] == "full"
        assert row["rank_torch"] == np.linalg.matrix_rank(w.reshape(w.shape[0], -1).numpy())
        assert row["rank_rel1e-2"] == np.linalg.matrix_rank(mat, rtol=1e-2)
        assert row["rank_galanti"] == np.linalg.matrix_rank(mat / np.linalg.norm(mat), tol=1e-3)
        np.testing.assert_allclose(row["stable_rank"], (s**2).sum() / s[0] ** 2, rtol=RTOL)
        p = s / s.sum()
        np.testing.assert_allclose(row["effective_rank"], np.exp(-(p * np.log(p)).sum()), rtol=1e-9)
        np.testing.assert_allclose(row["frobenius_norm"], np.linalg.norm(mat), rtol=RTOL)
        np.testing.assert_allclose(row["nuclear_norm"], np.linalg.norm(mat, "nuc"), rtol=RTOL)
        np.testing.assert_allclose(row["s_max"], np.linalg.norm(mat, 2), rtol=RTOL)
        assert row["dtype"] == "float32"


def test_planted_ranks_and_torch_preset_uses_weight_dtype():
    s = np.array([4.0, 2.0, 0.5, 0.03, 1e-3, 1e-9])
    w64 = _planted(s, 30, 20, seed=1)
    row64, spec = weight_row(_matrix("w", w64), SpectrumSettings())
    np.testing.assert_allclose(spec[:6].numpy(), s, rtol=1e-6)
    # relative: s_i > 0.04; galanti: s_i > 1e-3·‖W‖_F = 4.5e-3; torch: max(m,n)·eps·s_1
    assert (row64["rank_rel1e-2"], row64["rank_galanti"], row64["rank_torch"]) == (3, 4, 6)
    row32, _ = weight_row(_matrix("w", w64.float()), SpectrumSettings())
    # float32 eps: threshold 30·1.2e-7·4 = 1.4e-5 drops the 1e-9 direction, like numpy on float32
    assert row32["rank_torch"] == 5 == np.linalg.matrix_rank(w64.float().numpy())


def test_randomized_path_marked_and_accurate():
    k = 200
    s = 10.0 * 0.9 ** np.arange(k)  # decaying: s_1 = 10, s_200 ≈ 7e-9
    w = _planted(s, 300, 260, seed=2)
    full, s_full = weight_row(_matrix("w", w), SpectrumSettings(max_full_svd=1000))
    g = torch.Generator().manual_seed(0)
    rnd, s_top = weight_row(
        _matrix("w", w), SpectrumSettings(max_full_svd=100, topk=60), generator=g
    )
    assert (full["method"], rnd["method"]) == ("full", "randomized")
    assert rnd["sv_count"] == 60
    torch.testing.assert_close(s_top, s_full[:60], rtol=1e-6, atol=0)
    actual = float(((s_top - s_full[:60]).abs() / s_full[:60]).max())
    assert actual <= rnd["sv_rel_error"] < 1e-3  # the residual estimate bounds the error
    for col in ("stable_rank", "frobenius_norm", "s_max"):
        assert rnd[col] == pytest.approx(full[col], rel=1e-9), col
    # relative 1e-2: 0.9^i > 1e-2 for i <= 43, known from the top 60 values
    assert rnd["rank_rel1e-2"] == full["rank_rel1e-2"] == 44
    # galanti: 1e-3·‖W‖_F = 1e-2/sqrt(0.19) = 0.0229 < 10·0.9^i for i <= 57
    assert rnd["rank_galanti"] == full["rank_galanti"] == 58
    # the torch threshold lies below s_60: rank >= 60 is all we know
    for col in ("rank_torch", "effective_rank", "nuclear_norm", "s_min"):
        assert math.isnan(rnd[col]), col
        assert col in rnd["unavailable"]
    assert not full["unavailable"]


def test_large_layer_goes_randomized_in_analyze():
    model = nn.Sequential(nn.Linear(40, 30), nn.Linear(30, 8))
    a = analyze(model, max_full_svd=20, topk=5, seed=3)
    methods = {r["name"]: r["method"] for r in a.layers}
    assert methods == {"0.weight": "randomized", "1.weight": "full"}
    assert a.spectra["0.weight"].numel() == 5
    assert a.settings["max_full_svd"] == 20 and a.settings["seed"] == 3
    again = analyze(model, max_full_svd=20, topk=5, seed=3)
    torch.testing.assert_close(again.spectra["0.weight"], a.spectra["0.weight"], rtol=0, atol=0)


def test_zero_and_empty_matrices():
    row, _ = weight_row(_matrix("z", torch.zeros(4, 3)), SpectrumSettings())
    assert (row["rank_torch"], row["stable_rank"], row["effective_rank"]) == (0, 0.0, 0.0)
    row, s = weight_row(_matrix("e", torch.zeros(0, 3)), SpectrumSettings())
    assert row["method"] == "empty" and s.numel() == 0 and math.isnan(row["stable_rank"])


def test_settings_validated():
    with pytest.raises(ValueError, match="max_full_svd must be an int >= 1, got 0"):
        SpectrumSettings(max_full_svd=0)


@pytest.mark.parametrize(("m", "n"), [(300, 80), (70, 90)])
def test_gram_route_matches_float64_svd(m, n):
    k = min(m, n)
    s_planted = np.concatenate([5.0 * 0.85 ** np.arange(k // 2), np.zeros(k - k // 2)])
    w = _planted(s_planted, m, n, seed=4).float()  # low rank + float32 rounding noise
    gram, s_gram = weight_row(_matrix("w", w), SpectrumSettings())
    full, s_full = weight_row(_matrix("w", w), SpectrumSettings(gram=False))
    assert (gram["method"], full["method"]) == ("gram", "full")
    s_np = np.linalg.svd(w.double().numpy(), compute_uv=False)
    np.testing.assert_allclose(s_full.numpy(), s_np, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(s_gram.numpy(), s_np, rtol=0, atol=1e-6 * s_np[0])
    big = s_np > 1e-3 * s_np[0]
    np.testing.assert_allclose(s_gram.numpy()[big], s_np[big], rtol=1e-9)
    for col in ("rank_torch", "rank_rel1e-2", "rank_galanti"):
        assert gram[col] == full[col], col
    assert gram["rank_torch"] == np.linalg.matrix_rank(w.numpy())
    for col in ("stable_rank", "frobenius_norm", "s_max"):
        assert gram[col] == pytest.approx(full[col], rel=1e-9), col
    # the ~40 float32-noise values (~1e-7·s_1) read as 0 on the Gram route: a 1e-6 effect
    for col in ("effective_rank", "nuclear_norm"):
        assert gram[col] == pytest.approx(full[col], rel=1e-5), col


def test_float64_weights_never_take_the_gram_route():
    w = _planted(np.linspace(1, 0.1, 80), 100, 80, seed=5)  # float64: rank_torch needs the SVD
    row, _ = weight_row(_matrix("w", w), SpectrumSettings())
    assert row["method"] == "full"


@pytest.mark.parametrize("shape", [(0, 4), (4, 0), (0, 3, 3, 3)])
def test_empty_weights_of_any_rank_give_empty_rows(shape):
    a = analyze({"layer.weight": torch.zeros(shape)})
    (row,) = a.layers
    assert row["method"] == "empty" and row["max_rank"] == 0 and row["shape"] == list(shape)
    assert math.isnan(row["stable_rank"]) and a.spectra["layer.weight"].numel() == 0


@pytest.mark.parametrize("n", [8, 128])  # the float64 SVD and the float32 Gram route
def test_nonfinite_weight_names_the_layer(n):
    w = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    w[3, 4] = float("nan")
    w[0, 0] = float("inf")
    with pytest.raises(ValueError, match=rf"weight 'l\.weight' of shape \({n}, {n}\) contains 2"):
        weight_row(_matrix("l.weight", w), SpectrumSettings())
