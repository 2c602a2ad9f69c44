"""``scalar-mode``: one singular mode of a deep linear network, against its exact flow.

The smallest instance of the saddle-to-saddle picture (docs/results.md): a product of L scalars
a = w_L⋯w_1, balanced, fitted to a target y by gradient descent on ½(a − y)². Under gradient
flow a mode obeys ȧ = L·a^{2−2/L}·(y − a); for L = 2 this is logistic,
a(t) = y / (1 + (y/a₀ − 1)e^{−2yt}), with half-fit time ln(y/a₀ − 1)/(2y). For L ≥ 3 the
half-fit time is the integral ∫_{a₀}^{y/2} da / (L a^{2−2/L}(y − a)). The experiment runs in
milliseconds, which makes it the engine's end-to-end check; ``lr`` large enough makes GD
diverge, which the runner records as diverged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import quad

from rankscope.experiments.base import Check, Claim, Experiment, Result, RunContext, check
from rankscope.train import train

__all__ = ["EXPERIMENT", "Config", "Summary", "half_fit_time"]


@dataclass(frozen=True)
class Config:
    depth: int = 2
    target: float = 2.0
    init: float = 1e-3  # scale of the initial product a0 (jittered by the seed)
    lr: float = 1e-3
    max_time: float = 20.0  # in units of steps·lr
    log_every: int = 10


@dataclass(frozen=True)
class Summary:
    a0: float  # the initial product
    half_fit_time: float  # GD, in steps·lr (NaN if never)
    half_fit_time_exact: float  # gradient flow
    final: float  # the product at the end


PRESETS = {
    "smoke": Config(lr=5e-3, max_time=10.0),
    "default": Config(),
    "paper": Config(lr=2e-4, log_every=50),
}


def half_fit_time(depth: int, target: float, a0: float) -> float:
    """Exact gradient-flow time for a balanced mode to go from a0 to target/2."""
    if depth == 2:
        return math.log(target / a0 - 1.0) / (2.0 * target)

    def rate(a: float) -> float:
        return 1.0 / (depth * a ** (2.0 - 2.0 / depth) * (target - a))

    value, _ = quad(rate, a0, target / 2.0, limit=500, epsabs=0.0, epsrel=1e-10)
    return float(value)


def _init_product(config: Config, rng: np.random.Generator) -> float:
    return float(config.init * (1.0 + 0.5 * rng.random()))


class _HalfFit:
    """Engine callback at every step: the first time (steps·lr) each mode reaches y/2, and the
    mode values and losses at the logging steps."""

    def __init__(self, config: Config, steps: int, log_cb) -> None:
        self.depth, self.y, self.lr, self.steps = config.depth, config.target, config.lr, steps
        self.log_every, self.log_cb = config.log_every, log_cb
        self.half: torch.Tensor | None = None
        self.a: torch.Tensor | None = None

    def __call__(self, state) -> None:
        (w,) = state.params
        a = w.detach().prod(dim=1)  # (E,)
        if self.half is None:
            self.half = torch.full_like(a, math.nan)
        crossed = torch.isnan(self.half) & (a >= self.y / 2)
        self.half = torch.where(crossed, torch.full_like(a, state.step * self.lr), self.half)
        if state.step % self.log_every == 0 or state.step == self.steps:
            self.log_cb(state.step, a, 0.5 * (a - self.y) ** 2)
        self.a = a


def _run_batch(config: Config, a0: torch.Tensor, log_cb) -> tuple[np.ndarray, np.ndarray]:
    """GD on E independent balanced modes at once (one model: the loss is the sum of the
    members' ½(a − y)², so each member gets its own gradient); returns half-fit times and
    final values."""
    L, y, lr = config.depth, config.target, config.lr
    w = a0.abs().pow(1.0 / L).unsqueeze(1).repeat(1, L)  # (E, L), balanced
    w.requires_grad_(True)
    steps = round(config.max_time / lr)
    tracker = _HalfFit(config, steps, log_cb)

    def loss_fn(params: list[torch.Tensor]) -> torch.Tensor:
        return (0.5 * (params[0].prod(dim=1) - y) ** 2).sum()

    train([w], loss_fn, optimizer="gd", lr=lr, steps=steps, log_at=1, callbacks=[tracker])
    return tracker.half.numpy(), tracker.a.numpy()


def run(config: Config, ctx: RunContext) -> Result:
    return run_many([config], [ctx])[0]


def run_many(configs: Sequence[Config], ctxs: Sequence[RunContext]) -> list[Result]:
    """All members share depth/target/lr/max_time (the ensemble key); seeds differ."""
    config = configs[0]
    a0 = torch.tensor([_init_product(c, x.rng) for c, x in zip(configs, ctxs)], dtype=torch.float64)

    def log_cb(step: int, a: torch.Tensor, loss: torch.Tensor) -> None:
        for e, x in enumerate(ctxs):
            x.log.log("a", a[e], step=step)
            x.log.log("loss", loss[e], step=step)

    half, final = _run_batch(config, a0, log_cb)
    out = []
    for e, x in enumerate(ctxs):
        exact = half_fit_time(config.depth, config.target, float(a0[e]))
        summary = Summary(
            a0=float(a0[e]),
            half_fit_time=float(half[e]),
            half_fit_time_exact=exact,
            final=float(final[e]),
        )
        out.append(Result(summary=summary, records=x.log.freeze()))
    return out


HALF_FIT_RTOL = 0.02  # SM-1
FINAL_RTOL = 1e-3  # SM-2


def _half_fit(result: Result) -> Check:
    t, exact = result.summary.half_fit_time, result.summary.half_fit_time_exact
    if math.isnan(t):
        return check(
            None,
            "the mode never reached target/2",
            headline=f"the mode never reached target/2 (exact flow: t = {exact:.4g})",
            half_fit_time=t,
            exact=exact,
        )
    rel = abs(t - exact) / exact
    ok = rel < HALF_FIT_RTOL
    return check(
        ok,
        headline=f"half-fit time {t:.4g} vs exact flow {exact:.4g}: relative error {rel:.2g} "
        f"(< {HALF_FIT_RTOL:g}) → {'pass' if ok else 'fail'}",
        half_fit_time=t,
        exact=exact,
        relative_error=rel,
    )


def _converges(result: Result) -> Check:
    y = result.config.get("target", 2.0)
    final = result.summary.final
    ok = abs(final - y) < FINAL_RTOL * abs(y)
    return check(
        ok,
        headline=f"final a = {final:.6g} vs target {y:g}: |a − y| = {abs(final - y):.2g} "
        f"(< {FINAL_RTOL * abs(y):.2g}) → {'pass' if ok else 'fail'}",
        final=final,
        target=y,
    )


def _invert_half_fit(summary: Summary) -> Summary:
    """GD twice as slow as the flow."""
    return dataclasses.replace(summary, half_fit_time=2 * summary.half_fit_time_exact)


def _invert_converges(summary: Summary) -> Summary:
    """The mode stuck on its plateau at a0."""
    return dataclasses.replace(summary, final=summary.a0)


CLAIMS = (
    Claim(
        id="SM-1",
        paper="arXiv:2106.15933",
        statement="GD on a balanced scalar mode reaches half its target at the exact "
        "gradient-flow time (logistic for L=2, a quadrature for L>=3)",
        expected="relative error < 2%",
        check=_half_fit,
        invert=_invert_half_fit,
    ),
    Claim(
        id="SM-2",
        paper="arXiv:2106.15933",
        statement="The mode converges to its target",
        expected="|a - y| < 1e-3·|y| at the end",
        check=_converges,
        invert=_invert_converges,
    ),
)

EXPERIMENT = Experiment(
    id="scalar-mode",
    title="One singular mode of a deep linear network against its exact flow",
    papers=("arXiv:2106.15933",),
    description=__doc__.split("\n\n", 1)[1].strip(),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    seeds={"smoke": 2, "default": 3, "paper": 5},
    summary_cls=Summary,
    run_many=run_many,
    ensemble_key=lambda c: (c.depth, c.target, c.lr, c.max_time, c.log_every, c.init),
)
