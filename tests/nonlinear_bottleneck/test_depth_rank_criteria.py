"""depth-rank's DR-2 and DR-3 criteria (docs/claims-changelog.md, "depth-rank: DR-2 and DR-3"):
the linear-projection baseline against its closed form, and which depths DR-2 tests."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from rankscope.experiments.base import Result
from rankscope.experiments.bottleneck.data import trig_curve
from rankscope.experiments.bottleneck.depth_rank import (
    CLAIMS,
    AutoencoderFit,
    DepthFit,
    Summary,
    bottleneck_depths,
    linear_denoise_ratio,
)
from rankscope.records import RecordLog


@pytest.mark.parametrize(("dim", "degree"), [(10, 3), (12, 2)])
def test_linear_ratio_matches_the_small_noise_closed_form(dim, degree):
    """Projecting onto the 2m-dimensional span of a degree-m curve keeps the noise in the
    2m − 1 normal directions inside the span, out of dim − 1: for small noise the ratio of
    mean distances tends to E‖χ_(2m−1)‖ / E‖χ_(dim−1)‖ (means of chi variables)."""
    g = torch.Generator().manual_seed(5)
    curve = trig_curve(g, dim=dim, degree=degree, n=4000, noise=1e-3, n_dense=20000)
    ratio = linear_denoise_ratio(curve.dense, curve.noisy)

    def chi_mean(k):
        return math.sqrt(2) * math.exp(math.lgamma((k + 1) / 2) - math.lgamma(k / 2))

    expected = chi_mean(2 * degree - 1) / chi_mean(dim - 1)
    assert ratio == pytest.approx(expected, rel=0.03)
    assert abs(ratio - 1) > 0.1  # the projection does remove noise


def test_linear_ratio_is_one_when_the_curve_fills_the_space():
    g = torch.Generator().manual_seed(6)
    curve = trig_curve(g, dim=4, degree=3, n=500, noise=1e-3, n_dense=5000)  # 6 > dim
    assert linear_denoise_ratio(curve.dense, curve.noisy) == pytest.approx(1.0, abs=1e-9)


def _fit(depth: int, sq: float, rep_rank: float) -> DepthFit:
    return DepthFit(
        depth=depth,
        sq_norm=sq,
        data_loss=0.0,
        rel_mse=0.0,
        grad_norm=0.0,
        layer_norms=[1.0],
        layer_ranks=[3],
        middle_rank=3.0,
        rep_ranks=[int(rep_rank)],
        rep_rank=rep_rank,
        third_share=0.1,
        balance_gap=0.0,
    )


def _summary(fits: list[DepthFit], control_ratio: float = 0.74, deep_ratio: float = 0.4):
    line = np.polyfit([f.depth for f in fits], [f.sq_norm for f in fits], 1)
    ae = AutoencoderFit(8, deep_ratio, 1.0, deep_ratio, 2, 3.0, 10.0, 0.0)
    control = dataclasses.replace(ae, depth=2, ratio=control_ratio)
    return Summary(
        fits=fits,
        slope=float(line[0]),
        slope_stderr=0.0,
        intercept=float(line[1]),
        r2=1.0,
        deep=ae,
        control=control,
        linear_ratio=0.745,
        lam=1e-2,
        count_bias_in_norm=True,
        tau=0.1,
    )


def _verdict(claim_id: str, summary: Summary) -> str:
    claim = next(c for c in CLAIMS if c.id == claim_id)
    return claim.check(Result(summary=summary, records=RecordLog().freeze())).verdict


def test_dr2_tests_only_depths_past_the_crossover():
    # ‖θ‖² = 2L + 24 is below 4L (remainder below L·R⁽⁰⁾) from L = 13 on: 7, 11 not tested
    fits = [_fit(7, 38, 3), _fit(11, 46, 3), _fit(15, 54, 2), _fit(19, 62, 2)]
    s = _summary(fits)
    assert [f.depth for f in bottleneck_depths(s)] == [15, 19]
    assert _verdict("DR-2", s) == "pass"
    fits[2] = _fit(15, 54, 3)
    assert _verdict("DR-2", _summary(fits)) == "fail"
    fits[2] = _fit(15, 61, 3)  # just above 4L: not tested, so L = 19 decides
    assert [f.depth for f in bottleneck_depths(_summary(fits))] == [19]
    assert _verdict("DR-2", _summary(fits)) == "pass"


def test_dr2_is_inconclusive_when_no_depth_reaches_the_crossover():
    fits = [_fit(7, 54, 2), _fit(11, 58, 2), _fit(15, 62, 2)]  # ‖θ‖² > 4L at every depth
    assert bottleneck_depths(_summary(fits)) == []
    assert _verdict("DR-2", _summary(fits)) == "inconclusive"


def test_dr3_compares_the_control_with_the_linear_projection():
    fits = [_fit(7, 38, 2), _fit(11, 46, 2), _fit(15, 54, 2)]
    assert _verdict("DR-3", _summary(fits, control_ratio=0.74)) == "pass"
    assert _verdict("DR-3", _summary(fits, control_ratio=0.55)) == "fail"  # < 0.8·0.745
    assert _verdict("DR-3", _summary(fits, deep_ratio=0.6)) == "fail"
