"""The training engine: one loop for a single model and for an ensemble of E members.

A single model (an ``nn.Module`` or a list of leaf tensors) is E = 1. A stacked ensemble (a
module with a ``size``, e.g. :class:`~rankscope.models.ensembles.MLPEnsemble`) is E members
whose parameters carry the member dimension first; ``loss_fn`` then returns (E,) and members
may differ in ``lr``, ``l2``, batches and logs. Each member e minimises (definitions §0)

    J_e(θ_e) = loss_fn(model[, batch])[e] + l2_e · Σ_{W ∈ penalized} ‖W_e‖_F²

(:mod:`rankscope.train.objective`). Summing the J_e and back-propagating once gives every
member its own gradient, because members share nothing.

Step s means "after s updates". At every visited step the objective of the current
parameters on the step's batch is computed once and used both for the update and for
logging; at the logging steps (``log_at``) the callbacks see a :class:`TrainState`. A member
whose objective is NaN/Inf is frozen (parameters and optimizer state kept) with status
``"diverged"``; a callback or ``stop`` returning True (or an (E,) bool tensor) freezes
(those) members with status ``"stopped"``. Both happen in :class:`~rankscope.train.members.
Members`, the same for E = 1 and E > 1. ``on_diverge="raise"`` raises
:class:`~rankscope.train.errors.Diverged` at the first NaN/Inf (the runner records the run as
diverged); ``"stop"`` lets the other members go on and reports the status.

Methods (:mod:`rankscope.train.methods`): ``"gd"``, ``"sgd"``, ``"adam"``, ``"lbfgs"`` (E = 1),
a callable ``params -> torch.optim.Optimizer``, and ``"flow"``, the exact gradient flow
(:mod:`rankscope.train.flow`; step s is time s·lr).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from rankscope.records import RecordLog
from rankscope.train.batched_optim import check_lr_vector
from rankscope.train.batches import BatchSampler, as_data, take
from rankscope.train.errors import Diverged
from rankscope.train.members import Members
from rankscope.train.methods import METHODS, make_method
from rankscope.train.objective import Objective
from rankscope.train.schedule import resolve_log_at
from rankscope.train.state import TrainResult, TrainState, named_weights

__all__ = ["OPTIMIZERS", "train"]

OPTIMIZERS = METHODS


def train(
    model: nn.Module | Iterable[torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    *,
    optimizer: str | Callable[[list[torch.Tensor]], Any] = "gd",
    lr=None,
    steps: int,
    data: Any = None,
    batch_size: int | None = None,
    sampling: str = "shuffle",
    batches: str = "per_member",
    l2=0.0,
    l2_params: str = "weights",
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    log_at: int | Iterable[int] | None = None,
    callbacks: Sequence[Callable[[TrainState], Any]] = (),
    log: RecordLog | Sequence[RecordLog] | None = None,
    dtype: torch.dtype | None = None,
    optimizer_options: dict | None = None,
    stop: Callable[[int, Any], Any] | None = None,
    on_diverge: str = "raise",
    step_offset: int = 0,
) -> TrainResult:
    """Train ``model`` in place and return a :class:`TrainResult` (module docstring).

    ``loss_fn(model)`` without data, ``loss_fn(model, batch)`` with ``data`` (a tensor or a
    tuple of tensors sharing dim 0; ``batch`` is the same tuple restricted to the step's rows,
    (E, B, ...) for per-member batches). ``model`` is the module, or the list of tensors when
    those were passed. It returns a scalar (single model) or (E,) (ensemble).

    ``optimizer``: ``"gd"`` (full batch), ``"sgd"`` (``batch_size`` rows per step drawn from
    ``generator``, ``sampling`` "shuffle" or "replace"), ``"adam"`` (full batch, or minibatch
    with ``batch_size``), ``"lbfgs"`` (single model, full batch, strong-Wolfe line search;
    one step = one ``LBFGS.step`` of up to ``optimizer_options["max_iter"]`` = 20
    iterations), ``"flow"`` (exact gradient flow, full batch, float64; ``lr`` is the time of
    one step, see :class:`~rankscope.train.flow.Flow` for its options), or a callable
    ``params -> optimizer`` (then ``lr`` is not given: the factory sets it).
    ``lr``, ``l2``: one float, or E values for an ensemble. ``generator``: one
    ``torch.Generator``, or E of them for an ensemble with ``batches="per_member"`` (member e
    draws its batches exactly as an independent run with ``generator[e]``); ``batches=
    "shared"`` draws one batch for all members from one generator. ``log``: one RecordLog, or
    E for an ensemble. ``log_at``: None (0 and ``steps``), an interval, or explicit steps
    (see :func:`log_steps`).
    ``stop(step, loss)`` is checked at every step: ``loss`` is a float for a single model
    (under L-BFGS, between logging steps, the one at the start of the previous step) and the
    (E,) objectives for an ensemble. ``step_offset`` is added to every reported step
    (callbacks, history, records, Diverged), so a second phase (e.g. Adam then SGD) continues
    the step axis; ``log_at`` and the result's ``steps`` count within this call.
    """
    # what is trained: E members (E = 1 for a plain module or a list of tensors)
    subject, params, size, stacked = _resolve(model, dtype)
    _check_args(optimizer, steps, data, batch_size, batches, l2_params, on_diverge, stacked)
    lr = _rates(lr, size, stacked, "lr", optimizer)
    l2 = _rates(l2, size, stacked, "l2", optimizer)
    objective = Objective(subject, loss_fn, params, l2, l2_params, size=size, stacked=stacked)
    method = make_method(
        optimizer, objective, lr, optimizer_options, stacked=stacked, step_offset=step_offset
    )
    data = as_data(data, dtype)
    next_batch = _batches(data, batch_size, batches, generator, sampling, size, stacked)
    logs = _logs(log, size, stacked)
    log_steps_ = resolve_log_at(log_at, steps)
    names = [n for n, _ in named_weights(subject, stacked=stacked)]
    members = Members(size, step_offset + steps)
    raise_on_diverge = on_diverge == "raise"
    module = subject if isinstance(subject, nn.Module) else None  # what callbacks see as model
    start = time.perf_counter()

    visits = list(method.visits(steps, log_steps_, stop is not None))
    for step, next_step in zip(visits, [*visits[1:], None]):
        at = step_offset + step
        batch = next_batch()
        losses, data_losses = method.losses(batch, step in log_steps_)  # (E,) each
        if losses is not None:  # (None: L-BFGS off the logging steps evaluates its own)
            members.observe(at, losses)  # the one divergence check: NaN/Inf freezes a member
        if members.n_active == 0 or (raise_on_diverge and members.n_diverged):
            break
        if step in log_steps_:
            state = TrainState(
                at, members.masked(losses), members.masked(data_losses), members.active.clone(),
                module, params, method.optimizer, logs, names, stacked,
            )  # fmt: skip
            members.record(state)
            for cb in callbacks:
                members.request_stop(at, cb(state))
        if stop is not None and step < steps:
            members.request_stop(at, stop(at, members.stop_value(stacked)))
        if method.halted:  # the flow's own terminal event (stop_at_loss) ended the run here
            members.request_stop(at, True)
        if next_step is None or members.n_active == 0:
            break
        seen = method.advance(losses, batch, members.mask(), (step, next_step))
        if seen is not None:  # L-BFGS: the objective at the parameters it started from
            members.observe(at, seen)
            if members.n_active == 0 or (raise_on_diverge and members.n_diverged):
                break

    wall = time.perf_counter() - start
    extra = method.finish(batch)  # the flow's trajectory
    result = members.result(step, logs, stacked=stacked, step_offset=step_offset, wall_time=wall,
                            **extra)  # fmt: skip
    if raise_on_diverge and members.n_diverged:
        e, at, value = members.first_divergence()
        raise Diverged(at, "loss" if size == 1 else f"loss of member {e}", value)
    return result


def _resolve(model, dtype) -> tuple[Any, list[torch.Tensor], int, bool]:
    """(subject handed to loss_fn, trained parameters, E, stacked)."""
    if isinstance(model, nn.Module):
        if dtype is not None:
            model.to(dtype)
        params = [p for p in model.parameters() if p.requires_grad]
        size = getattr(model, "size", None)
        stacked = size is not None
        if stacked:
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise TypeError(f"an ensemble's size must be an int >= 1, got {size!r}")
            bad = [tuple(p.shape) for p in params if p.ndim == 0 or p.shape[0] != size]
            if bad:
                raise ValueError(
                    f"every parameter of an ensemble of size {size} must have leading "
                    f"dimension {size}, got shapes {bad}"
                )
        else:
            size = 1
        if not params:
            raise ValueError("nothing to train: the model has no parameters requiring grad")
        return model, params, size, stacked
    params = list(model)
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor) or not p.is_leaf or not p.requires_grad:
            raise TypeError(f"params[{i}] must be a leaf tensor with requires_grad=True")
        if dtype is not None and p.dtype != dtype:
            p.data = p.data.to(dtype)
    if not params:
        raise ValueError("nothing to train: the model has no parameters requiring grad")
    return params, params, 1, False


def _check_args(optimizer, steps, data, batch_size, batches, l2_params, on_diverge, stacked):
    if isinstance(optimizer, str):
        if optimizer not in METHODS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; expected one of {METHODS} or a callable "
                "params -> torch.optim.Optimizer"
            )
    elif not callable(optimizer):
        raise TypeError(
            f"optimizer must be a name in {METHODS} or a callable params -> optimizer, got "
            f"{type(optimizer).__name__}"
        )
    if stacked and optimizer in ("lbfgs", "flow"):
        raise ValueError(
            f"optimizer={optimizer!r} has no batched form: it runs per member (L-BFGS runs per "
            "member): train each member (ensemble.member(e)) as a single model"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if optimizer == "sgd" and (data is None or batch_size is None):
        raise ValueError("optimizer='sgd' needs data= and batch_size=; use 'gd' for full batch")
    if optimizer in ("gd", "lbfgs", "flow") and batch_size is not None:
        raise ValueError(f"optimizer={optimizer!r} is full-batch; got batch_size={batch_size}")
    if batch_size is not None and data is None:
        raise ValueError(f"batch_size={batch_size} needs data= to draw the batches from")
    if batches not in ("per_member", "shared"):
        raise ValueError(f"batches must be 'per_member' or 'shared', got {batches!r}")
    if l2_params not in ("weights", "all"):
        raise ValueError(f"l2_params must be 'weights' or 'all', got {l2_params!r}")
    if on_diverge not in ("raise", "stop"):
        raise ValueError(f"on_diverge must be 'raise' or 'stop', got {on_diverge!r}")


def _rates(value, size: int, stacked: bool, what: str, optimizer):
    """``lr`` / ``l2``: a float for a single model, an (E,) float64 tensor for an ensemble."""
    if what == "lr" and callable(optimizer) and not isinstance(optimizer, str):
        if value is not None:
            raise ValueError(
                f"lr={value!r} with an optimizer factory: the factory sets the learning rate"
            )
        return None
    if what == "lr" and value is None:
        raise ValueError(f"lr is required for optimizer={optimizer!r}")
    if stacked:
        return check_lr_vector(value, size, what)
    low = 0 if what == "l2" else None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (value >= 0 if low == 0 else value > 0)
        or not value < math.inf
    ):
        kind = ">= 0" if what == "l2" else "> 0"
        raise ValueError(f"{what} must be a finite float {kind}, got {value!r}")
    return float(value) if what == "l2" else value


def _batches(data, batch_size, batches, generator, sampling, size, stacked) -> Callable:
    """``next_batch()``: the whole data, one batch (B, ...) or per-member batches (E, B, ...)."""
    if batch_size is None:
        return lambda: data
    n = data[0].shape[0]
    if not stacked:
        sampler = BatchSampler(n, batch_size, generator=generator, sampling=sampling)
        return lambda: take(data, sampler.next())
    if batches == "shared":
        if not isinstance(generator, torch.Generator):
            raise TypeError("batches='shared' needs generator= one torch.Generator")
        sampler = BatchSampler(n, batch_size, generator=generator, sampling=sampling)
        return lambda: take(data, sampler.next())
    gens = list(generator) if isinstance(generator, Sequence) else []
    if len(gens) != size:
        raise TypeError(f"batches='per_member' needs generator= a list of {size} torch.Generator")
    samplers = [BatchSampler(n, batch_size, generator=g, sampling=sampling) for g in gens]
    if size == 1:
        return lambda: take(data, samplers[0].next())
    return lambda: take(data, torch.stack([s.next() for s in samplers]))


def _logs(log, size: int, stacked: bool) -> list[RecordLog]:
    if log is None:
        return [RecordLog() for _ in range(size)]
    logs = [log] if isinstance(log, RecordLog) else list(log)
    if len(logs) != size or not all(isinstance(g, RecordLog) for g in logs):
        raise TypeError(
            f"log must be one RecordLog per member ({size}), got {type(log).__name__} "
            f"of {len(logs)}"
        )
    return logs
