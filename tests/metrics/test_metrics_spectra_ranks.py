"""Spectra and rank policies against numpy/scipy and planted spectra (definitions §1-§5)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.linalg
import torch
from _metrics_helpers import gen, planted
from torch.testing import assert_close

from rankscope.metrics import (
    GENERIC_RANK_POLICIES,
    RANK_POLICIES,
    RANK_PRESETS,
    effective_rank,
    numerical_rank,
    participation_ratio,
    rank_threshold,
    resolve_rank_policy,
    singular_values,
    stable_rank,
    topk_singular_values,
    variance_dimension,
)

F64 = torch.float64


@pytest.mark.parametrize("backend", ["auto", "torch", "scipy"])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (3, 2, 5, 5)])
def test_singular_values_match_scipy(backend, shape):
    x = torch.randn(*shape, generator=gen(0))
    s = singular_values(x, backend=backend)
    ref = np.stack([scipy.linalg.svdvals(a) for a in x.double().numpy().reshape(-1, *shape[-2:])])
    assert s.dtype == F64 and s.shape == (*shape[:-2], min(shape[-2:]))
    assert_close(s, torch.from_numpy(ref).reshape(s.shape), rtol=1e-12, atol=1e-12)


def test_singular_values_dtype_none_keeps_float32_and_complex_is_real():
    x = torch.randn(5, 3, generator=gen(1))
    assert singular_values(x, dtype=None).dtype == torch.float32
    z = torch.randn(4, 4, dtype=torch.complex128, generator=gen(2))
    ref = scipy.linalg.svdvals(z.numpy())
    assert_close(singular_values(z), torch.from_numpy(ref))


def test_singular_values_gradient_flows():
    x = torch.randn(4, 3, dtype=F64, generator=gen(3), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: singular_values(a), (x,))


def _decaying(n: int, seed: int, rate: float = 8.0) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.exp(-torch.arange(n, dtype=F64) / rate)
    return planted(s, n, n, gen(seed)), s


def test_topk_reaches_1e4_relative_on_decaying_spectrum():
    a, s = _decaying(300, 4)
    out = topk_singular_values(a, 10, generator=gen(5))
    rel = ((out.values - s[:10]).abs() / s[:10]).max()
    assert rel < 1e-6
    assert out.rel_error < 1e-4
    # the estimate is a bound: every computed value is within its residual of a true one
    assert bool(((out.values - s[:10]).abs() <= out.residual + 1e-14).all())


def test_topk_batched_and_seeded():
    a, _ = _decaying(80, 6)
    x = torch.stack([a, 3 * a])
    one = topk_singular_values(x, 4, generator=gen(7))
    two = topk_singular_values(x, 4, generator=gen(7))
    assert_close(one.values, two.values, rtol=0, atol=0)
    assert_close(one.values[1], 3 * one.values[0])


def test_topk_error_estimate_flags_a_poor_approximation():
    flat = planted(torch.ones(60), 60, 60, gen(8)) + 1e-3 * torch.randn(
        60, 60, generator=gen(9), dtype=F64
    )
    out = topk_singular_values(flat, 5, oversample=0, n_iter=0, generator=gen(10))
    assert out.rel_error > 1e-2


# ---- numerical rank -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 5), (5, 8), (6, 6)])
@pytest.mark.parametrize("rank", [0, 1, 3])
def test_default_rank_matches_numpy_and_torch(shape, rank):
    g = gen(rank)
    x = torch.randn(shape[0], rank, generator=g, dtype=F64) @ torch.randn(
        rank, shape[1], generator=g, dtype=F64
    )
    s = singular_values(x)
    got = int(numerical_rank(s, shape=shape))
    assert got == rank == np.linalg.matrix_rank(x.numpy()) == int(torch.linalg.matrix_rank(x))
    assert int(numerical_rank(s, "numpy", shape=shape)) == rank


def test_rank_tolerances_match_numpy_and_torch_keywords():
    s_true = torch.tensor([1.0, 1e-2, 1e-4, 1e-6], dtype=F64)
    x = planted(s_true, 6, 4, gen(11))
    s = singular_values(x)
    for tol in (1e-5, 1e-3, 5e-2):
        assert int(numerical_rank(s, "numpy", atol=tol)) == np.linalg.matrix_rank(
            x.numpy(), tol=tol
        )
        assert int(numerical_rank(s, "torch", atol=tol)) == int(
            torch.linalg.matrix_rank(x, atol=tol)
        )
        assert int(numerical_rank(s, "numpy", rtol=tol)) == np.linalg.matrix_rank(
            x.numpy(), rtol=tol
        )
        assert int(numerical_rank(s, "relative", rtol=tol)) == int(
            torch.linalg.matrix_rank(x, rtol=tol)
        )
    assert int(numerical_rank(s, "absolute", atol=1e-3)) == 2


def test_zero_atol_follows_each_library():
    """numpy's tol=0 counts every s_i > 0; torch's atol=0 keeps its default rtol."""
    s = torch.tensor([1.0, 1e-17], dtype=F64)
    a = torch.diag(s)
    assert np.linalg.matrix_rank(a.numpy(), tol=0) == 2
    assert int(numerical_rank(s, "numpy", atol=0.0, shape=(2, 2))) == 2
    assert int(torch.linalg.matrix_rank(a, atol=0.0)) == 1
    assert int(numerical_rank(s, "torch", atol=0.0, shape=(2, 2))) == 1


def test_named_policies_on_a_planted_spectrum():
    # s = (10, 3, 1.5, 0.5, 0.05, 1e-9) on a 6x6 matrix: ‖s‖_F ≈ 10.56
    s = torch.tensor([10.0, 3.0, 1.5, 0.5, 0.05, 1e-9], dtype=F64)
    shape = (6, 6)
    expect = {
        "galanti": 5,  # s_i > 1e-3·‖s‖_F ≈ 0.0106
        "mixed_dynamics": 2,  # s_i > 2
        "accnet": 3,  # s_i > max(0.1, 1.0)
        "feng": 5,  # s_i > 10·sqrt(6·eps) ≈ 3.6e-7
        "weightwatcher": 6,  # s_i > 10·6·eps ≈ 1.3e-14
        "torch": 6,
    }
    for policy, r in expect.items():
        assert int(numerical_rank(s, policy, shape=shape)) == r, policy
    # dlrt drops the tail while (Σ_{j>r} s_j²)^{1/2} < θ·‖s‖; θ=0.1: ‖(1.5, .5, ..)‖ = 1.58 > 1.06
    assert int(numerical_rank(s, "dlrt", rtol=0.1)) == 3
    assert int(numerical_rank(s, "dlrt", rtol=0.5)) == 2  # the floor of 2
    assert int(numerical_rank(torch.zeros(4, dtype=F64), "dlrt")) == 0


def test_feng_is_the_rank_of_jtj():
    s_true = torch.tensor([1.0, 1e-3, 1e-6, 1e-9], dtype=F64)
    j = planted(s_true, 10, 4, gen(12))
    s = singular_values(j)
    assert int(numerical_rank(s, "feng", shape=(10, 4))) == int(torch.linalg.matrix_rank(j.T @ j))
    assert int(numerical_rank(s, "feng", shape=(10, 4))) < int(numerical_rank(s, shape=(10, 4)))


# the tolerance a generic policy cannot do without
_REQUIRED = {
    "relative": {"rtol": 0.1},
    "absolute": {"atol": 0.5},
    "frobenius": {"atol": 1e-2},
    "tail_energy": {"rtol": 0.1},
}


@pytest.mark.parametrize("policy", RANK_POLICIES)
def test_every_policy_is_batched_and_bounded(policy):
    s = singular_values(torch.randn(3, 5, 4, generator=gen(13)))
    kw = _REQUIRED.get(policy, {})
    r = numerical_rank(s, policy, shape=(5, 4), **kw)
    assert r.shape == (3,) and r.dtype == torch.int64
    assert bool(((r >= 0) & (r <= 4)).all())
    looped = torch.stack([numerical_rank(v, policy, shape=(5, 4), **kw) for v in s])
    assert torch.equal(r, looped)


def test_every_preset_cites_a_paper_and_names_a_generic_policy():
    assert set(RANK_PRESETS) == {
        "galanti",
        "mixed_dynamics",
        "accnet",
        "feng",
        "weightwatcher",
        "dlrt",
    }
    for name, p in RANK_PRESETS.items():
        assert p.name == name
        assert p.policy in GENERIC_RANK_POLICIES, name
        assert re.fullmatch(r"arXiv:\d{4}\.\d{4,5}", p.paper), (name, p.paper)
        assert len(p.source) > 20, name


@pytest.mark.parametrize("name", sorted(RANK_PRESETS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_preset_equals_its_explicit_generic_policy(name, dtype):
    p = RANK_PRESETS[name]
    s = singular_values(torch.randn(7, 9, 6, generator=gen(30)), dtype=dtype)
    s = torch.cat([s, torch.zeros(1, 6, dtype=dtype)])  # and the zero matrix
    explicit = numerical_rank(s, p.policy, shape=(9, 6), **p.tolerances())
    assert torch.equal(numerical_rank(s, name, shape=(9, 6)), explicit)
    if p.policy != "tail_energy":
        assert torch.equal(
            rank_threshold(s, name, shape=(9, 6)),
            rank_threshold(s, p.policy, shape=(9, 6), rtol=p.rtol, atol=p.atol),
        )


def _old_preset_rank(s: torch.Tensor, name: str, shape: tuple[int, int]) -> torch.Tensor:
    """The presets as the formulas definitions §1 writes them (independent of the table)."""
    s1 = s[..., :1]
    eps = torch.finfo(s.dtype).eps
    if name == "dlrt":
        tails = torch.stack([(s[..., r:] ** 2).sum(-1) for r in range(s.shape[-1] + 1)], -1)
        ok = tails < 0.1**2 * (s**2).sum(-1, keepdim=True)  # dropping s_r.. leaves rank r
        r = torch.argmax(ok.to(torch.int64), dim=-1).clamp(min=2)
        return torch.where(s1[..., 0] > 0, r, 0)
    t = {
        "galanti": 1e-3 * torch.linalg.vector_norm(s, dim=-1, keepdim=True),
        "mixed_dynamics": s1 / 5,
        "accnet": torch.clamp(0.1 * s1, min=0.1),
        "feng": s1 * math.sqrt(shape[1] * eps),
        "weightwatcher": s1 * max(shape) * eps,
    }[name]
    return (s > t).sum(-1)


@pytest.mark.parametrize("name", sorted(RANK_PRESETS))
def test_presets_equal_the_paper_formulas(name):
    g = gen(31)
    mats = torch.randn(40, 8, 6, generator=g, dtype=F64)
    mats = mats * torch.logspace(0, -12, 6, dtype=F64)  # decaying columns: ranks spread out
    s = singular_values(mats)
    assert torch.equal(numerical_rank(s, name, shape=(8, 6)), _old_preset_rank(s, name, (8, 6)))


def test_presets_take_caller_tolerances_and_unknown_names_say_what_exists():
    s = torch.tensor([1.0, 0.3, 0.05, 0.001], dtype=F64)
    assert int(numerical_rank(s, "galanti", atol=0.1)) == int(
        numerical_rank(s, "frobenius", atol=0.1)
    )
    assert resolve_rank_policy("dlrt", rtol=0.5) == ("tail_energy", 0.5, None, 2)
    assert resolve_rank_policy("relative", rtol=0.1) == ("relative", 0.1, None, 0)
    with pytest.raises(
        ValueError, match=r"unknown tolerance policy 'galnati'; did you mean 'galanti'"
    ) as e:
        numerical_rank(s, "galnati")
    assert "paper presets: galanti, mixed_dynamics" in str(e.value)
    assert "Generic policies: torch, numpy, relative" in str(e.value)
    with pytest.raises(ValueError, match="'tail_energy' needs rtol"):
        numerical_rank(s, "tail_energy")
    with pytest.raises(ValueError, match="'frobenius' needs atol"):
        numerical_rank(s, "frobenius")
    with pytest.raises(ValueError, match="min_rank must be an int >= 0, got -1"):
        numerical_rank(s, "relative", rtol=0.1, min_rank=-1)
    with pytest.raises(ValueError, match=r"policy 'weightwatcher' needs shape"):
        numerical_rank(s, "weightwatcher")
    assert int(numerical_rank(s, "relative", rtol=0.5, min_rank=3)) == 3


def test_threshold_is_strict_and_conventions_hold():
    s = torch.tensor([1.0, 0.1], dtype=F64)
    assert int(numerical_rank(s, "relative", rtol=0.1)) == 1  # s_i > τ·s1, strict
    assert int(numerical_rank(torch.tensor([[2.0, 0.0]], dtype=F64), "torch", shape=(1, 2))) == 1
    assert int(numerical_rank(torch.zeros(3, dtype=F64), "torch", shape=(3, 3))) == 0
    assert_close(rank_threshold(s, "accnet"), torch.tensor(0.1, dtype=F64))


# ---- continuous ranks -------------------------------------------------------------------


def test_continuous_ranks_closed_forms():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=F64)
    p = s[:3] / 6
    assert_close(effective_rank(s), torch.exp(-(p * p.log()).sum()))
    assert_close(stable_rank(s), torch.tensor(14 / 9, dtype=F64))
    assert_close(participation_ratio(s), torch.tensor(14**2 / 98, dtype=F64))
    eq = torch.tensor([2.0, 2.0, 2.0, 0.0], dtype=F64)
    for f in (effective_rank, stable_rank, participation_ratio):
        assert_close(f(eq), torch.tensor(3.0, dtype=F64))
        assert_close(f(torch.zeros(2, 3, dtype=F64)), torch.zeros(2, dtype=F64))


def test_effective_rank_exceeds_its_squared_variant():
    s = torch.tensor([5.0, 2.0, 1.0, 0.3], dtype=F64)
    q = s**2 / (s**2).sum()
    assert effective_rank(s) > torch.exp(-(q * q.log()).sum())
    assert_close(effective_rank(torch.tensor([1.0, 1e-12]), zero_tol=1e-6), torch.tensor(1.0))


def test_variance_dimension_and_delve_quirk():
    lam = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.01], dtype=F64)  # cumulative .5 .8 .95 .99 1
    s = lam.sqrt()
    assert int(variance_dimension(s, 0.9)) == 3
    assert int(variance_dimension(s, 0.99)) == 4
    # delve counts directions strictly below: 0.9 -> 2 (.8, short by .1 > .02 -> +1 = 3)
    assert int(variance_dimension(s, 0.9, delve_quirk=True)) == 3
    # 0.81: two below (.5, .8), short by .01 <= .02 -> delve reports 2, rankscope 3
    assert int(variance_dimension(s, 0.81, delve_quirk=True)) == 2
    assert int(variance_dimension(s, 0.81)) == 3
    assert int(variance_dimension(torch.zeros(3, dtype=F64))) == 0


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.tensor([[1.0, float("nan")]]), r"shape \(1, 2\) contains 1 NaN/Inf"),
        (torch.tensor([[1.0, float("inf")]]), "NaN/Inf"),
        (torch.ones(3), r"\(\.\.\., m, n\), got shape \(3,\)"),
    ],
)
def test_singular_values_rejects_bad_input(x, match):
    with pytest.raises(ValueError, match=match):
        singular_values(x)


def test_bad_arguments_name_what_was_received():
    s = torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="unknown tolerance policy 'torchh'"):
        numerical_rank(s, "torchh", shape=(3, 3))
    with pytest.raises(ValueError, match="needs shape"):
        numerical_rank(s)
    with pytest.raises(ValueError, match="needs rtol"):
        numerical_rank(s, "relative")
    with pytest.raises(ValueError, match="not both"):
        numerical_rank(s, "numpy", atol=1.0, rtol=1.0)
    with pytest.raises(ValueError, match="negative"):
        stable_rank(torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="NaN/Inf"):
        effective_rank(torch.tensor([math.nan]))
    with pytest.raises(ValueError, match="unknown backend 'lapack'"):
        singular_values(torch.ones(2, 2), backend="lapack")
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 2\]"):
        topk_singular_values(torch.ones(2, 3), 3)
    with pytest.raises(TypeError, match="got list"):
        singular_values([[1.0]])


def test_unsorted_spectra_are_sorted_first():
    s = torch.tensor([0.1, 3.0, 1.0], dtype=F64)
    assert int(numerical_rank(s, "relative", rtol=0.2)) == 2
    assert_close(stable_rank(s), stable_rank(s.sort(descending=True).values))


def test_topk_float32_range_finder_keeps_float64_accuracy():
    a, s = _decaying(300, 14)
    out = topk_singular_values(a, 10, generator=gen(15), range_dtype=torch.float32)
    assert out.values.dtype == F64
    assert ((out.values - s[:10]).abs() / s[:10]).max() < 1e-8


def test_auto_backend_agrees_with_torch_on_large_float32():
    x = torch.randn(520, 512, generator=gen(16))
    auto = singular_values(x, dtype=None)
    assert auto.dtype == torch.float32
    assert_close(auto, torch.linalg.svdvals(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"policy": "relative", "rtol": -0.1}, "rtol"),
        ({"policy": "relative", "rtol": math.nan}, "rtol"),
        ({"policy": "relative", "rtol": "0.1"}, "rtol"),
        ({"policy": "absolute", "atol": -1.0}, "atol"),
        ({"policy": "torch", "atol": math.inf, "shape": (3, 3)}, "atol"),
        ({"policy": "galanti", "atol": math.nan}, "atol"),
        ({"policy": "dlrt", "rtol": -0.5}, r"rtol \(θ\)"),
    ],
)
def test_bad_tolerances_raise_instead_of_a_silent_rank(kw, name):
    """A NaN tolerance compares false (rank 0) and a negative one keeps every s_i: both gave
    a plausible wrong rank before; now they name the argument and the value."""
    with pytest.raises(ValueError, match=rf"{name} must be a finite number >= 0, got"):
        numerical_rank(torch.tensor([1.0, 0.5, 0.0], dtype=F64), **kw)
    with pytest.raises(ValueError, match="zero_tol must be a finite number >= 0, got nan"):
        effective_rank(torch.ones(3, dtype=F64), zero_tol=math.nan)
    with pytest.raises(ValueError, match=r"shape \(m, n\) of two ints, got 3"):
        numerical_rank(torch.ones(3, dtype=F64), shape=3)


def test_tolerances_accept_numpy_and_tensor_scalars():
    s = torch.tensor([1.0, 0.5, 0.01], dtype=F64)
    for tau in (np.float64(0.1), torch.tensor(0.1), 0.1):
        assert int(numerical_rank(s, "relative", rtol=tau)) == 2
    assert int(numerical_rank(s, shape=(np.int64(3), 3))) == 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_keep_a_float32_spectrum(dtype):
    x = torch.randn(6, 4, generator=gen(17)).to(dtype)
    ref = scipy.linalg.svdvals(x.double().numpy())
    kept = singular_values(x, dtype=None)
    assert kept.dtype == torch.float32
    assert_close(kept, torch.from_numpy(ref).float(), rtol=1e-5, atol=1e-6)
    assert_close(singular_values(x), torch.from_numpy(ref), rtol=1e-12, atol=1e-12)


def test_a_matrix_passed_as_a_spectrum_is_refused():
    x = torch.rand(64, 32, generator=gen(3), dtype=F64)
    with pytest.raises(ValueError, match=r"looks like a matrix; pass singular_values\(x\)"):
        stable_rank(x)
    with pytest.raises(ValueError, match=r"shape \(64, 32\)"):
        effective_rank(x)
    # sorted rows in either direction are spectra (eigvalsh gives ascending ones)
    s = singular_values(x.reshape(4, 16, 32))
    assert_close(stable_rank(s.flip(-1)), stable_rank(s))
