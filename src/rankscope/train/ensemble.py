"""Vectorized ensembles: E same-shaped networks trained as one batched computation.

Members may differ in init scale and seed (see :mod:`rankscope.train.ensemble_models`),
learning rate (``lr`` vector) and L2 penalty (``l2`` vector). The objective of member e is

    J_e(θ_e) = loss_fn(ensemble, batch)[e] + l2_e · Σ_{W ∈ penalized} ‖W_e‖_F²

exactly as :func:`rankscope.train.train` defines it (definitions §0; ``l2_params`` as there).
``loss_fn`` returns the per-member data losses, shape (E,); the losses in
:mod:`rankscope.train.losses` reduce the sample dimension and keep E. Summing the J_e and
back-propagating once gives every member its own gradient, because members share nothing.

Minibatches (``optimizer="sgd"``, or ``"adam"`` with ``batch_size``):
- ``batches="per_member"`` (default): member e draws its batches from ``generators[e]``
  exactly as ``train(..., generator=generators[e])`` would; batch tensors are (E, B, ...).
- ``batches="shared"``: one ``generator`` draws one batch (B, ...) for all members, as if
  every independent run used an identically seeded batch generator.

Autograd-free steps: with ``loss_fn`` a :class:`~rankscope.train.losses.SupervisedLoss`
(``SupervisedLoss("mse")`` or ``("cross_entropy")``, called on ``data=(x, y)``) and a
:class:`DeepLinearEnsemble` or ReLU :class:`MLPEnsemble` whose parameters all train, the
gradient is computed by hand with bmm chains (``loss_and_grads``) and no graph is built. The
steps equal the autograd path's to the bit (tests/train/test_ensemble_closed_form.py). Measured
here (depth 4, full-batch GD, N = 64): 1.2-1.6x faster per step at width 10, 1.2-1.3x at
width 50; MLP 64-64-64-64-10, 8 members, SGD batch 32: 1.4x; full-batch Adam on N = 1797:
no gain (that step is bound by bmm and memory traffic, not by autograd).

A member whose loss turns NaN/Inf is frozen (parameters and optimizer state kept), marked
``"diverged"`` with the step, and left out of later callbacks; the others go on. L-BFGS has
no batched form here: train those members one by one with :func:`rankscope.train.train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rankscope.records import RecordLog
from rankscope.train.batch_plan import ensemble_speedup, prefer_ensemble
from rankscope.train.batched_optim import BatchedAdam, BatchedGD, check_lr_vector
from rankscope.train.batches import BatchSampler, as_data, take
from rankscope.train.ensemble_models import DeepLinearEnsemble, MLPEnsemble
from rankscope.train.loop import TrainResult
from rankscope.train.schedule import resolve_log_at

__all__ = [
    "DeepLinearEnsemble",
    "EnsembleResult",
    "EnsembleState",
    "MLPEnsemble",
    "ensemble_speedup",
    "prefer_ensemble",
    "train_ensemble",
]

_ENSEMBLE_OPTIMIZERS = ("gd", "sgd", "adam")


@dataclass
class EnsembleState:
    """What a callback sees at a logging step. ``active`` (E,) marks members still training;
    ``logs[e]`` is member e's record log (callbacks write only for active members)."""

    step: int
    losses: torch.Tensor  # (E,) objective J_e, NaN for frozen members
    data_losses: torch.Tensor  # (E,)
    model: nn.Module
    params: list[torch.Tensor]
    active: torch.Tensor  # (E,) bool
    logs: list[RecordLog]

    def members(self) -> list[int]:
        """Indices of the active members."""
        return torch.nonzero(self.active).flatten().tolist()


@dataclass
class EnsembleResult:
    """Outcome of :func:`train_ensemble`; :meth:`member` gives member e as a TrainResult."""

    status: list[str]  # per member: "completed" | "diverged" | "stopped"
    diverged_step: list[int | None]
    stopped_step: list[int | None]
    steps: int
    final_losses: np.ndarray  # (E,) last finite objective per member
    history: dict[str, np.ndarray]  # step (T,), loss (T, E), data_loss (T, E)
    logs: list[RecordLog]
    wall_time: float = 0.0
    step_offset: int = 0  # reported steps = step_offset + steps counted in this call

    def member(self, e: int) -> TrainResult:
        keep = ~np.isnan(self.history["loss"][:, e])
        hist = {
            "step": self.history["step"][keep],
            "loss": self.history["loss"][keep, e],
            "data_loss": self.history["data_loss"][keep, e],
        }
        end = self.diverged_step[e] if self.diverged_step[e] is not None else self.stopped_step[e]
        return TrainResult(
            status=self.status[e],
            steps=self.steps if end is None else end - self.step_offset,
            final_loss=float(self.final_losses[e]),
            history=hist,
            log=self.logs[e],
            diverged_step=self.diverged_step[e],
            wall_time=self.wall_time,
        )


def _check(ensemble, optimizer, steps, data, batch_size, batches, l2_params):
    if not hasattr(ensemble, "weights") or not hasattr(ensemble, "size"):
        raise TypeError(
            f"ensemble must be a DeepLinearEnsemble or MLPEnsemble, got {type(ensemble).__name__}"
        )
    if optimizer not in _ENSEMBLE_OPTIMIZERS:
        hint = (
            " (L-BFGS runs per member: use rankscope.train.train)" if optimizer == "lbfgs" else ""
        )
        raise ValueError(
            f"unknown optimizer {optimizer!r}; expected one of {_ENSEMBLE_OPTIMIZERS}{hint}"
        )
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if optimizer == "sgd" and (data is None or batch_size is None):
        raise ValueError("optimizer='sgd' needs data= and batch_size=; use 'gd' for full batch")
    if optimizer == "gd" and batch_size is not None:
        raise ValueError(f"optimizer='gd' is full-batch; got batch_size={batch_size}")
    if batches not in ("per_member", "shared"):
        raise ValueError(f"batches must be 'per_member' or 'shared', got {batches!r}")
    if l2_params not in ("weights", "all"):
        raise ValueError(f"l2_params must be 'weights' or 'all', got {l2_params!r}")


def _samplers(data, batch_size, batches, generators, sampling, size):
    if batch_size is None:
        return None
    n = data[0].shape[0]
    if batches == "shared":
        if not isinstance(generators, torch.Generator):
            raise TypeError("batches='shared' needs generators=one torch.Generator")
        return [BatchSampler(n, batch_size, generator=generators, sampling=sampling)]
    gens = list(generators) if isinstance(generators, Sequence) else []
    if len(gens) != size:
        raise TypeError(f"batches='per_member' needs generators= a list of {size} torch.Generator")
    return [BatchSampler(n, batch_size, generator=g, sampling=sampling) for g in gens]


def _next_batch(data, samplers):
    if samplers is None:
        return data
    if len(samplers) == 1:
        return take(data, samplers[0].next())  # (B, ...)
    return take(data, torch.stack([s.next() for s in samplers]))  # (E, B, ...)


def train_ensemble(
    ensemble: DeepLinearEnsemble | MLPEnsemble | nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    *,
    optimizer: str = "gd",
    lr,
    steps: int,
    data: Any = None,
    batch_size: int | None = None,
    sampling: str = "shuffle",
    batches: str = "per_member",
    l2=0.0,
    l2_params: str = "weights",
    generators: Sequence[torch.Generator] | torch.Generator | None = None,
    log_at: int | Iterable[int] | None = None,
    callbacks: Sequence[Callable[[EnsembleState], Any]] = (),
    logs: Sequence[RecordLog] | None = None,
    dtype: torch.dtype | None = None,
    optimizer_options: dict | None = None,
    stop: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    step_offset: int = 0,
) -> EnsembleResult:
    """Train every member in place (module docstring). ``lr`` and ``l2``: one float or E.

    ``loss_fn(ensemble)`` or ``loss_fn(ensemble, batch)`` -> (E,). ``stop(step, losses)``
    -> (E,) bool freezes members with status ``"stopped"``; a callback returning a (E,) bool
    tensor does the same, and ``True`` stops everyone. ``optimizer_options``: Adam's
    ``betas`` and ``eps``. ``step_offset`` shifts every reported step, as in ``train``.
    """
    _check(ensemble, optimizer, steps, data, batch_size, batches, l2_params)
    if dtype is not None:
        ensemble.to(dtype)
    size = ensemble.size
    params = [p for p in ensemble.parameters() if p.requires_grad]
    lr_vec = check_lr_vector(lr, size, "lr")
    opt = (
        BatchedAdam(params, lr_vec, **(optimizer_options or {}))
        if optimizer == "adam"
        else BatchedGD(params, lr_vec)
    )
    objective = _Objective(ensemble, loss_fn, check_lr_vector(l2, size, "l2"), l2_params)
    data = as_data(data, dtype)
    samplers = _samplers(data, batch_size, batches, generators, sampling, size)
    logs = [RecordLog() for _ in range(size)] if logs is None else list(logs)
    log_steps_ = resolve_log_at(log_at, steps)
    run = _Run(size, step_offset + steps)
    start = time.perf_counter()
    for step in range(steps + 1):
        batch = _next_batch(data, samplers)
        for p in params:
            p.grad = None
        if objective.closed_form:
            losses, data_losses, grads = objective.with_grads(batch)
        else:
            losses, data_losses = objective(batch)
        at = step_offset + step
        run.observe(at, losses.detach())
        if step in log_steps_:
            state = EnsembleState(at, run.masked(losses), run.masked(data_losses), ensemble,
                                  params, run.active.clone(), logs)  # fmt: skip
            run.record(at, state)
            for cb in callbacks:
                run.request_stop(at, cb(state))
        if stop is not None and step < steps:
            run.request_stop(at, stop(at, losses.detach()))
        if step == steps or run.n_active == 0:
            break
        if objective.closed_form:  # the optimizer masks frozen members' gradients
            for p, g in zip(params, grads):
                p.grad = g
            opt.step(None if run.all_active else run.active)
        elif run.all_active:
            losses.sum().backward()
            opt.step(None)
        else:  # frozen members: NaN losses must not reach the sum
            torch.where(run.active.to(losses.device), losses, 0.0).sum().backward()
            opt.step(run.active)
    return run.result(step, logs, time.perf_counter() - start, step_offset)


class _Objective:
    """J_e = loss_fn(ensemble[, batch])[e] + l2_e·Σ‖W_e‖_F², returned with the data part."""

    def __init__(self, ensemble, loss_fn, l2_vec: torch.Tensor, l2_params: str) -> None:
        params = [p for p in ensemble.parameters() if p.requires_grad]
        self.ensemble, self.loss_fn, self.size = ensemble, loss_fn, ensemble.size
        self._params = params
        self._penalized_at = [
            i for i, p in enumerate(params) if l2_params == "all" or p.ndim >= 3
        ]  # stacked weights are (E, m, n); biases (E, m)
        self.penalized = [params[i] for i in self._penalized_at]
        self.l2 = l2_vec.to(params[0].dtype).to(params[0].device)
        self.has_l2 = bool(l2_vec.any())
        # autograd-free steps: a SupervisedLoss on a model that back-propagates it by hand
        supports = getattr(ensemble, "supports_closed_form", None)
        self.closed_form = (
            supports is not None
            and supports(loss_fn)
            and len(params) == len(list(ensemble.parameters()))
        )

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        ens = self.ensemble
        data_loss = self.loss_fn(ens) if batch is None else self.loss_fn(ens, batch)
        if data_loss.shape != (self.size,):
            raise ValueError(
                f"ensemble loss_fn must return shape ({self.size},), got {tuple(data_loss.shape)}"
            )
        if not self.has_l2:
            return data_loss, data_loss
        sq = sum((p * p).flatten(1).sum(dim=1) for p in self.penalized)  # (E,)
        return data_loss + self.l2 * sq, data_loss

    @torch.no_grad()
    def with_grads(self, batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(J (E,), data loss (E,), ∂(Σ_e J_e)/∂θ per parameter) without autograd.

        The penalty's gradient is added as autograd adds it, d + (l2_e·p + l2_e·p) with the
        product rounded first (``addcmul_`` fuses it and differs in the last bit), so each
        member's step equals the autograd step to the bit.
        """
        data_loss, grads = self.ensemble.loss_and_grads(self.loss_fn, batch)
        if data_loss.shape != (self.size,):
            raise ValueError(
                f"ensemble loss must have shape ({self.size},), got {tuple(data_loss.shape)}"
            )
        if not self.has_l2:
            return data_loss, data_loss, grads
        sq = sum((p * p).flatten(1).sum(dim=1) for p in self.penalized)  # (E,)
        for i in self._penalized_at:
            p = self._params[i]
            grads[i].add_(self.l2.view(-1, *([1] * (p.ndim - 1))) * p, alpha=2.0)
        return data_loss + self.l2 * sq, data_loss, grads


class _Run:
    """Per-member bookkeeping: active mask, divergence/stop steps, loss history."""

    def __init__(self, size: int, steps: int) -> None:
        self.size, self.steps = size, steps
        self.active = torch.ones(size, dtype=torch.bool)
        self.n_active, self.all_active = size, True
        self.diverged: list[int | None] = [None] * size
        self.stopped: list[int | None] = [None] * size
        self.last: torch.Tensor | None = None  # last finite objective per member
        self.hist: dict[str, list] = {"step": [], "loss": [], "data_loss": []}

    def _freeze(self, mask: torch.Tensor, step: int, into: list) -> None:
        for e in torch.nonzero(mask & self.active).flatten().tolist():
            into[e] = step
        self.active &= ~mask
        self.n_active = int(self.active.sum())
        self.all_active = self.n_active == self.size

    def observe(self, step: int, losses: torch.Tensor) -> None:
        """Freeze members whose objective is NaN/Inf; one host sync when all are finite."""
        if not self.all_active or not bool(torch.isfinite(losses).all()):
            self._freeze(~torch.isfinite(losses).cpu(), step, self.diverged)
        if self.last is None:
            self.last = torch.full(
                (self.size,), torch.nan, dtype=losses.dtype, device=losses.device
            )
        keep = self.active.to(losses.device)
        self.last = losses if self.all_active else torch.where(keep, losses, self.last)

    def masked(self, t: torch.Tensor) -> torch.Tensor:
        return torch.where(self.active, t.detach().to(torch.float64).cpu(), torch.nan)

    def record(self, step: int, state: EnsembleState) -> None:
        self.hist["step"].append(step)
        self.hist["loss"].append(state.losses.numpy())
        self.hist["data_loss"].append(state.data_losses.numpy())

    def request_stop(self, step: int, req) -> None:
        if req is None or req is False:
            return
        mask = (
            torch.ones(self.size, dtype=torch.bool) if req is True else torch.as_tensor(req).cpu()
        )
        if mask.shape != (self.size,) or mask.dtype != torch.bool:
            raise ValueError(
                f"a stop request must be True or a bool tensor ({self.size},), got {req!r}"
            )
        if bool(mask.any()):
            self._freeze(mask, step, self.stopped)

    def result(self, step: int, logs, wall: float, offset: int) -> EnsembleResult:
        status = [
            "diverged"
            if d is not None
            else "stopped"
            if s is not None and s < self.steps
            else "completed"
            for d, s in zip(self.diverged, self.stopped)
        ]
        stopped = [s if s is not None and s < self.steps else None for s in self.stopped]
        h = self.hist
        t = len(h["step"])
        return EnsembleResult(
            status=status,
            diverged_step=self.diverged,
            stopped_step=stopped,
            steps=step,
            final_losses=self.last.to(torch.float64).cpu().numpy(),
            history={
                "step": np.asarray(h["step"], dtype=np.int64),
                "loss": np.asarray(h["loss"]).reshape(t, self.size),
                "data_loss": np.asarray(h["data_loss"]).reshape(t, self.size),
            },
            logs=logs,
            wall_time=wall,
            step_offset=offset,
        )
