"""Tensor completion by a factorization model trained with GroupRMSprop (full batch, MSE).

Shared by ``tensor-factorization`` (CP) and ``htf-locality`` (HT). Training goes through
:func:`rankscope.train.train`: one full-batch step per iteration; the engine's ``stop`` hook
sees every step's (M,) losses, logs every ``log_every`` steps and freezes a member once its
observed MSE is below ``stop_loss`` (or at ``max_steps``). Several init scales train as one
ensemble (``members``), which is exact: members share no parameters and GroupRMSprop keeps one
second moment per member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rankscope.train import GroupRMSprop, train

__all__ = [
    "CompletionFit",
    "MemberStack",
    "error_floor",
    "fit_completion",
    "fit_tracking_norms",
    "observed_split",
    "order_step",
    "rise_steps",
]


@dataclass(frozen=True)
class CompletionFit:
    steps: int
    final_loss: float
    rel_error_unobserved: float


def observed_split(numel: int, n_observed: int, generator: torch.Generator):
    """(observed, unobserved) flat indices: a uniformly random subset of size ``n_observed``."""
    if not 0 < n_observed < numel:
        raise ValueError(f"n_observed must be in (0, {numel}), got {n_observed}")
    perm = torch.randperm(numel, generator=generator)
    return perm[:n_observed], perm[n_observed:]


class MemberStack(nn.Module):
    """A factorization with ``members`` = M stacked models, seen by the engine as an ensemble
    of M (``size``): every parameter has the member dimension first."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        members = getattr(model, "members", None)
        if members is None:
            raise ValueError("fit_completion needs a model built with members=M (M >= 1)")
        self.model, self.size = model, int(members)


def fit_completion(
    model: nn.Module,
    target: torch.Tensor,
    observed: torch.Tensor,
    unobserved: torch.Tensor,
    *,
    lr: float,
    max_steps: int,
    stop_loss: float,
    log_every: int,
    on_log: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None],
) -> list[CompletionFit]:
    """Fit ``model`` (index tuples -> entries) to ``target`` on ``observed`` flat indices.

    ``model.members`` (M) ensemble members train at once through :func:`rankscope.train.train`,
    each with its own GroupRMSprop second moment and its own stop: a member freezes (zero
    gradient) once its loss is below ``stop_loss``. ``on_log(step, losses (M,), errors (M,),
    live (M,) bool)`` is called at step 0, every ``log_every`` steps and at each member's last
    step; ``live`` marks the members whose values are current. A NaN/Inf loss raises
    :class:`~rankscope.train.errors.Diverged`.
    """
    stack = MemberStack(model)
    shape, m = target.shape, stack.size
    idx = torch.stack(torch.unravel_index(observed, shape), -1)  # (|Ω|, N)
    y = target.reshape(-1)[observed]
    un_idx = torch.stack(torch.unravel_index(unobserved, shape), -1)
    y_un = target.reshape(-1)[unobserved]

    def unobserved_error() -> torch.Tensor:
        with torch.no_grad():
            return (model(un_idx).reshape(m, -1) - y_un).norm(dim=-1) / y_un.norm()

    def losses(s: MemberStack) -> torch.Tensor:
        return ((s.model(idx).reshape(m, -1) - y) ** 2).mean(-1)  # (M,)

    fits: list[CompletionFit | None] = [None] * m
    live = torch.ones(m, dtype=torch.bool)  # the engine's active mask, mirrored

    def observe(step: int, values: torch.Tensor) -> torch.Tensor:
        """Which members are done (they freeze); log at the schedule and at a member's end."""
        done = live & ((values < stop_loss) | (step == max_steps))
        if step % log_every == 0 or bool(done.any()):
            errors = unobserved_error()
            on_log(step, values, errors, live.clone())
            for k in torch.nonzero(done).ravel().tolist():
                fits[k] = CompletionFit(step, float(values[k]), float(errors[k]))
        live.logical_and_(~done)
        return done

    # Every step before the last goes through ``stop`` (it sees the (M,) objectives and keeps
    # no per-step state in the engine); the last step through a callback at ``max_steps``.
    train(
        stack,
        losses,
        optimizer=lambda params: GroupRMSprop(params, lr=lr, members=m),
        steps=max_steps,
        log_at=[max_steps],
        callbacks=[lambda state: observe(state.step, state.losses)],
        stop=observe,
    )
    return fits  # type: ignore[return-value]


def fit_tracking_norms(
    model: nn.Module,
    target: torch.Tensor,
    observed: torch.Tensor,
    unobserved: torch.Tensor,
    cfg,
    ctx,
    labels: list[str],
    *,
    norm_name: str,
    component_norms: Callable[[], torch.Tensor],
    progress_share: float,
    extra_log: Callable[[int, int], None] | None = None,
) -> tuple[list[CompletionFit], list[np.ndarray], list[np.ndarray]]:
    """:func:`fit_completion` with every member's component norms tracked and logged.

    ``component_norms()`` -> (M, R) is logged as the vector ``norm_name``, with ``train_loss``
    and ``unobserved_error``, under each member's label; ``extra_log(step, k)`` may log more.
    ``cfg`` supplies lr, max_steps, stop_loss and log_every. Returns the fits and, per member,
    the logged steps (S,) and norms (S, R).
    """
    steps: list[list[int]] = [[] for _ in labels]
    norms: list[list[np.ndarray]] = [[] for _ in labels]

    def on_log(step: int, losses, errors, live) -> None:
        nrm = component_norms()
        for k in torch.nonzero(live).ravel().tolist():
            steps[k].append(step)
            norms[k].append(nrm[k].numpy())
            ctx.log.log_vector(norm_name, nrm[k], step=step, layer=labels[k])
            ctx.log.log("train_loss", losses[k], step=step, layer=labels[k])
            ctx.log.log("unobserved_error", errors[k], step=step, layer=labels[k])
            if extra_log is not None:
                extra_log(step, k)
        ctx.progress(progress_share * step / cfg.max_steps)

    fits = fit_completion(
        model,
        target,
        observed,
        unobserved,
        lr=cfg.lr,
        max_steps=cfg.max_steps,
        stop_loss=cfg.stop_loss,
        log_every=cfg.log_every,
        on_log=on_log,
    )
    return fits, [np.array(s) for s in steps], [np.stack(n) for n in norms]


def rise_steps(steps: np.ndarray, norms: np.ndarray, top: int) -> list[int]:
    """First logged step at which each of the ``top`` largest final norms exceeds ½ its final value.

    ``norms``: (n_steps, R) logged at ``steps``; components are ordered by final norm, largest
    first (docs/results.md, "Rise step").
    """
    final = norms[-1]
    order = np.argsort(-final, kind="stable")[:top]
    out = []
    for r in order:
        above = np.flatnonzero(norms[:, r] > 0.5 * final[r])
        out.append(int(steps[above[0]]) if above.size else -1)
    return out


def error_floor(final_loss: float, observed_rms: float) -> float:
    """The relative error a completion run is resolved to: √(final observed MSE) / RMS(y_Ω).

    GroupRMSprop at a fixed lr takes steps of length ≈ lr in parameter space, so it does not
    converge below some residual on the entries it fits (or it stops at ``stop_loss``); the
    unobserved error of that run is known only to about the same relative size. Two runs'
    unobserved errors that differ by less than the larger of their floors are a tie
    (docs/decisions.md, 9.tensor-1).

    >>> error_floor(1e-6, 1.0)
    0.001
    """
    if not observed_rms > 0:
        raise ValueError(f"observed_rms must be > 0, got {observed_rms}")
    return float(np.sqrt(max(float(final_loss), 0.0))) / float(observed_rms)


def order_step(a: float, b: float, floor_a: float, floor_b: float) -> str:
    """``"up"`` if b − a exceeds the larger floor, ``"down"`` if a − b does, else ``"tie"``.

    >>> order_step(0.001, 0.1, 0.002, 0.002), order_step(0.002, 0.001, 0.002, 0.002)
    ('up', 'tie')
    """
    tol = max(floor_a, floor_b)
    if not (np.isfinite(a) and np.isfinite(b)):
        return "down"  # a diverged or missing error never counts as resolved order
    if b - a > tol:
        return "up"
    if a - b > tol:
        return "down"
    return "tie"
