"""The update rules of the engine: how one visit's objective moves the parameters.

Every method has the same three parts, which :func:`rankscope.train.train` calls in order:

- ``visits(steps, log_steps, every_step)`` — the steps at which the loop looks at the model
  (every step for the discrete methods; the logging steps for the exact flow);
- ``losses(batch, logging)`` — J (E,) and its data part at the current parameters (with the
  graph the update needs), or ``(None, None)`` where the method evaluates its own (L-BFGS off
  the logging steps);
- ``advance(losses, batch, active, span)`` — the update(s) from ``span[0]`` to ``span[1]``;
  returns the objective it evaluated on the way when the loop has not seen it (L-BFGS), else
  None.

Methods: ``"gd"``/``"sgd"`` (θ ← θ − η∇J), ``"adam"``, ``"lbfgs"`` (one strong-Wolfe
``LBFGS.step`` per step, a single model only), a callable ``params -> torch optimizer`` (any
``torch.optim.Optimizer``, e.g. :class:`~rankscope.train.GroupRMSprop`), and ``"flow"``
(:mod:`rankscope.train.flow`). A single model uses torch's SGD / Adam; a stacked ensemble
uses :mod:`rankscope.train.batched_optim` (per-member learning rates, frozen members keep
their parameters and optimizer state). With a custom optimizer on an ensemble, frozen
members get zero gradients (a stateful optimizer may still move them).
"""

from __future__ import annotations

import torch

from rankscope.train.batched_optim import BatchedAdam, BatchedGD

__all__ = ["LBFGS", "LBFGS_DEFAULTS", "METHODS", "Discrete", "make_method"]

METHODS = ("gd", "sgd", "adam", "lbfgs", "flow")
LBFGS_DEFAULTS = {
    "max_iter": 20,
    "history_size": 100,
    "tolerance_grad": 1e-10,
    "tolerance_change": 1e-14,
    "line_search_fn": "strong_wolfe",
}


class _Method:
    optimizer = None  # what callbacks see as state.optimizer
    halted = False  # the method ended the run itself (a terminal flow event)

    def visits(self, steps: int, log_steps, every_step: bool) -> range:
        return range(steps + 1)

    def finish(self, batch) -> dict:
        """Extra fields of the result (the flow's trajectory); none for a discrete method."""
        return {}


class Discrete(_Method):
    """A gradient step per step: autograd (or the loss's own gradients), then ``opt.step``."""

    def __init__(self, objective, optimizer, *, batched: bool) -> None:
        self.objective, self.optimizer, self.batched = objective, optimizer, batched
        self.params = objective.params
        self._grads: list[torch.Tensor] | None = None

    def losses(self, batch, logging: bool):
        for p in self.params:
            p.grad = None
        if self.objective.closed_form:
            losses, data_losses, self._grads = self.objective.with_grads(batch)
            return losses, data_losses
        return self.objective(batch)

    def advance(self, losses, batch, active: torch.Tensor | None, span) -> None:
        """``active`` None when every member trains (fast path), else the (E,) mask."""
        if self._grads is not None:  # the optimizer masks frozen members' gradients
            for p, g in zip(self.params, self._grads):
                p.grad = g
        elif active is None:
            losses.sum().backward()
        else:  # frozen members: their NaN losses must not reach the sum
            torch.where(active.to(losses.device), losses, 0.0).sum().backward()
        if self.batched:
            self.optimizer.step(active)
        else:
            self.optimizer.step()
        return None


class LBFGS(_Method):
    """``torch.optim.LBFGS`` (strong Wolfe): it evaluates its own losses, so the loop's
    objective is computed only at logging steps; one step = one ``LBFGS.step``."""

    def __init__(self, objective, optimizer: torch.optim.LBFGS) -> None:
        self.objective, self.optimizer = objective, optimizer

    def losses(self, batch, logging: bool):
        if not logging:
            return None, None
        with torch.no_grad():
            return self.objective(batch)

    def advance(self, losses, batch, active, span) -> torch.Tensor:
        """One ``LBFGS.step``; returns the objective at the parameters it started from."""
        opt, objective = self.optimizer, self.objective

        def closure():
            opt.zero_grad(set_to_none=True)
            loss, _ = objective(batch)
            loss.sum().backward()
            return loss.sum()

        return opt.step(closure).detach().reshape(1)


def _torch_optimizer(name: str, params, lr: float, opts: dict):
    if name in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr, **opts)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, **opts)
    return torch.optim.LBFGS(params, lr=lr, **{**LBFGS_DEFAULTS, **opts})


def make_method(
    optimizer, objective, lr, options: dict | None, *, stacked: bool, step_offset: int = 0
):
    """The method for ``optimizer`` (name or factory) over ``objective.params``.

    ``lr``: a float for a single model, an (E,) float64 tensor for a stacked ensemble (None
    for a factory, which sets its own).
    """
    opts = dict(options or {})
    if "weight_decay" in opts:
        raise ValueError(
            "optimizer_options must not set weight_decay: pass l2= (penalty l2·Σ‖W‖² added to "
            "the loss; torch's weight_decay=λ' equals l2=λ'/2, definitions §0)"
        )
    params = objective.params
    if callable(optimizer):
        if opts:
            raise ValueError(
                "optimizer_options apply to a named optimizer; a factory sets its own options, "
                f"got {sorted(opts)}"
            )
        opt = optimizer(params)
        if not callable(getattr(opt, "step", None)):
            raise TypeError(
                f"optimizer factory must return an optimizer with .step(), got {type(opt).__name__}"
            )
        return Discrete(objective, opt, batched=False)
    if optimizer == "flow":
        from rankscope.train.flow import Flow

        return Flow(objective, lr, opts, step_offset=step_offset)
    if optimizer == "lbfgs":
        return LBFGS(objective, _torch_optimizer("lbfgs", params, lr, opts))
    if not stacked:
        return Discrete(objective, _torch_optimizer(optimizer, params, lr, opts), batched=False)
    if optimizer == "adam":
        return Discrete(objective, BatchedAdam(params, lr, **opts), batched=True)
    if opts:
        raise ValueError(
            f"optimizer={optimizer!r} on a stacked ensemble takes no optimizer_options (plain "
            f"per-member GD), got {sorted(opts)}"
        )
    return Discrete(objective, BatchedGD(params, lr), batched=True)
