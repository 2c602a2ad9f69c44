"""The γ-transition of `saddle-to-saddle` on matrix completion (docs/results.md, criterion 4).

Depth-L DLN of width w, entries N(0, σ²) with σ² = w^{−γ}, trained by GD on the ½-sum loss
½Σ_{(i,j)∈I}(A_ij − A*_ij)² over a uniformly random observed set I (a fraction of the d²
entries) until that loss is below ``rel_tol`` times its value at A = 0, ½Σ_I A*_ij²
(settings: ``GammaConfig``). A* has rank k (planted singular values).

Measured per (γ, w): the final rank twice, relative to s_1 (s_i > τ·s_1) and against the
target (Rank_ε, s_i > ε with ε = rank_eps·s_min(A*)), the leading singular values, the
relative change of the unobserved entries ‖(A_T − A_0)_Iᶜ‖_F/‖(A_0)_Iᶜ‖_F (lazy: small), and
the unobserved-entry RMSE against A*. γ < 1 is the lazy/NTK regime, γ > 1 starts near the
saddle at the origin; at a finite width the init is small only when σ²w = w^{1−γ} is.

The stop rule is relative because the active runs end on a slow tail (the residual is fit by
modes that grow at a rate ∝ their own size): an absolute ½-sum of 1e-10 took > 100k steps.
"""

from __future__ import annotations

import math

import torch

from rankscope.experiments.base import RunContext
from rankscope.experiments.linear._dln import log_spaced_steps, observation_mask, planted_matrix
from rankscope.metrics import numerical_rank, singular_values
from rankscope.models.linear import DeepLinear, init_deep_linear
from rankscope.train import train

__all__ = ["completion_tag", "gamma_transition"]


def completion_tag(gamma: float, width: int) -> str:
    """Records tag of one completion run, e.g. ``gamma=1.5,w=200``."""
    return f"gamma={gamma:g},w={width}"


class _Fit:
    """Engine callback at every step: logs the train loss at log-spaced steps and at the
    last one, and stops once ½Σ_obs residual² < ``tol`` (absolute)."""

    def __init__(self, cfg, ctx: RunContext, tag: str, tol: float) -> None:
        self.cfg, self.ctx, self.tag, self.tol = cfg, ctx, tag, tol
        self.log_at = log_spaced_steps(cfg.max_steps, 80)
        self.step, self.loss = 0, math.inf

    def __call__(self, state) -> bool:
        self.step, self.loss = state.step, float(state.loss)
        done = self.loss < self.tol or state.step == self.cfg.max_steps
        if state.step in self.log_at or done:
            self.ctx.log.log("train_loss", self.loss, step=state.step, layer=self.tag)
        return done


def _fit(
    cfg, net: DeepLinear, target, mask, ctx: RunContext, tag: str, tol: float
) -> tuple[int, float]:
    """GD (through the engine) until ½Σ_obs residual² < tol; returns (steps, final loss)."""

    def loss_fn(model: DeepLinear) -> torch.Tensor:
        return 0.5 * ((model.product() - target) * mask).square().sum()

    fit = _Fit(cfg, ctx, tag, tol)
    train(net, loss_fn, optimizer="gd", lr=cfg.lr, steps=cfg.max_steps, log_at=1, callbacks=[fit])
    return fit.step, fit.loss


def gamma_transition(cfg, ctx: RunContext) -> list[dict]:
    """One completion run per (γ, w) of the config; a list of JSON-able dicts."""
    gen = ctx.child_generator(10_007)
    d = cfg.dim
    target, _, _ = planted_matrix(d, cfg.target, generator=gen)
    mask = observation_mask(d, cfg.observed, generator=gen)
    target, mask = target.to(ctx.device), mask.to(ctx.device)
    unobs = ~mask
    tol = cfg.rel_tol * 0.5 * float(target[mask].square().sum())  # relative to A = 0
    eps = cfg.rank_eps * min(cfg.target)  # Rank_ε tied to the target, not to s_1(A_T)
    n_sv = len(cfg.target) + 3
    out = []
    for gamma in cfg.gammas:
        for width in cfg.widths:
            tag = completion_tag(gamma, width)
            sigma2 = float(width) ** (-gamma)
            dims = [d] + [width] * (cfg.depth - 1) + [d]
            ws = init_deep_linear(dims, math.sqrt(sigma2), generator=gen, dtype=torch.float64)
            net = DeepLinear.from_weights(ws).to(ctx.device)
            with torch.no_grad():
                a0 = net.product().clone()
            steps, loss = _fit(cfg, net, target, mask, ctx, tag, tol)
            with torch.no_grad():
                a = net.product()
            s = singular_values(a)
            ctx.log.log_vector("sv_final", s, step=steps, layer=tag)
            rank = int(numerical_rank(s, "relative", rtol=cfg.rank_tol))
            rank_eps = int(numerical_rank(s, "absolute", atol=eps))
            change = float((a - a0)[unobs].norm() / a0[unobs].norm())
            rmse = float((a - target)[unobs].square().mean().sqrt())
            out.append(
                {
                    "gamma": float(gamma),
                    "width": int(width),
                    "sigma2": sigma2,
                    "tag": tag,
                    "steps": steps,
                    "train_loss": loss,
                    "converged": loss < tol,
                    "final_rank": rank,
                    "final_rank_eps": rank_eps,
                    "final_sv": tuple(float(v) for v in s[:n_sv]),
                    "unobserved_change": change,
                    "unobserved_rmse": rmse,
                    "init_rmse": float((a0 - target)[unobs].square().mean().sqrt()),
                }
            )
    return out
