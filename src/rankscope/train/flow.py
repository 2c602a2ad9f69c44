"""Exact gradient flow θ̇ = −∇_θ L(θ) for small models, integrated by ``scipy.integrate.solve_ivp``.

Finite-step GD is not gradient flow: it breaks the conserved balancedness D_ℓ by O(η²) a step
and, near rank-deficient points, can jump across det = 0 (papers/linear.md, `mc-not-norms`
pitfalls). This integrator takes the gradient from torch autograd in float64 and hands it to
an adaptive ODE solver (LSODA by default, rtol 1e-10, atol 1e-14), with

- a terminal event at L(θ) ≤ ``stop_at_loss``;
- optional non-terminal ``loss_levels``: the exact time and state at which L first crosses
  each level from above (checkpoints such as ℓ = 1e-1, 1e-2, …);
- user ``events(t, params) -> float`` with scipy's ``terminal``/``direction`` attributes.

Time is the flow's own time; it compares with GD as t = steps·η.

>>> import math, torch
>>> x0 = torch.tensor([2.0])
>>> sol = gradient_flow(x0, lambda x: 0.5 * 3.0 * (x**2).sum(), (0.0, 1.0), t_eval=[1.0])
>>> abs(float(sol.params()[0]) - 2.0 * math.exp(-3.0)) < 1e-8  # x' = -3x
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rankscope.train.errors import Diverged

__all__ = ["FlowSolution", "gradient_flow"]

Params = torch.Tensor | list[torch.Tensor]


class _Packing:
    """Flattens a tensor or a list of tensors to one float64 vector and back."""

    def __init__(self, params: torch.Tensor | Sequence[torch.Tensor]) -> None:
        if isinstance(params, torch.Tensor):
            self.single = True
            tensors = [params]
        elif (
            isinstance(params, list | tuple)
            and params
            and all(isinstance(p, torch.Tensor) for p in params)
        ):
            self.single = False
            tensors = list(params)
        else:
            raise TypeError(
                "params must be a tensor or a non-empty list/tuple of tensors, got "
                f"{type(params).__name__}"
            )
        for p in tensors:
            if not (p.is_floating_point() and torch.isfinite(p).all()):
                raise ValueError(f"params must be finite floating tensors, got {p.dtype} {p.shape}")
        self.shapes = [tuple(p.shape) for p in tensors]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.y0 = np.concatenate([p.detach().cpu().double().reshape(-1).numpy() for p in tensors])

    def unflatten(self, y: np.ndarray | torch.Tensor) -> Params:
        vec = torch.as_tensor(y, dtype=torch.float64)
        parts = [c.reshape(s) for c, s in zip(vec.split(self.sizes), self.shapes)]
        return parts[0] if self.single else parts


@dataclass(frozen=True)
class FlowSolution:
    """A gradient-flow trajectory.

    ``t`` (T,) output times (every solver step unless ``t_eval`` was given), ``y`` (T, P) the
    flat parameters, ``loss`` (T,). ``stopped``: the ``stop_at_loss`` event fired (then the last
    row is the state at that event). ``level_t`` / ``level_y``: time and flat state at which the
    loss first fell to each of ``loss_levels`` (NaN / None when not reached). ``t_events`` and
    ``y_events`` hold the user events, in order. ``sol`` is the dense interpolant when asked for.
    """

    t: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    stopped: bool
    status: int
    message: str
    nfev: int
    loss_levels: tuple[float, ...] = ()
    level_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    level_y: tuple[np.ndarray | None, ...] = ()
    t_events: tuple[np.ndarray, ...] = ()
    y_events: tuple[np.ndarray, ...] = ()
    sol: Any = None
    packing: _Packing | None = None

    def params(self, i: int = -1) -> Params:
        """Parameters at output row ``i`` (float64), with the structure that went in."""
        return self.packing.unflatten(self.y[i])

    def params_at_level(self, level: float) -> Params | None:
        """Parameters where the loss first reached ``level`` (one of ``loss_levels``)."""
        if level not in self.loss_levels:
            raise KeyError(f"loss level {level!r} was not requested; have {self.loss_levels}")
        y = self.level_y[self.loss_levels.index(level)]
        return None if y is None else self.packing.unflatten(y)


def _loss_and_grad(loss_fn: Callable, packing: _Packing, y: np.ndarray) -> tuple[float, np.ndarray]:
    theta = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    params = packing.unflatten(theta)
    loss = loss_fn(params)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
    (grad,) = torch.autograd.grad(loss.reshape(()), theta)
    return float(loss.detach()), grad.numpy()


def _loss_value(loss_fn: Callable, packing: _Packing, y: np.ndarray) -> float:
    with torch.no_grad():
        return float(loss_fn(packing.unflatten(y)))


class _LossMemo:
    """The loss at the last state asked for: scipy calls every event on the same state."""

    def __init__(self, loss_fn: Callable, packing: _Packing) -> None:
        self.loss_fn, self.packing = loss_fn, packing
        self.key: bytes | None = None
        self.value = math.nan

    def __call__(self, y: np.ndarray) -> float:
        key = np.ascontiguousarray(y).tobytes()
        if key != self.key:
            self.key, self.value = key, _loss_value(self.loss_fn, self.packing, y)
        return self.value


def _make_events(loss_fn, packing, events, loss_levels, stop_at_loss) -> list[Callable]:
    out: list[Callable] = []
    memo = _LossMemo(loss_fn, packing)
    for ev in events:
        if not callable(ev):
            raise TypeError(f"events must be callables event(t, params) -> float, got {ev!r}")

        def wrapped(t, y, ev=ev):
            with torch.no_grad():
                return float(ev(t, packing.unflatten(y)))

        wrapped.terminal = getattr(ev, "terminal", False)
        wrapped.direction = getattr(ev, "direction", 0)
        out.append(wrapped)
    thresholds = [*loss_levels, *([] if stop_at_loss is None else [stop_at_loss])]
    for k, level in enumerate(thresholds):

        def crossing(t, y, level=level):
            return memo(y) - level

        crossing.terminal = stop_at_loss is not None and k == len(thresholds) - 1
        crossing.direction = -1
        out.append(crossing)
    return out


def _check_levels(loss_levels, stop_at_loss) -> tuple[float, ...]:
    levels = tuple(float(v) for v in loss_levels)
    if any(not math.isfinite(v) for v in levels):
        raise ValueError(f"loss_levels must be finite numbers, got {loss_levels!r}")
    if stop_at_loss is not None and not math.isfinite(float(stop_at_loss)):
        raise ValueError(f"stop_at_loss must be a finite number or None, got {stop_at_loss!r}")
    return levels


def gradient_flow(
    params: torch.Tensor | Sequence[torch.Tensor],
    loss_fn: Callable[[Params], torch.Tensor],
    t_span: tuple[float, float],
    *,
    method: str = "LSODA",
    rtol: float = 1e-10,
    atol: float = 1e-14,
    stop_at_loss: float | None = None,
    loss_levels: Sequence[float] = (),
    events: Sequence[Callable] = (),
    t_eval: Sequence[float] | np.ndarray | None = None,
    dense_output: bool = False,
    max_step: float = math.inf,
    first_step: float | None = None,
) -> FlowSolution:
    """Integrate θ̇ = −∇L(θ) from ``params`` over ``t_span`` with ``solve_ivp``.

    ``params``: a tensor or a list of tensors (copied, float64); ``loss_fn`` receives the same
    structure and returns a scalar tensor (it may include a penalty such as λ‖θ‖²). ``method``,
    ``rtol``, ``atol``, ``t_eval``, ``dense_output``, ``max_step``, ``first_step`` go to
    ``solve_ivp``. A NaN/Inf gradient raises :class:`Diverged` (``step`` = gradient calls).
    """
    packing = _Packing(params)
    levels = _check_levels(loss_levels, stop_at_loss)
    t0, t1 = (float(t_span[0]), float(t_span[1]))
    if not t1 > t0:
        raise ValueError(f"t_span must be (t0, t1) with t1 > t0, got {t_span!r}")
    calls = [0]

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        calls[0] += 1
        loss, grad = _loss_and_grad(loss_fn, packing, y)
        if not (math.isfinite(loss) and np.isfinite(grad).all()):
            raise Diverged(calls[0], what=f"gradient-flow loss at t={t:.6g}", value=loss)
        return -grad

    from scipy.integrate import solve_ivp

    ev = _make_events(loss_fn, packing, list(events), levels, stop_at_loss)
    kwargs: dict[str, Any] = {"max_step": max_step}
    if first_step is not None:
        kwargs["first_step"] = first_step
    sol = solve_ivp(
        rhs,
        (t0, t1),
        packing.y0,
        method=method,
        rtol=rtol,
        atol=atol,
        events=ev or None,
        t_eval=None if t_eval is None else np.asarray(t_eval, dtype=float),
        dense_output=dense_output,
        **kwargs,
    )
    if sol.status < 0:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    y = sol.y.T.copy()  # (T, P)
    t_ev = tuple(sol.t_events) if ev else ()
    y_ev = tuple(sol.y_events) if ev else ()
    n_user = len(events)
    lev_t = np.array([te[0] if te.size else np.nan for te in t_ev[n_user : n_user + len(levels)]])
    lev_y = tuple(ye[0].copy() if ye.size else None for ye in y_ev[n_user : n_user + len(levels)])
    stopped = stop_at_loss is not None and bool(t_ev[-1].size)
    if stopped and (sol.t.size == 0 or sol.t[-1] < t_ev[-1][0]):
        y = np.vstack([y, y_ev[-1][:1]])
        times = np.append(sol.t, t_ev[-1][0])
    else:
        times = sol.t.copy()
    loss = np.array([_loss_value(loss_fn, packing, row) for row in y])
    return FlowSolution(
        t=times,
        y=y,
        loss=loss,
        stopped=stopped,
        status=int(sol.status),
        message=sol.message,
        nfev=calls[0],
        loss_levels=levels,
        level_t=lev_t,
        level_y=lev_y,
        t_events=t_ev[:n_user],
        y_events=y_ev[:n_user],
        sol=sol.sol,
        packing=packing,
    )
