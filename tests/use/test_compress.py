"""rankscope.compress: factorised layers, SVD/whitened truncation against closed forms,
allocation under the budget, save/load without pickle, evaluation helpers, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from rankscope.compress import (
    Batch,
    LayerBudget,
    allocate,
    collect_moments,
    compress,
    embedding_agreement,
    load,
    load_sequential,
    max_saving_rank,
    save_sequential,
    select_layers,
    truncate,
    whitener,
)
from rankscope.compress.calibrate import input_rows
from rankscope.compress.layers import factorised_module


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5)
    )


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 12, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(12, 16, 3, stride=2, padding=1, dilation=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 6),
    )


def _correlated(n, d, seed=0):
    """Inputs with a strongly non-isotropic covariance (whitening matters)."""
    g = _gen(seed)
    mix = torch.randn(d, d, generator=g) * torch.logspace(0, -2, d)
    return torch.randn(n, d, generator=g) @ mix.T + 0.3


# ---------------------------------------------------------------- factorised layers


@pytest.mark.parametrize(
    "layer, x",
    [
        (nn.Linear(7, 5), torch.randn(4, 3, 7)),
        (nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2), torch.randn(2, 4, 11)),
        (
            nn.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)),
            torch.randn(2, 3, 9, 8),
        ),
    ],
)
def test_full_rank_factorisation_reproduces_the_layer(layer, x):
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
    u, s, vh = np.linalg.svd(w.numpy(), full_matrices=False)
    a, b = torch.from_numpy(u * s).float(), torch.from_numpy(vh).float()
    new = factorised_module(layer, a, b)
    torch.testing.assert_close(new(x), layer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "layer, x",
    [
        (nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2), torch.randn(2, 4, 11)),
        (nn.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=(1, 0)), torch.randn(2, 3, 9, 8)),
    ],
)
def test_conv_input_rows_are_what_the_weight_multiplies(layer, x):
    rows = input_rows(layer, x, None)  # (B·L, C·k)
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    out = layer(x).detach()  # (B, C_out, *spatial)
    want = out.movedim(1, -1).reshape(-1, out.shape[1]) - layer.bias.detach()
    torch.testing.assert_close(rows @ w.T, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- truncation maths


def test_plain_truncation_is_eckart_young():
    w = torch.randn(12, 9, generator=_gen(1), dtype=torch.float64)
    f = truncate(w, 3)
    u, s, vh = np.linalg.svd(w.numpy())
    ref = (u[:, :3] * s[:3]) @ vh[:3]
    np.testing.assert_allclose((f.a @ f.b).numpy(), ref, atol=1e-10)
    assert f.truncation_error == pytest.approx(np.sqrt((s[3:] ** 2).sum() / (s**2).sum()))


def test_whitened_truncation_minimises_the_data_error():
    """W' = (W C^{1/2})_r C^{-1/2} (symmetric root, numpy) is the optimum; Cholesky gives it."""
    x = _correlated(400, 10, seed=2).double()
    w = torch.randn(6, 10, generator=_gen(3), dtype=torch.float64)
    c = x.T @ x / x.shape[0]
    f = truncate(w, 2, whitener(c))
    lam, q = np.linalg.eigh(c.numpy())
    root = (q * np.sqrt(lam)) @ q.T
    u, s, vh = np.linalg.svd(w.numpy() @ root)
    ref = (u[:, :2] * s[:2]) @ vh[:2] @ np.linalg.inv(root)
    np.testing.assert_allclose((f.a @ f.b).numpy(), ref, atol=1e-8)
    err_white = ((x @ (w - f.a @ f.b).T) ** 2).sum(1).mean()
    plain = truncate(w, 2)
    err_plain = ((x @ (w - plain.a @ plain.b).T) ** 2).sum(1).mean()
    assert err_white < err_plain
    assert float(err_white) == pytest.approx(float((s[2:] ** 2).sum()), rel=1e-8)


def test_jitter_fallback_for_a_singular_covariance():
    x = torch.randn(3, 8, generator=_gen(4), dtype=torch.float64)  # rank 3 < 8
    white = whitener(x.T @ x / 3)
    assert white.jitter > 0
    assert torch.isfinite(white.chol).all()
    with pytest.raises(ValueError, match="all zero"):
        whitener(torch.zeros(4, 4))


# ---------------------------------------------------------------- allocation


def _budgets():
    g = _gen(5)
    out = []
    for i, (m, n) in enumerate([(30, 20), (40, 40), (10, 50)]):
        s = torch.sort(torch.rand(min(m, n), generator=g) ** (i + 2), descending=True).values
        out.append(LayerBudget(f"l{i}", m, n, m, s))
    return out


@pytest.mark.parametrize("how", ["uniform", "global"])
@pytest.mark.parametrize("budget", [0.2, 0.5, 0.8])
def test_allocation_respects_budget_and_breakeven(how, budget):
    lays = _budgets()
    ranks = allocate(lays, budget, how)
    used = sum(lay.cost(r) for lay, r in zip(lays, ranks, strict=True))
    assert used <= budget * sum(lay.dense for lay in lays) + 1e-9
    for lay, r in zip(lays, ranks, strict=True):
        assert r is None or 1 <= r <= max_saving_rank(lay.m, lay.n)
        assert r is None or r * (lay.m + lay.n) < lay.m * lay.n


def _rel_error(lays, ranks):
    tot = 0.0
    for lay, r in zip(lays, ranks, strict=True):
        e = lay.spectrum.double() ** 2
        tot += 0.0 if r is None else float(e[r:].sum() / e.sum())
    return tot


@pytest.mark.parametrize("budget", [0.3, 0.5, 0.7])
def test_global_allocation_beats_uniform_and_is_near_brute_force(budget):
    lays = _budgets()
    g = allocate(lays, budget, "global")
    u = allocate(lays, budget, "uniform")
    assert _rel_error(lays, g) <= _rel_error(lays, u) + 1e-12
    allowed = budget * sum(lay.dense for lay in lays)
    best = np.inf
    options = [[*range(1, max_saving_rank(la.m, la.n) + 1), None] for la in lays]
    for r0 in options[0]:
        for r1 in options[1]:
            for r2 in options[2]:
                rs = [r0, r1, r2]
                if sum(la.cost(r) for la, r in zip(lays, rs, strict=True)) <= allowed:
                    best = min(best, _rel_error(lays, rs))
    # greedy on a concave-ish knapsack: within one singular direction of the optimum
    worst_unit = max(float((la.spectrum[0] ** 2) / (la.spectrum**2).sum()) for la in lays)
    assert _rel_error(lays, g) <= best + worst_unit


def test_uniform_rank_formula():
    lay = LayerBudget("x", 384, 1536, 384, torch.ones(384))
    (r,) = allocate([lay], 0.8, "uniform")
    assert r == int((0.8 * (384 * 1536 + 384) - 384) // (384 + 1536))


# ---------------------------------------------------------------- compress / save / load


@pytest.mark.parametrize("method", ["svd", "whiten"])
def test_compress_does_not_touch_the_input_and_meets_budget(method):
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = _correlated(256, 20)
    out = compress(model, 0.5, method=method, calib=x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2], model[4]))
    man = out.manifest
    assert man["params_after"] <= 0.5 * man["params_before"]
    assert man["kept_fraction"] == pytest.approx(man["params_after"] / man["params_before"])
    assert man["model_params_before"] == sum(p.numel() for p in model.parameters())
    assert man["model_params_after"] == sum(p.numel() for p in out.model.parameters())
    for row in man["layers"]:
        assert set(row) >= {"rank", "method", "params_before", "params_after", "energy_kept"}
        assert 0 <= row["truncation_error"] <= 1


def test_inplace_replaces_layers_of_the_given_model():
    model = _mlp()
    out = compress(model, 0.5, method="svd", inplace=True)
    assert out.model is model
    assert not isinstance(model[0], nn.Linear)


@torch.no_grad()
def test_whitening_beats_plain_svd_on_the_calibration_data():
    model = _mlp(1)
    x = _correlated(512, 20, seed=1)
    ref = model(x)
    errs = {}
    for method in ("svd", "whiten"):
        out = compress(model, 0.4, method=method, calib=x)
        errs[method] = float(((out.model(x) - ref) ** 2).mean())
    assert errs["whiten"] < errs["svd"]


@torch.no_grad()
def test_sequential_mode_lowers_the_error_of_a_deep_linear_net():
    torch.manual_seed(3)
    model = nn.Sequential(*[nn.Linear(24, 24, bias=False) for _ in range(4)])
    x = _correlated(1024, 24, seed=3)
    ref = model(x)
    errs = {}
    for seq in (False, True):
        out = compress(model, 0.5, calib=x, sequential=seq)
        errs[seq] = float(((out.model(x) - ref) ** 2).mean())
    assert errs[True] < errs[False]


def test_conv_model_round_trip_without_pickle(tmp_path):
    model = _cnn()
    x = torch.randn(64, 3, 8, 8, generator=_gen(6))
    out = compress(model, 0.5, calib=x, allocate_by="global")
    assert any(r["rank"] is not None for r in out.layers)
    out.save(tmp_path / "c")
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "model.safetensors",
        "rankscope_manifest.json",
    ]
    back = load(tmp_path / "c")
    assert torch.equal(back(x), out.model(x))
    man = json.loads((tmp_path / "c" / "rankscope_manifest.json").read_text())
    assert man["layers"][0]["name"] == "0"


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(16, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.enc(x)) + x)


def test_state_dict_with_factory_and_load_with_factory(tmp_path):
    torch.manual_seed(7)
    state = _Custom().state_dict()
    x = torch.randn(50, 16, generator=_gen(7))
    out = compress(state, 0.4, calib=x, factory=_Custom)
    assert out.manifest["architecture"] is None  # not a Sequential: needs the factory
    out.save(tmp_path / "f")
    with pytest.raises(ValueError, match="factory="):
        load(tmp_path / "f")
    back = load(tmp_path / "f", factory=_Custom)
    assert torch.equal(back(x), out.model(x))


def test_save_sequential_round_trip(tmp_path):
    model = _cnn(2)
    path = save_sequential(model, tmp_path / "m.safetensors")
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(load_sequential(path)(x), model(x))


def test_select_layers_by_type_and_pattern():
    model = _cnn()
    chosen, _ = select_layers(model, layers=["Conv2d"])
    assert list(chosen) == ["0", "2"]
    chosen, _ = select_layers(model, include="[05]")
    assert list(chosen) == ["0", "5"]
    chosen, _ = select_layers(model, exclude="0")
    assert list(chosen) == ["2", "5"]


def test_multihead_attention_out_proj_is_skipped_with_a_reason():
    model = nn.Sequential(nn.Linear(8, 8))
    model.add_module("attn", nn.MultiheadAttention(8, 2))
    chosen, skipped = select_layers(model)
    assert list(chosen) == ["0"] and "attn.out_proj" in skipped


def test_shared_inputs_share_one_accumulator():
    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 4)

        def forward(self, x):
            return self.q(x) + self.k(x), self.v(x)

    model = QKV()
    mods = {"q": model.q, "k": model.k, "v": model.v}
    x = torch.randn(40, 6, generator=_gen(8), dtype=torch.float64)
    mom = collect_moments(model.double(), mods, [Batch((x[:20],)), Batch((x[20:],))])
    assert mom.alias == {"q": "q", "k": "q", "v": "q"}
    torch.testing.assert_close(mom.second_moment("v"), x.T @ x / 40)


def test_token_mask_drops_padding_rows():
    lin = nn.Linear(3, 2)
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    rows = input_rows(lin, x, mask)
    assert rows.shape == (5, 3)
    torch.testing.assert_close(rows[2], x[1, 0])


# ---------------------------------------------------------------- evaluation


def test_embedding_agreement_against_numpy():
    a = torch.randn(30, 5, generator=_gen(9), dtype=torch.float64)
    b = a + 0.3 * torch.randn(30, 5, generator=_gen(10), dtype=torch.float64)
    got = embedding_agreement(a, b)
    an = a.numpy() / np.linalg.norm(a.numpy(), axis=1, keepdims=True)
    bn = b.numpy() / np.linalg.norm(b.numpy(), axis=1, keepdims=True)
    assert got["mean_cosine"] == pytest.approx((an * bn).sum(1).mean())
    sa, sb = an @ an.T, bn @ bn.T
    np.fill_diagonal(sa, -2)
    np.fill_diagonal(sb, -2)
    assert got["nn_agreement"] == pytest.approx((sa.argmax(1) == sb.argmax(1)).mean())
    same = embedding_agreement(a, a)
    assert same["mean_cosine"] == pytest.approx(1.0) and same["nn_agreement"] == 1.0


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("budget", [0, -0.1, 1.5, float("nan"), True, "0.5"])
def test_budget_outside_unit_interval(budget):
    with pytest.raises(ValueError, match=r"budget must be a number in \(0, 1\].*got"):
        compress(_mlp(), budget, method="svd")


def test_no_compressible_layers():
    with pytest.raises(ValueError, match=r"no compressible layers in Sequential.*ReLU"):
        compress(nn.Sequential(nn.ReLU(), nn.Tanh()), 0.5, method="svd")
    with pytest.raises(ValueError, match=r"no compressible layers.*2×2 weight"):
        compress(nn.Sequential(nn.Linear(2, 2)), 0.5, method="svd")


def test_pattern_matching_nothing():
    with pytest.raises(ValueError, match=r"layer pattern 'encoder\.\*' matches no.*layers of"):
        compress(_mlp(), 0.5, method="svd", include="encoder.*")


def test_bad_calibration_inputs():
    with pytest.raises(ValueError, match="calibration tensor is empty"):
        compress(_mlp(), 0.5, calib=torch.zeros(0, 20))
    with pytest.raises(ValueError, match=r"calibration batch of shape \(8, 7\) does not fit"):
        compress(_mlp(), 0.5, calib=torch.zeros(8, 7))
    with pytest.raises(ValueError, match="needs calibration inputs"):
        compress(_mlp(), 0.5, method="whiten")
    with pytest.raises(ValueError, match="sequential=True needs method='whiten'"):
        compress(_mlp(), 0.5, method="svd", sequential=True)
    with pytest.raises(ValueError, match="unknown method 'pca'"):
        compress(_mlp(), 0.5, method="pca")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compress_keeps_the_model_device():
    model = _mlp().cuda()
    x = _correlated(128, 20).cuda()
    out = compress(model, 0.5, calib=x, allocate_by="global", sequential=True)
    assert all(p.device.type == "cuda" for p in out.model.parameters())
    assert torch.isfinite(out.model(x)).all()
