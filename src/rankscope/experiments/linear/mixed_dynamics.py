"""``mixed-dynamics``: lazy, active and mixed training of A = W₂W₁ (arXiv:2405.17580).

Tu, Aranguri and Jacot describe GD on a shallow linear net by one self-consistent equation

    dA/dt = −[(AAᵀ + σ⁴w²I)^{1/2}·∇C(A) + ∇C(A)·(AᵀA + σ⁴w²I)^{1/2}],   ∇C(A) = A − Y,

so a singular direction is lazy (rate 2σ²w) while s ≪ σ²w and active (rate 2s) above it.
This module runs GD and the discretized equation side by side over a grid of scalings
σ² = d^{γ_σ²}, w = d^{γ_w} and measures the phase diagram of the paper's Fig. 2 plus the
fast check of Fig. 1 (docs/results.md § mixed-dynamics).

**GD without w-sized arrays.** GD on (W₁, W₂) is closed in the d×d matrices A = W₂W₁,
P = W₂W₂ᵀ and Q = W₁ᵀW₁ (derived, exact; :class:`rankscope.train.gram_gd.GramGD`, the optimizer that
trains them through :func:`rankscope.train.train`), and at the N(0, σ²) init
[[P, A], [Aᵀ, Q]]/σ² is Wishart(w, I_{2d}), sampled by Bartlett's decomposition
(:func:`sample_gram_init`). So every point of the grid costs O(d³) per step whatever w is;
``gd_impl="factors"`` runs the explicit factors instead (capped at w·d ≤ ``max_wd``).
Each point also runs a twin GD with the simultaneous update order (``Config.twin_update``)
for the GD–SC comparison of MD-3; the main run keeps the notebooks' sequential order. All
tensors live on ``ctx.device`` (the draws are made on the CPU and moved there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext
from rankscope.experiments.linear import _mixed_claims as _claims
from rankscope.experiments.linear._mixed_sim import (
    Point,
    SimSettings,
    early_stop_index,
    first_crossing,
    make_problem,
    simulate,
)
from rankscope.train.schedule import log_steps

__all__ = [
    "CLAIMS",
    "EXPERIMENT",
    "PRESETS",
    "Config",
    "FastConfig",
    "PointResult",
    "Summary",
    "TargetInfo",
    "run",
]

PAPER = "arXiv:2405.17580"


@dataclass(frozen=True)
class FastConfig:
    """The fast-check point (Fig. 1 and the reference table): η = 1/(eta_divisor·…), as Fig. 1."""

    point: tuple[float, float] = (-1.85, 2.25)
    d: int = 100
    n_iters: int = 300
    eta_divisor: float = 5.0


@dataclass(frozen=True)
class Config:
    """A grid over (γ_σ², γ_w) at size ``d`` (Fig. 2) and the fast-check point ``fast``
    (Fig. 1 and the reference table).

    η = 1/(divisor·σ²w) when γ_σ²+γ_w > 1, else 1/(divisor·‖A*‖_op) (the notebooks' rule):
    ``eta_divisor`` = 50 with ``n_iters`` = 750 on the grid as in Fig. 2, ``fast.eta_divisor``
    = 5 with ``fast.n_iters`` = 300 at the fast point as in Fig. 1. ``margin``: minimal
    Euclidean distance to the lazy/active line γ_σ²+γ_w = 1 for a point to count as active or
    lazy in MD-1 (criterion 1 names it); MD-2 and MD-4 count a point as active at the same
    distance below the effective lines σ²w = s_K(A*) and σ²w = s_{K+1}(Y), i.e.
    σ²w < s·d^{−√2·margin} (:mod:`._mixed_claims`). ``gd_update``:
    ``sequential`` is the notebooks' order (W₁ first, then W₂ with the new W₁);
    ``simultaneous`` is textbook GD. ``twin_update``: every point also runs GD with this
    order from the same init (same η) for its gap to the self-consistent dynamics (MD-3;
    docs/decisions.md); None or equal to ``gd_update``: MD-3 reads the main run.
    ``gd_impl="factors"`` trains the explicit factors, capped at w·d ≤ ``max_wd``.
    """

    d: int = 100
    rank: int = 5
    gamma_sigma2: tuple[float, ...] = (-2.2, -1.92, -1.64, -1.36, -1.08, -0.8)
    gamma_w: tuple[float, ...] = (1.75, 1.96, 2.17, 2.38, 2.59, 2.8)
    n_iters: int = 750
    eta_divisor: float = 50.0
    fast: FastConfig = field(default_factory=FastConfig)
    gd_impl: Literal["gram", "factors"] = "gram"
    gd_update: Literal["sequential", "simultaneous"] = "sequential"
    twin_update: Literal["sequential", "simultaneous"] | None = "simultaneous"
    max_wd: float = 2e7
    margin: float = 0.15
    converge_fraction: float = 0.9
    n_sv_log: int = 12
    grid_log_points: int = 80
    max_eta_halvings: int = 3
    batch_points: int = 36
    dtype: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class PointResult:
    """One simulated (γ_σ², γ_w) point: its scalings and region, and the claim inputs."""

    gamma_sigma2: float
    gamma_w: float
    d: int
    sigma2: float
    w: int
    eta: float
    region: str  # "active" (γσ²+γw < 1) or "lazy"
    below_red: bool  # 2γσ²+γw < 0
    line_distance: float  # signed distance to γσ²+γw = 1
    sigma2_w: float
    diverged: bool
    eta_used: float
    eta_halvings: int
    n_iters: int
    stop_iter: int
    iter_of_min: int
    min_test_error: float
    init_test_error: float
    global_min_test_error: float
    final_test_error: float
    stable_rank_at_min: float
    rank_at_min: int
    max_gap: float  # max_t ‖A_GD − A_SC‖_F/‖A_GD‖_F
    iter_of_max_gap: int
    max_gap_over_y: float
    max_gap_to_stop: float
    t90_topk: int
    t90_next: int
    width_fluctuation: float  # √(d/w) = ‖W₂W₂ᵀ − σ²wI‖_F/‖σ²wI‖_F at init (in expectation)
    twin_max_gap: float  # max_t gap of the twin GD run (Config.twin_update) to SC
    twin_iter_of_max_gap: int
    twin_diverged: bool


@dataclass(frozen=True)
class TargetInfo:
    """The planted target A* of one problem size."""

    d: int
    stable_rank: float
    op_norm: float
    singular_values: tuple[float, ...]
    observed_singular_values: tuple[float, ...]


@dataclass(frozen=True)
class Summary:
    d: int
    fast_d: int
    rank: int
    margin: float
    gd_update: str
    twin_update: str  # the update order of the GD run MD-3 compares with SC
    gd_impl: str
    grid: tuple[PointResult, ...]
    grid_target: TargetInfo
    fast: PointResult
    fast_target: TargetInfo
    srank_target: float


PRESETS = {
    # 4 grid points (2 active, 1 lazy below the red line, 1 too close to the line), 300
    # iterations at η/5, plus the real fast check at d = 100: every claim has inputs.
    "smoke": Config(
        gamma_sigma2=(-1.85, -1.36), gamma_w=(2.25, 2.59), n_iters=300, eta_divisor=5.0
    ),
    "default": Config(),
    "paper": Config(
        d=200,
        gamma_sigma2=tuple(float(x) for x in np.linspace(-2.2, -0.8, 30)),
        gamma_w=tuple(float(x) for x in np.linspace(1.75, 2.8, 30)),
    ),
}


def _point_summary(p: Point, traj: dict, k: int, fraction: float) -> PointResult:
    """Claim inputs of one point from its trajectories (numpy arrays, index = iteration)."""
    stop = early_stop_index(traj["train"], traj["test"])
    i_min = int(np.argmin(traj["test"][: stop + 1]))
    t90 = first_crossing(traj["sv"][:, : k + 1], fraction)
    return PointResult(
        **p.as_dict(),
        diverged=bool(traj["diverged"]),
        eta_used=float(traj["eta"]),
        eta_halvings=int(traj["eta_halvings"]),
        n_iters=len(traj["test"]) - 1,
        stop_iter=int(stop),
        iter_of_min=i_min,
        min_test_error=float(traj["test"][i_min]),
        init_test_error=float(traj["test"][0]),
        global_min_test_error=float(np.min(traj["test"])),
        final_test_error=float(traj["test"][-1]),
        stable_rank_at_min=float(traj["srank"][i_min]),
        rank_at_min=int(traj["rank"][i_min]),
        max_gap=float(np.max(traj["gap"])),
        iter_of_max_gap=int(np.argmax(traj["gap"])),
        max_gap_over_y=float(np.max(traj["gap_y"])),
        max_gap_to_stop=float(np.max(traj["gap"][: stop + 1])),
        t90_topk=int(np.max(t90[:k])),
        t90_next=int(t90[k]),
        width_fluctuation=math.sqrt(p.d / p.w),
        twin_max_gap=float(np.max(traj["twin_gap"])),
        twin_iter_of_max_gap=int(np.argmax(traj["twin_gap"])),
        twin_diverged=bool(traj["twin_diverged"]),
    )


def _log_point(ctx: RunContext, tag: str, traj: dict, n_sv: int, n_log: int) -> None:
    """Losses and gap at ``n_log`` log-spaced iterations; ``n_sv`` top singular values of GD
    and SC at every iteration (0 for none)."""
    steps = log_steps(len(traj["test"]) - 1, n_log)
    for name in ("train", "test", "sc_test", "gap", "twin_gap"):
        for it in steps:
            ctx.log.log(name, float(traj[name][it]), step=it, layer=tag)
    for it in range(traj["sv"].shape[0] if n_sv > 0 else 0):
        ctx.log.log_vector("sv", traj["sv"][it, :n_sv], step=it, layer=tag)
        ctx.log.log_vector("sc_sv", traj["sc_sv"][it, :n_sv], step=it, layer=tag)


def _validate(cfg: Config) -> None:
    if not 1 <= cfg.rank < min(cfg.d, cfg.fast.d):
        raise ValueError(
            f"rank must be in [1, d), got rank={cfg.rank}, d={cfg.d}, fast.d={cfg.fast.d}"
        )
    if not cfg.gamma_sigma2 or not cfg.gamma_w:
        raise ValueError("gamma_sigma2 and gamma_w must be non-empty tuples of exponents")
    orders = ("sequential", "simultaneous")
    for name, value in (("gd_update", cfg.gd_update), ("twin_update", cfg.twin_update)):
        if value not in orders and not (name == "twin_update" and value is None):
            raise ValueError(f"{name} must be 'sequential' or 'simultaneous', got {value!r}")
    fast = cfg.fast
    if min(cfg.n_iters, fast.n_iters) < 2 or min(cfg.eta_divisor, fast.eta_divisor) <= 0:
        raise ValueError(
            "need n_iters, fast.n_iters >= 2 and eta divisors > 0, got "
            f"{cfg.n_iters}, {fast.n_iters}, {cfg.eta_divisor}, {fast.eta_divisor}"
        )


def _settings(cfg: Config, n_iters: int) -> SimSettings:
    return SimSettings(
        n_iters=n_iters,
        gd_impl=cfg.gd_impl,
        gd_update=cfg.gd_update,
        twin_update=cfg.twin_update,
        n_keep=max(cfg.rank + 1, cfg.n_sv_log),
        max_eta_halvings=cfg.max_eta_halvings,
        batch_points=cfg.batch_points,
        max_wd=cfg.max_wd,
    )


def run(config: Config, ctx: RunContext) -> Result:
    """Simulate the grid at ``d`` and the fast point at ``fast_d`` (GD and SC side by side)."""
    _validate(config)
    dtype = getattr(torch, config.dtype)
    out: dict = {}
    grid = [(a, b) for a in config.gamma_sigma2 for b in config.gamma_w]
    fast = config.fast
    jobs = [
        ("grid", config.d, grid, config.n_iters, config.eta_divisor),
        ("fast", fast.d, [tuple(fast.point)], fast.n_iters, fast.eta_divisor),
    ]
    for j, (kind, d, coords, n_iters, divisor) in enumerate(jobs):
        problem = make_problem(
            d, config.rank, generator=ctx.child_generator(d), dtype=dtype, device=ctx.device
        )
        points = [Point.make(gs, gw, d, problem.target_op, divisor) for gs, gw in coords]
        trajs = simulate(
            points, problem, _settings(config, n_iters), rng=ctx.rng, generator=ctx.generator
        )
        summaries = [
            _point_summary(p, tr, config.rank, config.converge_fraction)
            for p, tr in zip(points, trajs)
        ]
        for p, tr in zip(points, trajs):
            tag = f"{kind}:gs={p.gamma_sigma2:.4g},gw={p.gamma_w:.4g}"
            is_fast = kind == "fast"
            _log_point(
                ctx,
                tag,
                tr,
                config.n_sv_log if is_fast else 0,
                n_iters + 1 if is_fast else config.grid_log_points,
            )
        out[kind] = tuple(summaries) if kind == "grid" else summaries[0]
        out[f"{kind}_target"] = TargetInfo(**problem.describe())
        ctx.progress((j + 1) / len(jobs))
    summary = Summary(
        d=config.d,
        fast_d=fast.d,
        rank=config.rank,
        margin=config.margin,
        gd_update=config.gd_update,
        twin_update=config.twin_update or config.gd_update,
        gd_impl=config.gd_impl,
        **out,
        srank_target=out["grid_target"].stable_rank,
    )
    return Result(summary=summary, records=ctx.log.freeze())


CLAIMS: tuple[Claim, ...] = (
    Claim(
        id="MD-1",
        paper=PAPER,
        statement="Active beats lazy: among grid points below the red line and ≥ margin from "
        "the lazy/active line, the median minimal test error of active points is < 0.6× "
        "that of lazy points.",
        expected="median(active) / median(lazy) < 0.6",
        check=_claims.active_beats_lazy,
        invert=_claims.invert_active_beats_lazy,
    ),
    Claim(
        id="MD-2",
        paper=PAPER,
        statement="The stable rank at the minimal test error is within ±1 of srank(A*) in the "
        "active region and ≥ srank(A*) + 2 in the lazy region (every grid point; a point is "
        "active only if σ²w < s_K(A*)·d^(−√2·0.15), the margin below the effective line "
        "σ²w = s_K(A*); lazy if γσ²+γw > 1; the band between is reported).",
        expected="|srank − srank(A*)| ≤ 1 (σ²w < s_K(A*)·d^(−0.21)); srank ≥ srank(A*) + 2 (lazy)",
        check=_claims.stable_rank_by_region,
        invert=_claims.invert_stable_rank,
    ),
    Claim(
        id="MD-3",
        paper=PAPER,
        statement="GD follows the discretized self-consistent dynamics: the relative gap "
        "max_t ‖A_GD − A_SC‖_F/‖A_GD‖_F of simultaneous-update GD is < √(d/w) (the relative "
        "size of W₂W₂ᵀ − σ²wI at init, which the equation drops) at every grid point with "
        "γ_w > 1 below the red line.",
        expected="max gap < √(d/w) at every such point (simultaneous-update GD)",
        check=_claims.gd_matches_self_consistent,
        invert=_claims.invert_gap,
    ),
    Claim(
        id="MD-4",
        paper=PAPER,
        statement="In active runs (grid points and the fast point with σ²w < "
        "s_{K+1}(Y)·d^(−√2·0.15), the margin below the (K+1)-th direction's line) the "
        "top-K singular values converge faster: with r = t90(top-K)/t90(K+1) (time to 90% of "
        "the final value) and its active-regime limit b = s_{K+1}(Y)/s_K(Y), the speed-up "
        "fraction (1 − r)/(1 − b) is ≥ 0.64, what r < 0.5 demands at the paper's d = 500.",
        expected="(1 − r)/(1 − b) ≥ 0.64 in every active run",
        check=_claims.topk_converges_first,
        invert=_claims.invert_topk,
    ),
    Claim(
        id="MD-5",
        paper=PAPER,
        statement="Fast check: the point (−1.85, 2.25) at d = 100 gives a minimal test error "
        "< 0.35 and a stable rank at the minimum in [2.5, 3.7].",
        expected="min test error < 0.35; stable rank in [2.5, 3.7]",
        check=_claims.fast_check,
        invert=_claims.invert_fast,
    ),
)

EXPERIMENT = Experiment(
    id="mixed-dynamics",
    title="Mixed dynamics: lazy and active regimes of shallow linear nets",
    papers=(PAPER,),
    description=(
        "A = W₂W₁ with W₁ ∈ R^{w×d}, W₂ ∈ R^{d×w}, N(0, σ²) entries, σ² = d^γσ², w = d^γw, "
        "fits A* + E (A* of rank K = 5, noise E ~ N(0, 1)) by plain GD with the notebook's "
        "η rule, side by side with the discretized self-consistent dynamics "
        "dA/dt = −[(AAᵀ+σ⁴w²I)^{1/2}(A−Y) + (A−Y)(AᵀA+σ⁴w²I)^{1/2}]. Over a grid of "
        "(γσ², γw) it measures the minimal test error, the stable rank there, the iterations "
        "to reach it and the GD–SC gap; the active region (γσ²+γw < 1) should reach a small "
        "error at about the right rank while the lazy region memorizes the noise. GD runs "
        "exactly on the d×d statistics (W₂W₁, W₂W₂ᵀ, W₁ᵀW₁), so w never enters the cost; a "
        "simultaneous-update twin of every run (same init and η) gives the GD–SC gap that is "
        "compared with √(d/w). Criteria 2 and 4 count a point as active below the effective "
        "lines σ²w = s_K(A*) and σ²w = s_{K+1}(Y) (by the margin), not the nominal σ²w = d."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 1},
)
