"""``sgd-rank-jumps``: one-way rank drops of SGD with L2 in deep linear nets (arXiv:2305.16038).

Wang and Jacot: for L2-regularized DLNs with ≥ 2 hidden layers there are local minima of
several ranks; GD can stay at a rank-overestimating one, while SGD jumps to lower rank with
positive probability and never back. Toolkit protocol (docs/results.md § sgd-rank-jumps; all
hyper-parameters are toolkit designs, docs/decisions.md):

* target 20×20 of rank 2 (singular values 3, 2), 40% of the entries observed;
  DLN L = 4, width 20, init N(0, (1.5/√width)²): a large init, so that GD interpolates at a
  high rank instead of learning rank 2 directly (docs/decisions.md, issue 9);
* ranks are read in a band: ``taus`` = (τ_hi, τ_lo, ...) = (1e-2, 1e-3); the rank drops once
  a singular value falls below τ_lo·s_1 and rises once one climbs back above τ_hi·s_1, each
  held for ``persist`` logs (:func:`~._sgd_jumps.band_filter`);
* stage 0: full-batch GD with λ = 1e-4, η = 0.03 until the band rank has held one value for
  ``stage0.window`` logs (every ``stage0.log_every`` steps): GD is "stuck" at that rank. The
  plateau still drifts (‖∇L_λ‖ ~ 3e-3), so a gradient-norm test would not end it;
* stage 1, from the stuck point: full-batch GD and SGD (batch 1) at λ = f·λ₀ for f in
  ``lambda_scales`` (λ₀ the stage-0 λ, f = 1 included), η = 0.03, 1e4 steps. The pitfall
  rule: the largest f at which GD keeps its stage-0 rank is the one SGDJ-2/3 read; η is
  halved per member on divergence; both are recorded. ``schedule`` may hold several
  (λ, η, steps) phases (the ``paper`` preset anneals);
* flip test: SGD on the same schedule from a rank-2 minimum (balanced factors of A* relaxed by
  ``flip_relax_steps`` GD steps at each scale's first λ).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from rankscope.experiments.base import Claim, Diverged, Experiment, Result, RunContext
from rankscope.experiments.linear import _sgd_claims as _claims
from rankscope.experiments.linear._dln import observation_mask, planted_matrix
from rankscope.experiments.linear._sgd_jumps import (
    Completion,
    StageLog,
    _ensemble,
    gd_until_stationary,
    gd_until_stuck,
    grad_norms,
    hysteresis_filter,
    rank_of,
    train_schedule,
)
from rankscope.metrics import singular_values
from rankscope.models.linear import balanced_factors, balancedness, end_to_end, init_deep_linear

__all__ = [
    "CLAIMS",
    "EXPERIMENT",
    "PRESETS",
    "Config",
    "FlipStart",
    "Member",
    "ScheduleConfig",
    "Stage0Config",
    "Stage0Result",
    "Summary",
    "run",
]

PAPER = "arXiv:2305.16038"
KINDS = ("gd", "sgd", "flip")


@dataclass(frozen=True)
class Stage0Config:
    """Stage 0: full-batch GD at λ = ``lam``, η = ``lr`` until the rank is stuck: its band
    value (Config.taus[:2], Config.persist) unchanged over ``window`` logs taken every
    ``log_every`` steps (or ``max_steps``; the run is then recorded as not stuck)."""

    lam: float = 1e-4
    lr: float = 0.03
    log_every: int = 250
    window: int = 20
    max_steps: int = 20_000


@dataclass(frozen=True)
class ScheduleConfig:
    """Stage 1: phase p runs ``steps[p]`` steps at (λ, η) = (``lambdas[p]``, ``lrs[p]``)."""

    lambdas: tuple[float, ...] = (1e-4,)
    lrs: tuple[float, ...] = (0.03,)
    steps: tuple[int, ...] = (10_000,)

    def __post_init__(self) -> None:
        if len({len(self.lambdas), len(self.lrs), len(self.steps)}) != 1 or not self.steps:
            raise ValueError(
                "schedule.lambdas, schedule.lrs and schedule.steps need the same non-zero "
                f"length, got {self.lambdas}, {self.lrs}, {self.steps}"
            )


@dataclass(frozen=True)
class Config:
    """``init_std`` ≤ 0 means ``init_gain``/√width. The claims read the band rank with
    (τ_hi, τ_lo) = ``taus[:2]``; a rank at τ counts s_i > max(τ·s_1, ``rank_atol``).
    ``loss_norm``: ``mean`` is the spec's (1/|I|)·Σ_I."""

    dim: int = 20
    target_values: tuple[float, ...] = (3.0, 2.0)
    observed: float = 0.4
    depth: int = 4
    width: int = 20
    init_std: float = 0.0
    init_gain: float = 1.5
    stage0: Stage0Config = field(default_factory=Stage0Config)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    lambda_scales: tuple[float, ...] = (30.0, 10.0, 3.0, 1.0)
    log_every: int = 200
    taus: tuple[float, ...] = (1e-2, 1e-3)
    persist: int = 3
    max_lr_halvings: int = 4
    flip_test: bool = True
    flip_relax_steps: int = 2000
    rank_atol: float = 1e-8
    loss_norm: Literal["mean", "sum"] = "mean"


@dataclass(frozen=True)
class Stage0Result:
    """The stage-0 point (ranks per τ, keyed by f"{τ:g}"). ``rank``: the band-filtered rank
    (taus[0], taus[1]) at the end; ``stuck``: it held over the window before ``max_steps``;
    ``rank_seq``: the raw rank logs per τ (every ``stage0.log_every`` steps)."""

    steps: int
    grad_norm: float
    lr: float
    lr_halvings: int
    stuck: bool
    rank: int
    rank_seq: dict[str, tuple[int, ...]]
    ranks: dict[str, int]
    singular_values: tuple[float, ...]
    train_loss: float
    unobserved_rmse: float


@dataclass(frozen=True)
class FlipStart:
    """The relaxed rank-2 start of a flip member."""

    steps: int
    grad_norm: float
    ranks: dict[str, int]
    singular_values: tuple[float, ...]


@dataclass(frozen=True)
class Member:
    """One stage-1 member (kind ``gd``, ``sgd`` or ``flip`` at one λ scale): raw rank logs per
    τ, final filtered ranks per τ and the final state."""

    kind: str
    scale: float
    lambdas: tuple[float, ...]
    lrs: tuple[float, ...]
    lr_halvings: int
    diverged: bool
    rank_seq: dict[str, tuple[int, ...]]
    final_rank: dict[str, int]
    final_unobserved_rmse: float
    final_train_loss: float
    final_singular_values: tuple[float, ...]
    final_balancedness: float
    start: FlipStart | None = None


@dataclass(frozen=True)
class Summary:
    target_rank: int
    target_values: tuple[float, ...]
    taus: tuple[str, ...]  # f"{τ:g}"; the first is the claims' tolerance
    persist: int
    stage0: Stage0Result
    members: tuple[Member, ...]
    phase_boundaries: tuple[int, ...]
    chosen_scale: float | None  # the largest λ scale at which GD kept its stage-0 rank


PRESETS = {
    "smoke": Config(
        stage0=Stage0Config(log_every=100, window=8, max_steps=3000),
        schedule=ScheduleConfig(steps=(1500,)),
        lambda_scales=(10.0, 1.0),
        log_every=50,
        flip_relax_steps=500,
    ),
    "default": Config(),
    # the spec's annealing reading at 2e4 + 2e4 steps, from the same stuck stage-0 point
    "paper": Config(
        stage0=Stage0Config(max_steps=60_000),
        schedule=ScheduleConfig(lambdas=(1e-3, 1e-4), lrs=(0.03, 0.01), steps=(20_000, 20_000)),
        lambda_scales=(10.0, 3.0, 1.0, 0.3, 0.1),
        log_every=100,
    ),
}


def _validate(cfg: Config) -> None:
    if not cfg.lambda_scales or min(cfg.lambda_scales) <= 0:
        raise ValueError(f"lambda_scales must be positive factors, got {cfg.lambda_scales}")
    if cfg.depth < 2 or cfg.log_every < 1 or cfg.persist < 1:
        raise ValueError("need depth >= 2, log_every >= 1 and persist >= 1")
    if len(cfg.taus) < 2 or not 0 < cfg.taus[1] < cfg.taus[0]:
        raise ValueError(
            f"taus needs (τ_hi, τ_lo, ...) with 0 < τ_lo < τ_hi (the rank band), got {cfg.taus}"
        )
    st0 = cfg.stage0
    if st0.log_every < 1 or st0.window < 1 or st0.max_steps < 1:
        raise ValueError(f"stage0 needs log_every, window and max_steps >= 1, got {st0}")


def _stage0(cfg: Config, prob: Completion, dims, gen) -> tuple[list[torch.Tensor], Stage0Result]:
    std = cfg.init_std if cfg.init_std > 0 else cfg.init_gain / math.sqrt(cfg.width)
    init = init_deep_linear(dims, std, generator=gen, dtype=torch.float64)
    init = [w[None].to(prob.target.device) for w in init]
    st0 = cfg.stage0
    lr = st0.lr
    for _ in range(cfg.max_lr_halvings + 1):
        ws = [w.clone() for w in init]
        try:
            steps, seqs, filtered, stuck = gd_until_stuck(
                ws, prob, lam=st0.lam, lr=lr, taus=cfg.taus[:2], atol=cfg.rank_atol,
                log_every=st0.log_every, persist=cfg.persist, window=st0.window,
                max_steps=st0.max_steps,
            )  # fmt: skip
            break
        except Diverged:
            lr /= 2
    else:
        raise Diverged(st0.max_steps, what="stage-0 GD")
    gnorm = grad_norms(_ensemble(ws), prob, torch.full((1,), st0.lam, dtype=torch.float64))
    a = end_to_end(ws)
    s = singular_values(a[0])
    info = Stage0Result(
        steps=steps,
        grad_norm=float(gnorm[0]),
        lr=lr,
        lr_halvings=round(math.log2(st0.lr / lr)),
        stuck=stuck,
        rank=int(filtered[-1]),
        rank_seq={f"{t:g}": tuple(v) for t, v in seqs.items()},
        ranks={f"{t:g}": int(rank_of(s, t, cfg.rank_atol)) for t in cfg.taus},
        singular_values=tuple(float(x) for x in s),
        train_loss=float(prob.train_loss(a)[0]),
        unobserved_rmse=float(prob.unobserved_rmse(a)[0]),
    )
    return ws, info


def _flip_start(cfg: Config, prob: Completion) -> tuple[list[torch.Tensor], list[FlipStart]]:
    """Rank-2 minima: balanced factors of A* relaxed by GD at each phase-1 λ (one member each)."""
    n = len(cfg.lambda_scales)
    ws = [
        w.expand(n, *w.shape).clone()
        for w in balanced_factors(prob.target, cfg.depth, width=cfg.width)
    ]
    lam = torch.tensor(
        [f * cfg.schedule.lambdas[0] for f in cfg.lambda_scales], dtype=torch.float64
    ).view(-1, 1, 1)
    steps, gnorm = gd_until_stationary(
        ws, prob, lam=lam, lr=cfg.stage0.lr, tol=1e-8, max_steps=cfg.flip_relax_steps
    )
    s = singular_values(end_to_end(ws))
    info = [
        FlipStart(
            steps=steps,
            grad_norm=float(g),
            ranks={f"{t:g}": int(rank_of(s[e], t, cfg.rank_atol)) for t in cfg.taus},
            singular_values=tuple(float(x) for x in s[e, : len(cfg.target_values) + 1]),
        )
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
            lambdas=[lam * scale[idx] for lam in cfg.schedule.lambdas],
            lrs=[
                torch.full((len(todo),), lr / 2**h, dtype=torch.float64) for lr in cfg.schedule.lrs
            ],
            steps=cfg.schedule.steps,
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


def _member_summary(cfg: Config, key, log_row, ws_e, halvings: int, start) -> Member:
    log, row = log_row
    kind, f = key
    seqs = {f"{t:g}": tuple(int(x) for x in log.ranks[t][row]) for t in cfg.taus}
    filt = {t: hysteresis_filter(v, cfg.persist) for t, v in seqs.items()}
    return Member(
        kind=kind,
        scale=f,
        lambdas=tuple(f * lam for lam in cfg.schedule.lambdas),
        lrs=tuple(lr / 2**halvings for lr in cfg.schedule.lrs),
        lr_halvings=halvings,
        diverged=bool(log.diverged[row]),
        rank_seq=seqs,
        final_rank={t: v[-1] for t, v in filt.items()},
        final_unobserved_rmse=float(log.rmse[row, -1]),
        final_train_loss=float(log.loss[row, -1]),
        final_singular_values=tuple(float(x) for x in log.final_sv[row]),
        final_balancedness=float(balancedness(list(ws_e)).max()),
        start=start,
    )


def _log_member(ctx: RunContext, m: Member, log_row) -> None:
    log, row = log_row
    tag = f"{m.kind},scale={m.scale:g}"
    for i, step in enumerate(log.steps):
        for t, seq in m.rank_seq.items():
            ctx.log.log(f"rank@{t}", seq[i], step=step, layer=tag)
        ctx.log.log("train_loss", float(log.loss[row, i]), step=step, layer=tag)
        ctx.log.log("unobserved_rmse", float(log.rmse[row, i]), step=step, layer=tag)
    ctx.log.log_vector("sv_final", list(m.final_singular_values), step=log.steps[-1], layer=tag)


def run(config: Config, ctx: RunContext) -> Result:
    """Stage 0 (GD to a stationary point), then GD / SGD / flip members on the schedule."""
    _validate(config)
    gen = ctx.generator
    target, _, _ = planted_matrix(config.dim, config.target_values, generator=gen)
    mask = observation_mask(config.dim, config.observed, generator=gen)
    target, mask = target.to(ctx.device), mask.to(ctx.device)
    prob = Completion(target, mask, config.loss_norm)
    dims = [config.dim] + [config.width] * (config.depth - 1) + [config.dim]
    stage0_ws, stage0 = _stage0(config, prob, dims, gen)
    ctx.log.log_vector("sv_stage0", list(stage0.singular_values), step=stage0.steps, layer="stage0")
    ctx.progress(0.3)
    flip_ws, flip_info = _flip_start(config, prob) if config.flip_test else (None, [])
    keys, init = _members(config, stage0_ws, flip_ws)
    logs, final_ws, halvings = _stage1(config, prob, keys, init, gen)
    members = []
    for e, (kind, f) in enumerate(keys):
        start = flip_info[config.lambda_scales.index(f)] if kind == "flip" else None
        members.append(_member_summary(config, (kind, f), logs[e], final_ws[e], halvings[e], start))
        _log_member(ctx, members[-1], logs[e])
    steps = config.schedule.steps
    summary = Summary(
        target_rank=len(config.target_values),
        target_values=tuple(config.target_values),
        taus=tuple(f"{t:g}" for t in config.taus),
        persist=config.persist,
        stage0=stage0,
        members=tuple(members),
        phase_boundaries=tuple(sum(steps[: i + 1]) for i in range(len(steps))),
        chosen_scale=None,
    )
    summary = dataclasses.replace(summary, chosen_scale=_claims.choose_scale(summary))
    return Result(summary=summary, records=ctx.log.freeze())


CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="SGDJ-1",
        paper=PAPER,
        statement="One-way: no SGD rank trajectory (any λ scale; band rank, τ ∈ [1e-3, 1e-2], "
        "hysteresis of 3 logs) increases after a drop, in every seed (inconclusive for a seed "
        "where SGD never drops).",
        expected="no increase after the first drop (10/10 seeds)",
        check=_claims.one_way,
        invert=_claims.invert_one_way,
        min_fraction=1.0,
    ),
    Claim(
        id="SGDJ-2",
        paper=PAPER,
        statement="Starting from the rank-overestimating point where GD is stuck, SGD ends at "
        "rank 2 with an unobserved-entry RMSE below GD's (at the λ scale SGDJ-3 chooses, or the "
        "smallest when none keeps the rank), in ≥ 7/10 seeds.",
        expected="final SGD rank = 2 and RMSE(SGD) < RMSE(GD) in ≥ 70% of seeds",
        check=_claims.sgd_reaches_target_rank,
        invert=_claims.invert_target_rank,
        min_fraction=0.7,
    ),
    Claim(
        id="SGDJ-3",
        paper=PAPER,
        statement="Full-batch GD keeps its stage-0 rank throughout stage 1 (at the largest "
        "λ scale where it does; fails when no scale in lambda_scales keeps it; inconclusive "
        "when stage 0 did not overestimate the rank or never got stuck).",
        expected="GD rank = stage-0 rank at every log",
        check=_claims.gd_keeps_rank,
        invert=_claims.invert_gd_keeps_rank,
        min_fraction=1.0,
    ),
    Claim(
        id="SGDJ-4",
        paper=PAPER,
        statement="Flip test: started at a rank-2 minimum, SGD never increases the rank (every "
        "λ scale whose relaxed start has rank 2).",
        expected="band rank ≤ 2 at every log",
        check=_claims.flip_never_increases,
        invert=_claims.invert_flip,
        min_fraction=1.0,
    ),
)

EXPERIMENT = Experiment(
    id="sgd-rank-jumps",
    title="SGD with L2 jumps from high to low rank, one way",
    papers=(PAPER,),
    description=(
        "Depth-4, width-20 linear network completing a 20×20 rank-2 matrix from 40% of its "
        "entries with the penalty λ‖θ‖², from a large init (std 1.5/√width). Stage 0 trains "
        "full-batch GD at λ = 1e-4 until its rank has not changed for 20 logs (5000 steps): "
        "the rank-overestimating plateau where GD is stuck. Stage 1 continues with full-batch "
        "GD and with batch-size-1 SGD at λ = 1e-4, 3e-4, 1e-3 and 3e-3 (η = 0.03, 1e4 steps); the "
        "claims compare them at the largest λ where GD keeps its rank. The theory predicts "
        "that SGD drops to rank 2 and never climbs back, while GD stays at its stage-0 rank. "
        "A rank drop counts once a singular value falls below 1e-3·s₁, a rise once one climbs "
        "back above 1e-2·s₁ (hysteresis of 3 logs). Toolkit protocol."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 10, "paper": 10},
)
