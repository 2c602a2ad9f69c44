"""One readable training loop: full-batch GD, minibatch SGD, Adam and L-BFGS.

Objective (definitions §0, "Weight decay"): the penalty is added to the loss, never passed
to the optimizer as ``weight_decay``:

    J(θ) = loss_fn(model[, batch]) + l2 · Σ_{W ∈ penalized} ‖W‖_F²

``l2_params="weights"`` (default) penalizes every parameter with ≥ 2 dims (weight matrices,
not biases); ``"all"`` penalizes every parameter. A spec written as (λ/2)Σ‖W‖² (collapse.md)
passes ``l2=λ/2``; linear.md's λ‖θ‖² passes ``l2=λ``; torch's ``weight_decay=λ'`` is
``l2=λ'/2``.

Step s means "after s updates". At every step the loss of the current parameters on the
step's batch is computed once and used both for the update and for logging; at the logging
steps (``log_at``) the callbacks see a :class:`TrainState`. A NaN/Inf loss raises
:class:`~rankscope.train.errors.Diverged` (``on_diverge="raise"``) or ends the run with
status ``"diverged"`` (``on_diverge="stop"``).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rankscope.records import RecordLog
from rankscope.train.batches import BatchSampler, as_data, take
from rankscope.train.errors import Diverged
from rankscope.train.schedule import resolve_log_at

__all__ = ["OPTIMIZERS", "TrainResult", "TrainState", "named_weights", "train"]

OPTIMIZERS = ("gd", "sgd", "adam", "lbfgs")
_LBFGS_DEFAULTS = {
    "max_iter": 20,
    "history_size": 100,
    "tolerance_grad": 1e-10,
    "tolerance_change": 1e-14,
    "line_search_fn": "strong_wolfe",
}


@dataclass
class TrainState:
    """What a callback sees at a logging step (parameters are those after ``step`` updates)."""

    step: int
    loss: float  # objective J on this step's batch (data loss + penalty)
    data_loss: float  # loss_fn alone
    model: nn.Module | None
    params: list[torch.Tensor]
    optimizer: torch.optim.Optimizer
    log: RecordLog
    layer_names: list[str] = field(default_factory=list)  # tags of the weight matrices

    def weights(self) -> list[tuple[str, torch.Tensor]]:
        """(tag, detached matrix) for every penalizable weight (≥ 2-D parameter)."""
        return named_weights(self.model if self.model is not None else self.params)


@dataclass
class TrainResult:
    """Outcome of :func:`train`. ``history`` holds arrays ``step``, ``loss``, ``data_loss``
    at the logging steps. ``status`` is ``"completed"``, ``"stopped"`` (a callback or
    ``stop`` asked) or ``"diverged"`` (then ``diverged_step`` is set)."""

    status: str
    steps: int
    final_loss: float
    history: dict[str, np.ndarray]
    log: RecordLog
    diverged_step: int | None = None
    wall_time: float = 0.0


def named_weights(
    model_or_params: nn.Module | Sequence[torch.Tensor],
) -> list[tuple[str, torch.Tensor]]:
    """Tags and detached values of the weight matrices (parameters with ≥ 2 dims).

    Models holding a ``weights`` list (DeepLinear, MLP) are tagged W1…WL as in the papers;
    other modules use their parameter names; a plain list uses W1, W2, … in order.
    """
    if isinstance(model_or_params, nn.Module):
        ws = getattr(model_or_params, "weights", None)
        if isinstance(ws, nn.ParameterList):
            return [(f"W{i + 1}", w.detach()) for i, w in enumerate(ws)]
        return [(n, p.detach()) for n, p in model_or_params.named_parameters() if p.ndim >= 2]
    mats = [p for p in model_or_params if p.ndim >= 2]
    return [(f"W{i + 1}", p.detach()) for i, p in enumerate(mats)]


def _resolve(model_or_params, dtype) -> tuple[nn.Module | None, list[torch.Tensor]]:
    if isinstance(model_or_params, nn.Module):
        if dtype is not None:
            model_or_params.to(dtype)
        params = [p for p in model_or_params.parameters() if p.requires_grad]
        model = model_or_params
    else:
        params, model = list(model_or_params), None
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor) or not p.is_leaf or not p.requires_grad:
                raise TypeError(f"params[{i}] must be a leaf tensor with requires_grad=True")
            if dtype is not None and p.dtype != dtype:
                p.data = p.data.to(dtype)
    if not params:
        raise ValueError("nothing to train: the model has no parameters requiring grad")
    return model, params


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, options: dict | None):
    """torch optimizer for ``name`` in :data:`OPTIMIZERS` (no built-in weight decay)."""
    opts = dict(options or {})
    if "weight_decay" in opts:
        raise ValueError(
            "optimizer_options must not set weight_decay: pass l2= (penalty l2·Σ‖W‖² added to "
            "the loss; torch's weight_decay=λ' equals l2=λ'/2, definitions §0)"
        )
    if name in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr, **opts)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **opts)
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, **{**_LBFGS_DEFAULTS, **opts})
    raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZERS}")


def _check_args(optimizer, lr, steps, data, batch_size, l2, l2_params, on_diverge):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite float > 0, got {lr!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if optimizer == "sgd" and (data is None or batch_size is None):
        raise ValueError("optimizer='sgd' needs data= and batch_size=; use 'gd' for full batch")
    if optimizer in ("gd", "lbfgs") and batch_size is not None:
        raise ValueError(f"optimizer={optimizer!r} is full-batch; got batch_size={batch_size}")
    if isinstance(l2, bool) or not isinstance(l2, numbers.Real) or not 0 <= l2 < math.inf:
        raise ValueError(f"l2 must be a finite float >= 0, got {l2!r}")
    if l2_params not in ("weights", "all"):
        raise ValueError(f"l2_params must be 'weights' or 'all', got {l2_params!r}")
    if on_diverge not in ("raise", "stop"):
        raise ValueError(f"on_diverge must be 'raise' or 'stop', got {on_diverge!r}")


def train(
    model_or_params: nn.Module | Iterable[torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    *,
    optimizer: str = "gd",
    lr: float,
    steps: int,
    data: Any = None,
    batch_size: int | None = None,
    sampling: str = "shuffle",
    l2: float = 0.0,
    l2_params: str = "weights",
    generator: torch.Generator | None = None,
    log_at: int | Iterable[int] | None = None,
    callbacks: Sequence[Callable[[TrainState], Any]] = (),
    log: RecordLog | None = None,
    dtype: torch.dtype | None = None,
    optimizer_options: dict | None = None,
    stop: Callable[[int, float], bool] | None = None,
    on_diverge: str = "raise",
    step_offset: int = 0,
) -> TrainResult:
    """Train in place and return a :class:`TrainResult` (see the module docstring).

    ``loss_fn(model)`` without data, ``loss_fn(model, batch)`` with ``data`` (a tensor or a
    tuple of tensors sharing dim 0; ``batch`` is the same tuple restricted to the step's rows).
    ``model`` is the module, or the list of parameter tensors when those were passed.
    ``optimizer``: ``"gd"`` (full batch), ``"sgd"`` (``batch_size`` rows per step drawn from
    ``generator``, ``sampling`` "shuffle" or "replace"), ``"adam"`` (full batch, or minibatch
    when ``batch_size`` is given), ``"lbfgs"`` (full batch, strong-Wolfe line search; one
    step = one ``LBFGS.step`` of up to ``optimizer_options["max_iter"]`` = 20 iterations).
    ``log_at``: None (0 and ``steps``), an interval, or explicit steps (see :func:`log_steps`).
    A callback returning ``True`` stops the run (status ``"stopped"``); so does
    ``stop(step, loss)``, checked at every step (under L-BFGS, between logging steps, ``loss``
    is the one at the start of the previous step: L-BFGS does not report the new one).
    ``step_offset`` is added to every reported step (callbacks, history, records, Diverged),
    so a second phase (e.g. Adam then SGD) continues the step axis; ``log_at`` and the
    result's ``steps`` count within this call.
    """
    _check_args(optimizer, lr, steps, data, batch_size, l2, l2_params, on_diverge)
    model, params = _resolve(model_or_params, dtype)
    data = as_data(data, dtype)
    subject = model if model is not None else params
    objective = _Objective(subject, loss_fn, l2, params, l2_params)
    opt = make_optimizer(optimizer, params, lr, optimizer_options)
    sampler = None
    if batch_size is not None:
        sampler = BatchSampler(data[0].shape[0], batch_size, generator=generator, sampling=sampling)
    log = RecordLog() if log is None else log
    log_steps_ = resolve_log_at(log_at, steps)
    names = [n for n, _ in named_weights(subject)]
    start = time.perf_counter()
    hist: dict[str, list] = {"step": [], "loss": [], "data_loss": []}
    status, last, diverged_step = "completed", math.nan, None
    for step in range(steps + 1):
        batch = data if sampler is None else take(data, sampler.next())
        if optimizer == "lbfgs":  # L-BFGS evaluates its own losses; add one only where logged
            loss_t, data_t = _no_grad(objective, batch) if step in log_steps_ else (None, None)
        else:
            opt.zero_grad(set_to_none=True)
            loss_t, data_t = objective(batch)
        if loss_t is not None:  # (L-BFGS off the logging steps: checked after its step)
            last = float(loss_t.detach())
            if not math.isfinite(last):
                status, diverged_step = "diverged", step_offset + step
                break
        if step in log_steps_:
            data_f = float(data_t.detach())
            at = step_offset + step
            for key, value in (("step", at), ("loss", last), ("data_loss", data_f)):
                hist[key].append(value)
            state = TrainState(at, last, data_f, model, params, opt, log, names)
            if any([bool(cb(state)) for cb in callbacks]):
                status = "stopped"
        if status == "stopped" or step == steps or (stop and stop(step_offset + step, last)):
            status = "stopped" if step < steps else status
            break
        if optimizer == "lbfgs":
            last = _lbfgs_step(opt, objective, batch)  # the loss at this step's parameters
            if not math.isfinite(last):
                status, diverged_step = "diverged", step_offset + step
                break
        else:
            loss_t.backward()
            opt.step()
    if status == "diverged" and on_diverge == "raise":
        raise Diverged(diverged_step, "loss", last)
    history = {k: np.asarray(v) for k, v in hist.items()}
    wall = time.perf_counter() - start
    return TrainResult(status, step, last, history, log, diverged_step, wall)


class _Objective:
    """J = loss_fn(subject[, batch]) + l2·Σ_{W ∈ penalized}‖W‖_F², returned with the data part."""

    def __init__(self, subject, loss_fn, l2: float, params, l2_params: str) -> None:
        self.subject, self.loss_fn, self.l2 = subject, loss_fn, float(l2)
        self.penalized = [p for p in params if p.ndim >= 2] if l2_params == "weights" else params

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        data_loss = (
            self.loss_fn(self.subject) if batch is None else self.loss_fn(self.subject, batch)
        )
        if data_loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(data_loss.shape)}")
        if self.l2 == 0:
            return data_loss, data_loss
        return data_loss + self.l2 * sum((p * p).sum() for p in self.penalized), data_loss


def _no_grad(objective, batch):
    with torch.no_grad():
        return objective(batch)


def _lbfgs_step(opt: torch.optim.LBFGS, objective, batch) -> float:
    """One ``LBFGS.step``; returns the objective at the parameters it started from."""

    def closure():
        opt.zero_grad(set_to_none=True)
        loss, _ = objective(batch)
        loss.backward()
        return loss

    return float(opt.step(closure).detach())
