"""Metrics keep the input's device (runs on CUDA only where a GPU is present)."""

from __future__ import annotations

import pytest
import torch
from _metrics_helpers import gen

from rankscope.metrics import (
    ClassStatsAccumulator,
    CovarianceAccumulator,
    conv_operator_spectrum,
    cost_of_identity,
    jacobians,
    nc1,
    nc4,
    numerical_rank,
    rankme,
    singular_values,
    stable_rank,
    topk_singular_values,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_outputs_stay_on_the_input_device(device):
    x = torch.randn(3, 8, 5, generator=gen(0), dtype=torch.float64).to(device)
    s = singular_values(x)
    labels = torch.tensor([0, 0, 1, 1], device=device)
    outs = [
        s,
        numerical_rank(s, shape=(8, 5)),
        stable_rank(s),
        rankme(x),
        cost_of_identity(x),
        topk_singular_values(x[0], 2, generator=gen(1)).values,
        conv_operator_spectrum(x[:, :, :3], 4),
        jacobians(lambda v: v @ x[0].T, x[0]),
        CovarianceAccumulator().update(x[0]).covariance(),
        nc1(ClassStatsAccumulator(2).update(x[0], torch.arange(8, device=device) % 2)),
        nc1(torch.ones(4, 2, device=device), labels, variant="quotient"),  # coincident means: inf
        nc4(x[0, :4, :2], labels, weight=torch.eye(2, dtype=torch.float64, device=device)),
    ]
    for out in outs:
        assert out.device.type == device
