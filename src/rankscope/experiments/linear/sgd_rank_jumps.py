"""``sgd-rank-jumps``: one-way rank drops of SGD with L2 in deep linear nets (arXiv:2305.16038).

Wang and Jacot: for L2-regularized DLNs with ≥ 2 hidden layers there are local minima of
several ranks; GD can stay at a rank-overestimating one, while SGD jumps to lower rank with
positive probability and never back. Toolkit protocol (papers/linear.md § sgd-rank-jumps; all
hyper-parameters are toolkit designs, open_questions B1/C):

* target 20×20 of rank 2 (singular values 3, 2), 40% of the entries observed;
  DLN L = 4, width 20, init N(0, 1/width);
* stage 0: full-batch GD with λ = 1e-4 until ‖∇L_λ‖_F < ``stage0_tol`` (a stationary point);
* stage 1, from the stage-0 point: full-batch GD and SGD(batch 1) on the annealing schedule
  (λ, η) = (1e-2, 0.05) for 2e4 steps, then (1e-3, 0.01) for 2e4 steps. The pitfall rule is
  run for every factor in ``lambda_scales`` (λ's scaled together) and the largest factor at
  which GD keeps its stage-0 rank is the one the claims read; η is halved per member on
  divergence; both are recorded;
* flip test: SGD on the same schedule from a rank-2 minimum (balanced factors of A* relaxed by
  GD at the phase-1 λ);
* ranks s_i > τ·s_1 for τ in ``taus`` every ``log_every`` steps, read through a hysteresis of
  ``persist`` consecutive logs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import torch

from rankscope.experiments.base import Claim, Diverged, Experiment, Result, RunContext
from rankscope.experiments.linear import _sgd_claims as _claims
from rankscope.experiments.linear._dln import observation_mask, planted_matrix, prefix_products
from rankscope.experiments.linear._sgd_jumps import (
    Completion,
    StageLog,
    gd_until_stationary,
    hysteresis_filter,
    rank_of,
    train_schedule,
)
from rankscope.metrics import singular_values
from rankscope.models.linear import balanced_factors, balancedness, init_deep_linear

__all__ = ["CLAIMS", "EXPERIMENT", "PRESETS", "Config", "run"]

PAPER = "arXiv:2305.16038"
KINDS = ("gd", "sgd", "flip")


@dataclass(frozen=True)
class Config:
    """``init_std`` ≤ 0 means 1/√width. ``taus[0]`` is the tolerance the claims use; a rank
    counts s_i > max(τ·s_1, ``rank_atol``). ``loss_norm``: ``mean`` is the spec's (1/|I|)·Σ_I."""

    dim: int = 20
    target_values: tuple[float, ...] = (3.0, 2.0)
    observed: float = 0.4
    depth: int = 4
    width: int = 20
    init_std: float = 0.0
    stage0_lambda: float = 1e-4
    stage0_lr: float = 0.5
    stage0_tol: float = 1e-5
    stage0_max_steps: int = 60_000
    phase_lambdas: tuple[float, ...] = (1e-2, 1e-3)
    phase_lrs: tuple[float, ...] = (0.05, 0.01)
    phase_steps: tuple[int, ...] = (20_000, 20_000)
    lambda_scales: tuple[float, ...] = (1.0, 0.3, 0.1, 0.03, 0.01)
    log_every: int = 100
    taus: tuple[float, ...] = (1e-2, 1e-3)
    persist: int = 3
    max_lr_halvings: int = 4
    flip_test: bool = True
    rank_atol: float = 1e-8
    loss_norm: Literal["mean", "sum"] = "mean"


PRESETS = {
    "smoke": Config(
        stage0_max_steps=4000, phase_steps=(1500, 1500), lambda_scales=(1.0, 0.1), log_every=50
    ),
    "default": Config(),
    "paper": Config(),
}


def _validate(cfg: Config) -> None:
    lens = {len(cfg.phase_lambdas), len(cfg.phase_lrs), len(cfg.phase_steps)}
    if len(lens) != 1 or not cfg.phase_steps:
        raise ValueError(
            "phase_lambdas, phase_lrs and phase_steps need the same non-zero length, "
            f"got {cfg.phase_lambdas}, {cfg.phase_lrs}, {cfg.phase_steps}"
        )
    if not cfg.lambda_scales or min(cfg.lambda_scales) <= 0:
        raise ValueError(f"lambda_scales must be positive factors, got {cfg.lambda_scales}")
    if cfg.depth < 2 or not cfg.taus or cfg.log_every < 1 or cfg.persist < 1:
        raise ValueError("need depth >= 2, at least one tau, log_every >= 1 and persist >= 1")


def _stage0(cfg: Config, prob: Completion, dims, gen) -> tuple[list[torch.Tensor], dict]:
    std = cfg.init_std if cfg.init_std > 0 else 1 / math.sqrt(cfg.width)
    init = [w[None] for w in init_deep_linear(dims, std, generator=gen, dtype=torch.float64)]
    lr = cfg.stage0_lr
    for _ in range(cfg.max_lr_halvings + 1):
        ws = [w.clone() for w in init]
        steps, gnorm = gd_until_stationary(
            ws,
            prob,
            lam=cfg.stage0_lambda,
            lr=lr,
            tol=cfg.stage0_tol,
            max_steps=cfg.stage0_max_steps,
        )
        if torch.isfinite(gnorm).all():
            break
        lr /= 2
    else:
        raise Diverged(steps, what="stage-0 GD gradient norm")
    a = prefix_products(ws)[-1]
    s = singular_values(a[0])
    info = {
        "steps": steps,
        "grad_norm": float(gnorm[0]),
        "lr": lr,
        "lr_halvings": round(math.log2(cfg.stage0_lr / lr)),
        "converged": bool(gnorm[0] < cfg.stage0_tol),
        "ranks": {f"{t:g}": int(rank_of(s, t, cfg.rank_atol)) for t in cfg.taus},
        "singular_values": [float(x) for x in s],
        "train_loss": float(prob.train_loss(a)[0]),
        "unobserved_rmse": float(prob.unobserved_rmse(a)[0]),
    }
    return ws, info


def _flip_start(cfg: Config, prob: Completion) -> tuple[list[torch.Tensor], list[dict]]:
    """Rank-2 minima: balanced factors of A* relaxed by GD at each phase-1 λ (one member each)."""
    n = len(cfg.lambda_scales)
    ws = [
        w.expand(n, *w.shape).clone()
        for w in balanced_factors(prob.target, cfg.depth, width=cfg.width)
    ]
    lam = torch.tensor(
        [f * cfg.phase_lambdas[0] for f in cfg.lambda_scales], dtype=torch.float64
    ).view(-1, 1, 1)
    steps, gnorm = gd_until_stationary(
        ws, prob, lam=lam, lr=cfg.stage0_lr, tol=cfg.stage0_tol, max_steps=cfg.stage0_max_steps
    )
    s = singular_values(prefix_products(ws)[-1])
    info = [
        {
            "steps": steps,
            "grad_norm": float(g),
            "ranks": {f"{t:g}": int(rank_of(s[e], t, cfg.rank_atol)) for t in cfg.taus},
            "singular_values": [float(x) for x in s[e, : len(cfg.target_values) + 1]],
        }
        for e, g in enumerate(gnorm)
    ]
    return ws, info


def _members(cfg: Config, stage0_ws, flip_ws) -> tuple[list[tuple[str, float]], list[torch.Tensor]]:
    """The stage-1 members (kind, λ scale) and their stacked initial factors."""
    keys, parts = [], []
    for e, f in enumerate(cfg.lambda_scales):
        for kind in KINDS if cfg.flip_test else KINDS[:2]:
            keys.append((kind, f))
            parts.append([w[e : e + 1] for w in flip_ws] if kind == "flip" else stage0_ws)
    init = [torch.cat([p[l] for p in parts]) for l in range(cfg.depth)]
    return keys, init


def _stage1(cfg: Config, prob: Completion, keys, init, gen) -> tuple[StageLog, list, list[int]]:
    """Run every member; members that diverge are rerun from their start with η halved."""
    scale = torch.tensor([f for _, f in keys], dtype=torch.float64)
    sgd = torch.tensor([k != "gd" for k, _ in keys])
    halvings = [0] * len(keys)
    todo, final_ws, logs = list(range(len(keys))), [None] * len(keys), [None] * len(keys)
    for h in range(cfg.max_lr_halvings + 1):
        idx = torch.tensor(todo)
        ws = [w[idx].clone() for w in init]
        log = train_schedule(
            ws,
            prob,
            sgd=sgd[idx],
            lambdas=[lam * scale[idx] for lam in cfg.phase_lambdas],
            lrs=[torch.full((len(todo),), lr / 2**h, dtype=torch.float64) for lr in cfg.phase_lrs],
            steps=cfg.phase_steps,
            log_every=cfg.log_every,
            taus=cfg.taus,
            generator=gen,
            atol=cfg.rank_atol,
        )
        for row, e in enumerate(todo):
            logs[e], halvings[e] = (log, row), h
            final_ws[e] = [w[row] for w in ws]
        todo = [e for row, e in enumerate(todo) if bool(log.diverged[row])]
        if not todo:
            break
    return logs, final_ws, halvings


def _member_summary(cfg: Config, key, log_row, ws_e, halvings: int) -> dict:
    log, row = log_row
    kind, f = key
    seqs = {f"{t:g}": [int(x) for x in log.ranks[t][row]] for t in cfg.taus}
    filt = {t: hysteresis_filter(v, cfg.persist) for t, v in seqs.items()}
    return {
        "kind": kind,
        "scale": f,
        "lambdas": [f * lam for lam in cfg.phase_lambdas],
        "lrs": [lr / 2**halvings for lr in cfg.phase_lrs],
        "lr_halvings": halvings,
        "diverged": bool(log.diverged[row]),
        "rank_seq": seqs,
        "final_rank": {t: v[-1] for t, v in filt.items()},
        "final_unobserved_rmse": float(log.rmse[row, -1]),
        "final_train_loss": float(log.loss[row, -1]),
        "final_singular_values": [float(x) for x in log.final_sv[row]],
        "final_balancedness": float(balancedness([w for w in ws_e]).max()),
    }


def _log_member(ctx: RunContext, m: dict, log_row) -> None:
    log, row = log_row
    tag = f"{m['kind']},scale={m['scale']:g}"
    for i, step in enumerate(log.steps):
        for t, seq in m["rank_seq"].items():
            ctx.log.log(f"rank@{t}", seq[i], step=step, layer=tag)
        ctx.log.log("train_loss", float(log.loss[row, i]), step=step, layer=tag)
        ctx.log.log("unobserved_rmse", float(log.rmse[row, i]), step=step, layer=tag)
    ctx.log.log_vector("sv_final", m["final_singular_values"], step=log.steps[-1], layer=tag)


def run(config: Config, ctx: RunContext) -> Result:
    """Stage 0 (GD to a stationary point), then GD / SGD / flip members on the schedule."""
    _validate(config)
    t0 = time.perf_counter()
    gen = ctx.generator
    target, _, _ = planted_matrix(config.dim, config.target_values, generator=gen)
    mask = observation_mask(config.dim, config.observed, generator=gen)
    prob = Completion(target, mask, config.loss_norm)
    dims = [config.dim] + [config.width] * (config.depth - 1) + [config.dim]
    stage0_ws, stage0 = _stage0(config, prob, dims, gen)
    ctx.log.log_vector("sv_stage0", stage0["singular_values"], step=stage0["steps"], layer="stage0")
    ctx.progress(0.3)
    flip_ws, flip_info = _flip_start(config, prob) if config.flip_test else (None, [])
    keys, init = _members(config, stage0_ws, flip_ws)
    logs, final_ws, halvings = _stage1(config, prob, keys, init, gen)
    members = []
    for e, key in enumerate(keys):
        members.append(_member_summary(config, key, logs[e], final_ws[e], halvings[e]))
        _log_member(ctx, members[-1], logs[e])
    for m in members:
        if m["kind"] == "flip":
            m["start"] = flip_info[config.lambda_scales.index(m["scale"])]
    summary = {
        "target_rank": len(config.target_values),
        "target_values": list(config.target_values),
        "taus": [f"{t:g}" for t in config.taus],
        "persist": config.persist,
        "stage0": stage0,
        "members": members,
        "phase_boundaries": [
            sum(config.phase_steps[: i + 1]) for i in range(len(config.phase_steps))
        ],
    }
    summary["chosen_scale"] = _claims.choose_scale(summary)
    summary["wall_time_s"] = time.perf_counter() - t0
    return Result(summary=summary, records=ctx.log.freeze())


CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="SGDJ-1",
        paper=PAPER,
        statement="One-way: the SGD rank trajectory (hysteresis of 3 logs, τ = 1e-2) never "
        "increases after a drop, in every seed (inconclusive for a seed where it never drops).",
        expected="no increase after the first drop (10/10 seeds)",
        check=_claims.one_way,
        min_fraction=1.0,
    ),
    Claim(
        id="SGDJ-2",
        paper=PAPER,
        statement="Starting from GD's rank-overestimating stationary point, SGD ends at rank 2 "
        "with an unobserved-entry RMSE below GD's, in ≥ 7/10 seeds.",
        expected="final SGD rank = 2 and RMSE(SGD) < RMSE(GD) in ≥ 70% of seeds",
        check=_claims.sgd_reaches_target_rank,
        min_fraction=0.7,
    ),
    Claim(
        id="SGDJ-3",
        paper=PAPER,
        statement="Full-batch GD keeps its stage-0 rank throughout stage 1 (at the largest "
        "λ scale where it does; fails when no scale in lambda_scales keeps it; inconclusive "
        "when stage 0 did not overestimate the rank).",
        expected="GD rank = stage-0 rank at every log",
        check=_claims.gd_keeps_rank,
        min_fraction=1.0,
    ),
    Claim(
        id="SGDJ-4",
        paper=PAPER,
        statement="Flip test: started at a rank-2 minimum, SGD never increases the rank.",
        expected="filtered rank ≤ 2 at every log",
        check=_claims.flip_never_increases,
        min_fraction=1.0,
    ),
)

EXPERIMENT = Experiment(
    id="sgd-rank-jumps",
    title="SGD with L2 jumps from high to low rank, one way",
    papers=(PAPER,),
    description=(
        "Depth-4, width-20 linear network completing a 20×20 rank-2 matrix from 40% of its "
        "entries with the penalty λ‖θ‖². Stage 0 trains full-batch GD at λ = 1e-4 to a "
        "stationary point; stage 1 continues with full-batch GD and with batch-size-1 SGD on "
        "an annealing schedule ((λ, η) = (1e-2, 0.05) then (1e-3, 0.01), 2e4 steps each), with "
        "the λ's lowered until GD keeps its rank. The theory predicts that SGD drops to rank 2 "
        "and never climbs back, while GD stays at its stage-0 rank. Ranks are s_i > τ·s_1 "
        "(τ = 1e-2, also 1e-3) read with a hysteresis of 3 logs. Toolkit protocol."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    seeds={"smoke": 1, "default": 10, "paper": 10},
)
