"""`mc-not-norms`: on a 2×2 completion, gradient flow drives every norm to ∞ while rank → 1.

Razin & Cohen, arXiv:2005.06398 (docs/results.md). Observed M_12 = M_21 = 1, M_22 = 0,
loss ℓ(W) = ½Σ_{(i,j)∈Ω}(W_ij − M_ij)² on W = W_N⋯W_1 with 2×2 factors. If det W > 0 and
ℓ < ½, then |W_11| ≥ (1 − √(2ℓ))²/√(2ℓ), so ℓ → 0 forces |W_11| → ∞ and s_2/s_1 → 0.

MC-1: balanced factors of P_0 ~ N(0, 1e-3²) conditioned on det P_0 > 0, integrated as exact
gradient flow (LSODA, rtol 1e-10, atol 1e-14, terminal event at ℓ = 1e-4). MC-2 (contrast):
the same with det P_0 < 0, run to ℓ = 1e-6; solutions with det = −1 are reachable, so |W_11|
should stay bounded. Every solver step is measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from rankscope.experiments.base import Experiment, Result, RunContext
from rankscope.experiments.linear import _mc_claims as claims
from rankscope.metrics import nuclear_norm, singular_values
from rankscope.models.linear import balanced_factors, end_to_end
from rankscope.train import train

__all__ = [
    "CLAIMS",
    "EXPERIMENT",
    "PRESETS",
    "Checkpoint",
    "Config",
    "ContrastConfig",
    "ContrastRun",
    "PositiveRun",
    "Summary",
    "completion_loss",
    "norm_bound",
    "run",
]

_TARGET = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)  # M; M_11 is free
_MASK = torch.tensor([[0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # Ω: all but (1, 1)


@dataclass(frozen=True)
class ContrastConfig:
    """MC-2: the same flow from det P_0 < 0, run to ``stop_loss``; |W_11| at ``check_loss``
    is compared with |W_11| at ``level``."""

    enabled: bool = True
    stop_loss: float = 1e-6
    level: float = 1e-4
    check_loss: float = 1e-6

    def __post_init__(self) -> None:
        if not 0 < self.stop_loss < 0.5:
            raise ValueError(f"contrast.stop_loss must be in (0, 1/2), got {self.stop_loss}")


@dataclass(frozen=True)
class Config:
    depth: int = 3
    init_std: float = 1e-3  # P_0 ~ N(0, init_std²), then balanced factors
    stop_loss: float = 1e-4
    checkpoints: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    method: str = "LSODA"
    rtol: float = 1e-10
    atol: float = 1e-14
    t_max: float = 1e7
    n_records: int = 1500  # solver steps kept in the records (claims use every step)

    def __post_init__(self) -> None:
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2 (a factorization), got {self.depth}")
        if not 0 < self.stop_loss < 0.5:
            raise ValueError(f"stop_loss must be in (0, 1/2), got {self.stop_loss}")


@dataclass(frozen=True)
class Checkpoint:
    """End-to-end W where the flow's loss first reaches ``loss`` (NaN fields if never)."""

    loss: float
    reached: bool
    t: float = math.nan
    w11: float = math.nan
    nuclear: float = math.nan
    frobenius: float = math.nan
    s_ratio: float = math.nan
    det: float = math.nan


@dataclass(frozen=True)
class PositiveRun:
    """MC-1: the flow from det P_0 > 0, measured at every solver step."""

    reached: bool
    final_loss: float
    final_t: float
    n_steps: int
    nfev: int
    init_det: float
    init_draws: int
    min_det: float
    n_bound_checked: int
    n_bound_violations: int
    min_bound_margin: float
    min_w11_below_1e_3: float  # min |W_11| over the steps with ℓ ≤ 1e-3
    final_w11: float
    final_bound: float
    checkpoints: tuple[Checkpoint, ...]


@dataclass(frozen=True)
class ContrastRun:
    """MC-2: the flow from det P_0 < 0."""

    reached: bool
    final_loss: float
    final_t: float
    n_steps: int
    init_det: float
    final_det: float
    level: float
    w11_at_level: float
    stop_loss: float
    w11_final: float
    check_loss: float
    w11_at_check: float
    max_w11: float


@dataclass(frozen=True)
class Summary:
    depth: int
    mc1: PositiveRun
    mc2: ContrastRun | None


PRESETS = {
    "smoke": Config(),
    "default": Config(),
    "paper": Config(
        checkpoints=(1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
        stop_loss=1e-5,
        contrast=ContrastConfig(stop_loss=1e-8),
    ),
}


def completion_loss(ws: list[torch.Tensor]) -> torch.Tensor:
    """ℓ(W) = ½Σ_{(i,j)∈Ω}(W_ij − M_ij)² with Ω = {(1,2), (2,1), (2,2)} (1-based)."""
    return 0.5 * ((end_to_end(ws) - _TARGET) * _MASK).square().sum()


def norm_bound(loss: np.ndarray) -> np.ndarray:
    """(1 − √(2ℓ))²/√(2ℓ), the lower bound on |W_11| when det W > 0 and ℓ < ½ (NaN otherwise)."""
    r = np.sqrt(2 * np.asarray(loss, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r < 1, (1 - r) ** 2 / r, np.nan)


def _initial_product(cfg: Config, sign: int, gen: torch.Generator) -> tuple[torch.Tensor, int]:
    """P_0 ~ N(0, std²) resampled until sign(det P_0) = ``sign``; returns (P_0, draws)."""
    for draws in range(1, 1001):
        p0 = cfg.init_std * torch.randn(2, 2, generator=gen, dtype=torch.float64)
        if float(torch.linalg.det(p0)) * sign > 0:
            return p0, draws
    raise RuntimeError("could not draw P_0 with the requested determinant sign")  # pragma: no cover


def _trajectory(sol) -> dict[str, np.ndarray]:
    """End-to-end quantities at every solver step of a flow solution."""
    prods = torch.stack([end_to_end(sol.params(i)) for i in range(sol.t.size)])  # (T, 2, 2)
    s = singular_values(prods)  # (T, 2)
    return {
        "t": sol.t,
        "loss": sol.loss,
        "det": torch.linalg.det(prods).numpy(),
        "w11": prods[:, 0, 0].abs().numpy(),
        "nuclear": nuclear_norm(s).numpy(),
        "frobenius": s.norm(dim=-1).numpy(),
        "s_ratio": (s[:, 0] / s[:, 1]).numpy(),
    }


def _at_level(sol, level: float) -> Checkpoint:
    ws = sol.params_at_level(level)
    if ws is None:
        return Checkpoint(loss=level, reached=False)
    w = end_to_end(ws)
    s = singular_values(w)
    return Checkpoint(
        loss=level,
        reached=True,
        t=float(sol.level_t[sol.loss_levels.index(level)]),
        w11=float(w[0, 0].abs()),
        nuclear=float(s.sum()),
        frobenius=float(s.norm()),
        s_ratio=float(s[0] / s[1]),
        det=float(torch.linalg.det(w)),
    )


def _flow(cfg: Config, sign: int, stop: float, levels, gen) -> tuple:
    """Exact gradient flow (the engine's ``optimizer="flow"``, one step of length t_max) from
    balanced factors of P_0; returns (flow solution, P_0, draws)."""
    p0, draws = _initial_product(cfg, sign, gen)
    ws = [w.requires_grad_(True) for w in balanced_factors(p0, cfg.depth)]
    options = {
        "method": cfg.method,
        "rtol": cfg.rtol,
        "atol": cfg.atol,
        "stop_at_loss": stop,
        "loss_levels": levels,
    }
    res = train(
        ws, completion_loss, optimizer="flow", lr=cfg.t_max, steps=1, optimizer_options=options
    )
    return res.flow, p0, draws


def _log(ctx: RunContext, traj: dict[str, np.ndarray], tag: str, n_records: int) -> None:
    """About ``n_records`` solver steps (evenly spread, the last one included) to the records."""
    n = traj["t"].size
    for k in np.unique(np.linspace(0, n - 1, min(n, n_records)).round().astype(int)).tolist():
        for name in ("t", "loss", "det", "w11", "nuclear", "frobenius", "s_ratio"):
            ctx.log.log(name, float(traj[name][k]), step=k, layer=tag)


def _mc1(cfg: Config, ctx: RunContext) -> PositiveRun:
    levels = tuple(c for c in cfg.checkpoints if c > cfg.stop_loss)
    sol, p0, draws = _flow(cfg, +1, cfg.stop_loss, levels, ctx.child_generator(1))
    traj = _trajectory(sol)
    _log(ctx, traj, "MC-1", cfg.n_records)
    bound = norm_bound(traj["loss"])
    active = traj["loss"] < 0.5
    margin = traj["w11"][active] - bound[active]
    points = [_at_level(sol, c) for c in levels]
    if sol.stopped:
        final = {k: float(traj[k][-1]) for k in ("t", "w11", "nuclear", "frobenius", "s_ratio")}
        points.append(
            Checkpoint(loss=cfg.stop_loss, reached=True, det=float(traj["det"][-1]), **final)
        )
    deep = traj["loss"] <= 1e-3
    return PositiveRun(
        reached=bool(sol.stopped),
        final_loss=float(traj["loss"][-1]),
        final_t=float(traj["t"][-1]),
        n_steps=int(traj["t"].size),
        nfev=int(sol.nfev),
        init_det=float(torch.linalg.det(p0)),
        init_draws=draws,
        min_det=float(traj["det"].min()),
        n_bound_checked=int(active.sum()),
        n_bound_violations=int((margin < -1e-6).sum()),
        min_bound_margin=float(margin.min()) if margin.size else math.nan,
        min_w11_below_1e_3=float(traj["w11"][deep].min()) if deep.any() else math.nan,
        final_w11=float(traj["w11"][-1]),
        final_bound=float(bound[-1]),
        checkpoints=tuple(points),
    )


def _mc2(cfg: Config, ctx: RunContext) -> ContrastRun:
    con = cfg.contrast
    check_at_stop = math.isclose(con.check_loss, con.stop_loss)
    levels = (con.level,)
    if con.check_loss > con.stop_loss and not check_at_stop:
        levels += (con.check_loss,)
    sol, p0, _ = _flow(cfg, -1, con.stop_loss, levels, ctx.child_generator(2))
    traj = _trajectory(sol)
    _log(ctx, traj, "MC-2", cfg.n_records)
    mid = _at_level(sol, con.level)
    if check_at_stop:
        at_check = float(traj["w11"][-1]) if sol.stopped else math.nan
    elif len(levels) == 2:
        at_check = _at_level(sol, con.check_loss).w11
    else:  # the run stops before the check loss
        at_check = math.nan
    return ContrastRun(
        reached=bool(sol.stopped),
        final_loss=float(traj["loss"][-1]),
        final_t=float(traj["t"][-1]),
        n_steps=int(traj["t"].size),
        init_det=float(torch.linalg.det(p0)),
        final_det=float(traj["det"][-1]),
        level=con.level,
        w11_at_level=mid.w11,
        stop_loss=con.stop_loss,
        w11_final=float(traj["w11"][-1]),
        check_loss=con.check_loss,
        w11_at_check=at_check,
        max_w11=float(traj["w11"].max()),
    )


def run(config: Config, ctx: RunContext) -> Result:
    mc1 = _mc1(config, ctx)
    ctx.progress(0.5)
    mc2 = _mc2(config, ctx) if config.contrast.enabled else None
    ctx.progress(1.0)
    summary = Summary(depth=config.depth, mc1=mc1, mc2=mc2)
    return Result(summary=summary, records=ctx.log.freeze())


CLAIMS = claims.CLAIMS

EXPERIMENT = Experiment(
    id="mc-not-norms",
    title="Implicit regularization may not be explainable by norms",
    papers=("arXiv:2005.06398",),
    description=(
        "A 2×2 matrix completion (W_12 = W_21 = 1, W_22 = 0 observed, W_11 free) fitted by a "
        "depth-3 factorization under exact gradient flow from a small balanced init with "
        "det > 0. Every solution has det = −1, but the flow keeps det > 0, so fitting forces "
        "|W_11| ≥ (1 − √(2ℓ))²/√(2ℓ) → ∞: all norms grow while s_1/s_2 grows, i.e. the "
        "flow heads to rank 1, not to the minimum-norm completion (W_11 = 0). Started with "
        "det < 0 instead, |W_11| stays bounded."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
