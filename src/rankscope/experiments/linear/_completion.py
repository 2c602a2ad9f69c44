"""The γ-transition of `saddle-to-saddle` on matrix completion (papers/linear.md, criterion 4).

Depth-L DLN of width w, entries N(0, σ²) with σ² = w^{−γ}, trained by GD on the ½-sum loss
½Σ_{(i,j)∈I}(A_ij − A*_ij)² over a uniformly random observed set I (a fraction of the d²
entries) until that loss is below ``gamma_tol``. A* has rank k (planted singular values).

Measured per (γ, w): the final rank (s_i > τ·s_1), the relative change of the unobserved
entries ‖(A_T − A_0)_Iᶜ‖_F/‖(A_0)_Iᶜ‖_F (lazy: small), and the unobserved-entry RMSE
against A*. γ < 1 is the lazy/NTK regime, γ > 1 starts near the saddle at the origin.
"""

from __future__ import annotations

import math

import torch

from rankscope.experiments.base import RunContext
from rankscope.experiments.linear._dln import (
    gd_step,
    log_spaced_steps,
    observation_mask,
    planted_matrix,
    prefix_products,
)
from rankscope.metrics import numerical_rank, singular_values
from rankscope.models.linear import init_deep_linear
from rankscope.train.errors import Diverged

__all__ = ["completion_tag", "gamma_transition"]


def completion_tag(gamma: float, width: int) -> str:
    """Records tag of one completion run, e.g. ``gamma=1.5,w=200``."""
    return f"gamma={gamma:g},w={width}"


def _fit(cfg, ws, target, mask, ctx: RunContext, tag: str) -> tuple[int, float]:
    """GD until ½Σ_obs residual² < gamma_tol; returns (steps, final loss)."""
    log_at = log_spaced_steps(cfg.max_steps, 80)
    loss = math.inf
    for step in range(cfg.max_steps + 1):
        pre = prefix_products(ws)
        resid = (pre[-1] - target) * mask  # (d, d), zero off the observed set
        loss = 0.5 * float(resid.square().sum())
        if not math.isfinite(loss):
            raise Diverged(step, what=f"completion loss ({tag})", value=loss)
        done = loss < cfg.tol or step == cfg.max_steps
        if step in log_at or done:
            ctx.log.log("train_loss", loss, step=step, layer=tag)
        if done:
            return step, loss
        gd_step(ws, resid, cfg.lr, prefixes=pre)
    return cfg.max_steps, loss  # pragma: no cover - the loop always returns


def gamma_transition(cfg, ctx: RunContext) -> list[dict]:
    """One completion run per (γ, w) of the config; a list of JSON-able dicts."""
    gen = ctx.child_generator(10_007)
    d = cfg.dim
    target, _, _ = planted_matrix(d, cfg.target, generator=gen)
    mask = observation_mask(d, cfg.observed, generator=gen)
    unobs = ~mask
    out = []
    for gamma in cfg.gammas:
        for width in cfg.widths:
            tag = completion_tag(gamma, width)
            sigma2 = float(width) ** (-gamma)
            dims = [d] + [width] * (cfg.depth - 1) + [d]
            ws = init_deep_linear(dims, math.sqrt(sigma2), generator=gen, dtype=torch.float64)
            a0 = prefix_products(ws)[-1].clone()
            steps, loss = _fit(cfg, ws, target, mask, ctx, tag)
            a = prefix_products(ws)[-1]
            s = singular_values(a)
            ctx.log.log_vector("sv_final", s, step=steps, layer=tag)
            rank = int(numerical_rank(s, "relative", rtol=cfg.rank_tol))
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
                    "converged": loss < cfg.tol,
                    "final_rank": rank,
                    "unobserved_change": change,
                    "unobserved_rmse": rmse,
                    "init_rmse": float((a0 - target)[unobs].square().mean().sqrt()),
                }
            )
    return out
