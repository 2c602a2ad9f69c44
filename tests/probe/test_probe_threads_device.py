"""analyze as a library call: its own thread pools, the caller's settings restored; devices."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from rankscope.cli import app
from rankscope.probe import analyze

HAS_CUDA = torch.cuda.is_available()


def _model():
    g = torch.Generator().manual_seed(0)
    sizes = [(96, 80), (80, 40), (40, 96), (96, 90)]
    layers = [torch.nn.Linear(a, b) for a, b in sizes]
    with torch.no_grad():
        for lin in layers:
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
    return torch.nn.Sequential(*layers)


def _blas_threads() -> dict[str, int]:
    import threadpoolctl

    info = threadpoolctl.threadpool_info()  # BLAS only: OpenMP runtimes are not limited here
    return {i["filepath"]: i["num_threads"] for i in info if i["user_api"] == "blas"}


def test_caller_thread_settings_are_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = torch.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        torch.set_num_threads(2)
        try:
            blas_before = _blas_threads()
            assert set(blas_before.values()) == {2}
            analyze(_model(), workers=2)
            assert torch.get_num_threads() == 2
            after = (
                _blas_threads()
            )  # libraries loaded during the call are not the caller's settings
            assert {k: after[k] for k in blas_before} == blas_before
        finally:
            torch.set_num_threads(before)


def test_rows_do_not_depend_on_the_number_of_workers():
    model = _model()
    one = analyze(model, workers=1, max_full_svd=70)  # the 80x96 and 90x96 go randomized
    many = analyze(model, workers=3, max_full_svd=70)
    assert [r["method"] for r in one.layers] == ["randomized", "full", "full", "randomized"]
    assert one.layers == many.layers
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        analyze(model, workers=0)


@pytest.mark.skipif(HAS_CUDA, reason="checks the error without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        analyze(_model(), device="cuda")
    out = CliRunner().invoke(app, ["run", "scalar-mode", "--preset", "smoke", "--device", "cuda"])
    assert out.exit_code == 2 and "--device cuda: no CUDA GPU is available" in out.output
    out = CliRunner().invoke(app, ["analyze", "--demo", "--device", "cuda"])
    assert out.exit_code == 2 and "no CUDA GPU" in out.output


def test_device_auto_falls_back_to_cpu_and_bad_names_are_usage_errors(tmp_path):
    from rankscope.cli.app import resolve_device

    assert resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    out = CliRunner().invoke(app, ["run", "scalar-mode", "--device", "tpu"])
    assert out.exit_code == 2 and "--device must be one of ['cpu', 'cuda', 'auto']" in out.output


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_path_matches_cpu(tmp_path):
    model = _model()
    cpu = analyze(model)
    gpu = analyze(model, device="cuda")
    for a, b in zip(cpu.layers, gpu.layers):
        assert a["rank_torch"] == b["rank_torch"]
        assert abs(a["stable_rank"] - b["stable_rank"]) <= 1e-9 * a["stable_rank"]
    store = str(tmp_path / "st")
    args = ["run", "scalar-mode", "--preset", "smoke", "--device", "cuda", "--workers", "1"]
    out = CliRunner().invoke(app, [*args, "--store", store, "--json"])
    assert out.exit_code == 0, out.output


def test_float32_stable_rank_path_is_certified_against_float64():
    import numpy as np

    from rankscope.probe.weight_metrics import certified_top

    g = torch.Generator().manual_seed(1)
    u = torch.linalg.qr(torch.randn(300, 120, generator=g, dtype=torch.float64))[0]
    s = torch.logspace(0, -2, 120, dtype=torch.float64)
    s[0] = 3.0  # a clear gap at the top
    w = (u * s) @ torch.linalg.qr(torch.randn(120, 120, generator=g, dtype=torch.float64))[0].T
    w32 = w.float()
    ref = np.linalg.svd(w32.double().numpy(), compute_uv=False)
    theta, bound = certified_top(w32)
    assert theta <= ref[0] ** 2 * (1 + 1e-12)
    assert ref[0] ** 2 <= theta * (1 + bound) * (1 + 1e-12)  # the certificate holds
    model = torch.nn.Linear(120, 300, bias=False)
    with torch.no_grad():
        model.weight.copy_(w32)
    fast = analyze(model, metrics=("stable_rank",))
    row = fast.layers[0]
    assert row["method"] == "float32-certified" and row["sv_rel_error"] <= 1e-6
    want = float((ref**2).sum() / ref[0] ** 2)
    assert abs(row["stable_rank"] - want) <= 1e-6 * want
    assert np.isnan(row["rank_torch"]) and "only stable_rank" in row["unavailable"]


def test_float32_path_falls_back_without_a_certificate():
    q = torch.linalg.qr(torch.randn(100, 100, generator=torch.Generator().manual_seed(2)))[0]
    model = torch.nn.Linear(100, 100, bias=False)
    with torch.no_grad():
        model.weight.copy_(q)  # all singular values 1: no gap, nothing to certify
    row = analyze(model, metrics=("stable_rank", "s_max")).layers[0]
    assert row["method"] == "gram"  # the float64 path, every column computed
    assert abs(row["stable_rank"] - 100) < 1e-3  # float32 rounding of q
    with pytest.raises(TypeError, match="metrics must be a sequence"):
        analyze(model, metrics="stable_rank")
