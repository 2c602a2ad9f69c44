"""Exact gradient flow θ̇ = −∇_θ J(θ), the engine's ``optimizer="flow"``, by ``solve_ivp``.

Finite-step GD is not gradient flow: it breaks the conserved balancedness D_ℓ by O(η²) a step
and, near rank-deficient points, can jump across det = 0 (docs/results.md, `mc-not-norms`
pitfalls). This integrator takes the gradient from torch autograd in float64 and hands it to
an adaptive ODE solver (LSODA by default, rtol 1e-10, atol 1e-14), with

- a terminal event at L(θ) ≤ ``stop_at_loss``;
- optional non-terminal ``loss_levels``: the exact time and state at which L first crosses
  each level from above (checkpoints such as ℓ = 1e-1, 1e-2, …);
- user ``events(t, params) -> float`` with scipy's ``terminal``/``direction`` attributes.

Time is the flow's own time; in :func:`rankscope.train.train` step s is t = s·lr, so it
compares with GD of step size lr at the same steps. :func:`gradient_flow` is the front with a
time span: one step of length t1 − t0.

>>> import math, torch
>>> x0 = torch.tensor([2.0])
>>> sol = gradient_flow(x0, lambda x: 0.5 * 3.0 * (x**2).sum(), (0.0, 1.0), t_eval=[1.0])
>>> abs(float(sol.params()[0]) - 2.0 * math.exp(-3.0)) < 1e-8  # x' = -3x
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Flow", "FlowSolution", "gradient_flow"]

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


class _NonFinite(Exception):
    """Raised inside the ODE right-hand side; turned into a NaN objective for the loop."""


class _Piecewise:
    """Dense output over several integration segments: ``sol(t)`` picks the segment of t."""

    def __init__(self, parts: list) -> None:
        self.parts = parts
        self.t_max = np.array([p.t_max for p in parts])

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        idx = np.minimum(np.searchsorted(self.t_max, t), len(self.parts) - 1)
        if t.ndim == 0:
            return self.parts[int(idx)](t)
        return np.stack([self.parts[int(i)](ti) for i, ti in zip(idx, t)], axis=-1)


_OPTIONS = {
    "method": "LSODA",
    "rtol": 1e-10,
    "atol": 1e-14,
    "stop_at_loss": None,
    "loss_levels": (),
    "events": (),
    "t_eval": None,
    "dense_output": False,
    "max_step": math.inf,
    "first_step": None,
    "t0": None,
}


class Flow:
    """The exact gradient flow as an engine method (``optimizer="flow"``).

    Step s is time t = t0 + s·lr (t0 = step_offset·lr unless ``optimizer_options["t0"]``);
    the loop visits only the steps where something is measured (the logging steps, 0 and
    ``steps``; every step when ``stop`` is given) and :meth:`advance` integrates
    θ̇ = −∇J(θ) from one visit to the next with ``solve_ivp`` (float64, gradients by
    autograd). ``optimizer_options``: ``method`` (LSODA), ``rtol`` (1e-10), ``atol``
    (1e-14), ``max_step``, ``first_step``, ``t_eval`` (output times; default every solver
    step), ``dense_output``, ``stop_at_loss`` (terminal event J ≤ value: the run stops there,
    the next visit sees that state), ``loss_levels`` (first time and state where J falls to
    each level), ``events`` (``event(t, params) -> float`` with scipy's ``terminal`` /
    ``direction``). The trajectory is :attr:`TrainResult.flow`, a :class:`FlowSolution`.
    """

    def __init__(self, objective, lr: float, opts: dict, *, step_offset: int = 0) -> None:
        unknown = sorted(set(opts) - set(_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown optimizer_options for 'flow': {unknown}; accepted: {sorted(_OPTIONS)}"
            )
        self.o = {**_OPTIONS, **opts}
        self.objective, self.params, self.dt = objective, objective.params, float(lr)
        bad = [str(p.dtype) for p in self.params if p.dtype != torch.float64]
        if bad:
            raise TypeError(
                f"optimizer='flow' integrates in float64; got parameters of dtype {bad} "
                "(pass dtype=torch.float64)"
            )
        self.packing = _Packing(list(self.params))
        self.t0 = step_offset * self.dt if self.o["t0"] is None else float(self.o["t0"])
        self.levels = _check_levels(self.o["loss_levels"], self.o["stop_at_loss"])
        self.user_events = list(self.o["events"])
        self.t_eval = None if self.o["t_eval"] is None else np.asarray(self.o["t_eval"], float)
        self.y = self.packing.y0.copy()
        self.nfev, self.halted, self.stopped, self.status, self.message = 0, False, False, 0, ""
        self.optimizer = None
        self.ts: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.level_t = np.full(len(self.levels), np.nan)
        self.level_y: list[np.ndarray | None] = [None] * len(self.levels)
        self.ev_t: list[list[np.ndarray]] = [[] for _ in self.user_events]
        self.ev_y: list[list[np.ndarray]] = [[] for _ in self.user_events]
        self.dense: list = []
        self._events = None

    def time(self, step: int) -> float:
        return self.t0 + step * self.dt

    def visits(self, steps: int, log_steps, every_step: bool) -> list[int]:
        return list(range(steps + 1)) if every_step else sorted({0, steps} | set(log_steps))

    def _write(self, y: np.ndarray) -> None:
        with torch.no_grad():
            for p, part in zip(self.params, self.packing.unflatten(y)):
                p.copy_(part)

    def _value(self, y: np.ndarray, batch) -> float:
        self._write(y)
        with torch.no_grad():
            return float(self.objective(batch)[0][0])

    def losses(self, batch, logging: bool):
        with torch.no_grad():
            return self.objective(batch)

    def _rhs(self, batch):
        def rhs(t: float, y: np.ndarray) -> np.ndarray:
            self.nfev += 1
            self._write(y)
            loss = self.objective(batch)[0].sum()
            grads = torch.autograd.grad(loss, self.params, allow_unused=True)
            flat = torch.cat(
                [
                    (torch.zeros_like(p) if g is None else g).reshape(-1)
                    for p, g in zip(self.params, grads)
                ]
            ).numpy()
            value = float(loss.detach())
            if not (math.isfinite(value) and np.isfinite(flat).all()):
                raise _NonFinite(t, value)
            return -flat

        return rhs

    def _make_events(self, batch) -> list:
        memo = _LossMemo(lambda y: self._value(y, batch))
        out = []
        for ev in self.user_events:
            if not callable(ev):
                raise TypeError(f"events must be callables event(t, params) -> float, got {ev!r}")

            def wrapped(t, y, ev=ev):
                with torch.no_grad():
                    return float(ev(t, self.packing.unflatten(y)))

            wrapped.terminal = getattr(ev, "terminal", False)
            wrapped.direction = getattr(ev, "direction", 0)
            out.append(wrapped)
        stop_at = self.o["stop_at_loss"]
        thresholds = [*self.levels, *([] if stop_at is None else [stop_at])]
        for k, level in enumerate(thresholds):

            def crossing(t, y, level=level):
                return memo(y) - level

            crossing.terminal = stop_at is not None and k == len(thresholds) - 1
            crossing.direction = -1
            out.append(crossing)
        return out

    def _segment_eval(self, t_a: float, t_b: float, first: bool) -> np.ndarray | None:
        if self.t_eval is None:
            return None
        inside = (self.t_eval >= t_a if first else self.t_eval > t_a) & (self.t_eval <= t_b)
        return np.union1d(self.t_eval[inside], [t_b])  # t_b: the state the next visit needs

    def advance(self, losses, batch, active, span) -> torch.Tensor | None:
        """Integrate from step ``span[0]`` to ``span[1]``; a NaN objective if the flow blew up."""
        from scipy.integrate import solve_ivp

        if self._events is None:
            self._events = self._make_events(batch)
        t_a, t_b = self.time(span[0]), self.time(span[1])
        first = not self.ts
        seg_eval = self._segment_eval(t_a, t_b, first)
        kwargs: dict = {"max_step": self.o["max_step"]}
        if self.o["first_step"] is not None:
            kwargs["first_step"] = self.o["first_step"]
        try:
            sol = solve_ivp(
                self._rhs(batch),
                (t_a, t_b),
                self.y,
                method=self.o["method"],
                rtol=self.o["rtol"],
                atol=self.o["atol"],
                events=self._events or None,
                t_eval=seg_eval,
                dense_output=self.o["dense_output"],
                **kwargs,
            )
        except _NonFinite as err:
            self.message = f"non-finite gradient-flow objective {err.args[1]} at t={err.args[0]}"
            return torch.full((1,), math.nan, dtype=torch.float64)
        if sol.status < 0:
            raise RuntimeError(f"solve_ivp failed: {sol.message}")
        self.status, self.message = int(sol.status), sol.message
        self._collect(sol, t_b, first)
        self._write(self.y)
        return None

    def _collect(self, sol, t_b: float, first: bool) -> None:
        t, y = sol.t, sol.y.T
        if self.t_eval is not None:  # keep the asked times only (t_b was added for the state)
            keep = np.isin(t, self.t_eval)
            state = (t[-1], y[-1]) if t.size else (None, None)
            t, y = t[keep], y[keep]
        else:
            state = (t[-1], y[-1])
            if not first:  # the segment starts where the last one ended
                t, y = t[1:], y[1:]
        n_user = len(self.user_events)
        t_ev = list(sol.t_events) if self._events else []
        y_ev = list(sol.y_events) if self._events else []
        for k in range(n_user):
            self.ev_t[k].append(t_ev[k])
            self.ev_y[k].append(y_ev[k])
        for k in range(len(self.levels)):
            if np.isnan(self.level_t[k]) and t_ev[n_user + k].size:
                self.level_t[k], self.level_y[k] = t_ev[n_user + k][0], y_ev[n_user + k][0].copy()
        if sol.status == 1:  # a terminal event ended the segment: its state is the new one
            self.halted = True
            fired = [k for k, e in enumerate(self._events) if e.terminal and t_ev[k].size]
            k = max(fired, key=lambda i: t_ev[i][-1])
            state = (t_ev[k][-1], y_ev[k][-1])
            self.stopped = self.o["stop_at_loss"] is not None and k == len(self._events) - 1
            if self.stopped and (t.size == 0 or t[-1] < state[0]):
                t, y = np.append(t, state[0]), np.vstack([y, state[1][None]])
        self.ts.append(np.asarray(t, dtype=float))
        self.ys.append(np.asarray(y, dtype=float).reshape(-1, self.y.size))
        self.y = np.array(state[1], dtype=float)
        if sol.sol is not None:
            self.dense.append(sol.sol)

    def finish(self, batch) -> dict:
        """The trajectory as :class:`FlowSolution` (the loss of every output row included)."""
        t = np.concatenate(self.ts) if self.ts else np.zeros(0)
        y = np.concatenate(self.ys) if self.ys else np.zeros((0, self.y.size))
        loss = np.array([self._value(row, batch) for row in y])
        self._write(self.y)
        n_user = len(self.user_events)
        dense = None
        if self.dense:
            dense = self.dense[0] if len(self.dense) == 1 else _Piecewise(self.dense)
        solution = FlowSolution(
            t=t,
            y=y,
            loss=loss,
            stopped=self.stopped,
            status=self.status,
            message=self.message,
            nfev=self.nfev,
            loss_levels=self.levels,
            level_t=self.level_t.copy(),
            level_y=tuple(self.level_y),
            t_events=tuple(np.concatenate(self.ev_t[k]) for k in range(n_user)),
            y_events=tuple(
                np.concatenate(self.ev_y[k]) if self.ev_y[k] else np.zeros((0, self.y.size))
                for k in range(n_user)
            ),
            sol=dense,
            packing=self.packing,
        )
        return {"flow": solution}


class _LossMemo:
    """The loss at the last state asked for: scipy calls every event on the same state."""

    def __init__(self, value: Callable[[np.ndarray], float]) -> None:
        self.value_of = value
        self.key: bytes | None = None
        self.value = math.nan

    def __call__(self, y: np.ndarray) -> float:
        key = np.ascontiguousarray(y).tobytes()
        if key != self.key:
            self.key, self.value = key, self.value_of(y)
        return self.value


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
    """Integrate θ̇ = −∇L(θ) from ``params`` over ``t_span``: a front of the engine,
    ``train(copies, loss_fn, optimizer="flow", lr=t1 − t0, steps=1, optimizer_options=...)``,
    returning its :class:`FlowSolution`.

    ``params``: a tensor or a list of tensors (copied to float64, left untouched); ``loss_fn``
    receives the same structure and returns a scalar tensor (it may include a penalty such as
    λ‖θ‖²). The keywords are the flow's ``optimizer_options`` (:class:`Flow`). A NaN/Inf
    objective raises :class:`Diverged`.
    """
    from rankscope.train.loop import train

    packing = _Packing(params)
    t0, t1 = (float(t_span[0]), float(t_span[1]))
    if not t1 > t0:
        raise ValueError(f"t_span must be (t0, t1) with t1 > t0, got {t_span!r}")
    tensors = [params] if packing.single else list(params)
    leaves = [p.detach().to(torch.float64).clone().requires_grad_(True) for p in tensors]
    fn = (lambda ps: loss_fn(ps[0])) if packing.single else loss_fn
    evs = [ev if not packing.single else _single_event(ev) for ev in events]
    options = {
        "method": method,
        "rtol": rtol,
        "atol": atol,
        "stop_at_loss": stop_at_loss,
        "loss_levels": loss_levels,
        "events": evs,
        "t_eval": t_eval,
        "dense_output": dense_output,
        "max_step": max_step,
        "first_step": first_step,
        "t0": t0,
    }
    res = train(leaves, fn, optimizer="flow", lr=t1 - t0, steps=1, optimizer_options=options)
    return dataclasses.replace(res.flow, packing=packing)


def _single_event(ev: Callable) -> Callable:
    if not callable(ev):
        return ev  # rejected by the flow with a clear error

    def wrapped(t, ps):
        return ev(t, ps[0])

    wrapped.terminal = getattr(ev, "terminal", False)
    wrapped.direction = getattr(ev, "direction", 0)
    return wrapped
