"""Shared pieces of the bottleneck family: teachers, the two-phase fit, spectra, finishing.

Every check that relies on stationarity finishes with full-batch L-BFGS in float64 through
:func:`rankscope.train.train` and reports ‖∇J‖ (:func:`rankscope.train.gradient_norm`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rankscope.metrics import singular_values
from rankscope.models import MLP
from rankscope.records import RecordLog
from rankscope.train import gradient_norm, train

__all__ = [
    "FitReport",
    "LossLogger",
    "fit_two_phase",
    "mse_sum",
    "random_relu_net",
    "spectra",
]


def mse_sum(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """C = (1/N)·Σ_i ‖y_i − f(x_i)‖² (squared error summed over outputs, mean over points)."""
    return ((out - y) ** 2).sum() / out.shape[0]


def random_relu_net(dims: list[int], generator: torch.Generator, *, bias_std: float = 0.5) -> MLP:
    """A fixed random ReLU teacher (He weights, N(0, bias_std²) biases), float64, frozen."""
    net = MLP(dims, "relu", True, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        for b in net.biases:
            b.copy_(torch.randn(b.shape, generator=generator, dtype=torch.float64) * bias_std)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class LossLogger:
    """Callback logging the objective and data loss under ``layer=tag``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def __call__(self, state) -> None:
        state.log.log("objective", state.loss, step=state.step, layer=self.tag)
        state.log.log("data_loss", state.data_loss, step=state.step, layer=self.tag)


@dataclass(frozen=True)
class FitReport:
    """After the fit: objective J, data loss, ‖θ‖² (as penalized), ‖∇J‖, steps per phase."""

    objective: float
    data_loss: float
    grad_norm: float
    adam_steps: int
    lbfgs_steps: int


def fit_two_phase(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    *,
    l2: float,
    l2_params: str,
    adam_steps: int,
    adam_lr: float,
    lbfgs_steps: int,
    log: RecordLog,
    tag: str,
    grad_tol: float = 1e-9,
    callbacks: tuple = (),
    adam_callbacks: tuple = (),
    adam_log_every: int | None = None,
) -> FitReport:
    """Full-batch Adam (exploration) then full-batch L-BFGS in float64 (finishing, stops once
    the objective stalls), both through :func:`rankscope.train.train`; returns ‖∇J‖."""
    every = adam_log_every or max(1, adam_steps // 4)
    r1 = train(
        model,
        loss_fn,
        optimizer="adam",
        lr=adam_lr,
        steps=adam_steps,
        l2=l2,
        l2_params=l2_params,
        log_at=every,
        log=log,
        callbacks=(LossLogger(tag), *adam_callbacks, *callbacks),
        dtype=torch.float64,
    )
    r2 = train(
        model,
        loss_fn,
        optimizer="lbfgs",
        lr=1.0,
        steps=lbfgs_steps,
        l2=l2,
        l2_params=l2_params,
        log_at=max(1, lbfgs_steps // 4) if lbfgs_steps else None,
        log=log,
        callbacks=(LossLogger(tag), *callbacks),
        optimizer_options={"tolerance_grad": grad_tol},
        step_offset=r1.steps,
    )
    gn = gradient_norm(model, loss_fn, l2=l2, l2_params=l2_params)
    with torch.no_grad():
        data = float(loss_fn(model))
        params = [p for p in model.parameters() if p.requires_grad]
        pen = [p for p in params if p.ndim >= 2] if l2_params == "weights" else params
        obj = data + l2 * float(sum((p * p).sum() for p in pen))
    log.log("grad_norm", gn, step=r1.steps + r2.steps, layer=tag)
    return FitReport(obj, data, gn, r1.steps, r2.steps)


def spectra(weights) -> list[torch.Tensor]:
    """float64 singular values of every weight matrix (detached)."""
    return [singular_values(w.detach().to(torch.float64)) for w in weights]
