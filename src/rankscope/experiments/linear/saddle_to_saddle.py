"""`saddle-to-saddle`: small-init GD on a deep linear net learns one mode at a time.

Jacot, Ged, Şimşek, Hongler, Gabriel, arXiv:2106.15933 (docs/results.md). GD on
½‖A − A*‖² with A* = U diag(10, 5, 2.5) Vᵀ (d = 20), width w = 100, entries N(0, σ²). For
balanced aligned modes ȧ_i = L a_i^{2−2/L}(s_i − a_i), so the half-fit time t_i (first time,
in steps·η, at which s_i(A_t) > s_i/2) grows like ln(1/σ²)/(2s_i) for L = 2 and like
σ^{−(L−2)} for L ≥ 3. Half-fit times are interpolated linearly between consecutive steps,
with the spectrum computed at every step; spectra are logged at log-spaced steps.

The γ-transition (matrix completion, σ² = w^{−γ}) lives in :mod:`._completion`; its setup
(d = 40, 50% observed, active γ = 3, widths to 3200) is in docs/decisions.md (issue 9).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from rankscope.experiments.base import Experiment, Result, RunContext
from rankscope.experiments.linear import _s2s_claims as claims
from rankscope.experiments.linear._completion import gamma_transition
from rankscope.experiments.linear._dln import log_spaced_steps, planted_matrix, scaled_init
from rankscope.metrics import numerical_rank, singular_values
from rankscope.models import end_to_end
from rankscope.train import train

__all__ = [
    "CLAIMS",
    "EXPERIMENT",
    "PRESETS",
    "Config",
    "DepthRun",
    "GammaConfig",
    "GammaRun",
    "Summary",
    "run",
    "sub_run_tag",
]

_L4_GRID = (1e-2, 10**-2.5, 1e-3, 10**-3.5, 1e-4)


@dataclass(frozen=True)
class GammaConfig:
    """The γ-transition sub-study (matrix completion, σ² = w^{−γ}; claims S2S-4, S2S-5).

    d = 40 with 50% observed: 800 entries for the 2·40·2 − 4 = 156 degrees of freedom of a
    rank-2 target (the spec's d = 20 at 30% gives 120 for 76, too few for the small-init run
    to find A*). The active γ is 3, so σ²w = w^{−2} ≤ 4e-4 at every width (γ = 1.5 gives
    σ²w = 0.14 at w = 50, not a small init); γ = 1.5 is run and reported, not tested. The
    lazy drift of the unobserved entries falls like w^{−1/2}, so the widths go to 3200.
    """

    dim: int = 40
    target: tuple[float, ...] = (10.0, 5.0)
    observed: float = 0.5
    widths: tuple[int, ...] = (50, 200, 800, 3200)
    gammas: tuple[float, ...] = (0.5, 1.5, 3.0)
    depth: int = 2
    lr: float = 0.01
    max_steps: int = 100_000
    rel_tol: float = 1e-6  # stop when ½Σ_obs residual² < rel_tol · ½Σ_obs A*²
    rank_tol: float = 1e-2  # lazy rank counts s_i > rank_tol · s_1 (S2S-4)
    rank_eps: float = 0.05  # Rank_ε counts s_i > rank_eps · s_min(A*) (S2S-5)

    def __post_init__(self) -> None:
        if len(self.target) > self.dim:
            raise ValueError(
                f"gamma.target has {len(self.target)} singular values, more than gamma.dim = "
                f"{self.dim}"
            )
        if self.depth < 2:
            raise ValueError(f"gamma.depth must be >= 2, got {self.depth}")
        if not 0 < self.rel_tol < 1:
            raise ValueError(f"gamma.rel_tol must be in (0, 1), got {self.rel_tol!r}")
        if min(self.target) <= 0:
            raise ValueError(f"gamma.target singular values must be > 0, got {self.target}")


@dataclass(frozen=True)
class Config:
    """Sizes from docs/results.md "CPU reproduction"; one σ² grid and one η per depth."""

    dim: int = 20
    width: int = 100
    target: tuple[float, ...] = (10.0, 5.0, 2.5)
    depths: tuple[int, ...] = (2, 3, 4)
    sigma2: tuple[tuple[float, ...], ...] = (
        (1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
        (1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
        _L4_GRID,
    )
    lr: tuple[float, ...] = (0.01, 0.005, 0.005)
    max_time: float = 400.0  # in steps·η; runs stop earlier once every mode is learned
    settle: float = 1.3  # keep going until t ≥ settle × the last half-fit time
    rank_eps: float = 0.05  # Rank_ε with ε = rank_eps · s_min(A*)
    n_sv_logged: int = 5
    n_log: int = 160
    gamma: GammaConfig = field(default_factory=GammaConfig)

    def __post_init__(self) -> None:
        if not (len(self.depths) == len(self.sigma2) == len(self.lr)):
            raise ValueError(
                f"depths, sigma2 and lr need one entry per depth; got {len(self.depths)} depths, "
                f"{len(self.sigma2)} sigma2 grids, {len(self.lr)} learning rates"
            )
        if any(d < 2 for d in self.depths):
            raise ValueError(f"depths must be >= 2, got {self.depths}")
        if len(self.target) > self.dim:
            raise ValueError(
                f"target has {len(self.target)} singular values, more than dim = {self.dim}"
            )


@dataclass(frozen=True)
class DepthRun:
    """One (depth, σ²) run: half-fit times t_i (steps·η, NaN if never), the compressed
    Rank_ε sequence, and the final state."""

    depth: int
    sigma2: float
    lr: float
    tag: str
    half_fit: tuple[float, ...]
    rank_sequence: tuple[int, ...]
    initial_rank: int
    steps: int
    time: float
    final_loss: float
    final_sv: tuple[float, ...]


@dataclass(frozen=True)
class GammaRun:
    """One (γ, w) completion run of the γ-transition."""

    gamma: float
    width: int
    sigma2: float
    tag: str
    steps: int
    train_loss: float
    converged: bool
    final_rank: int  # s_i > rank_tol · s_1
    final_rank_eps: int  # Rank_ε: s_i > rank_eps · s_min(A*)
    final_sv: tuple[float, ...]  # the k + 3 leading singular values of A_T
    unobserved_change: float
    unobserved_rmse: float
    init_rmse: float


@dataclass(frozen=True)
class Summary:
    target: tuple[float, ...]
    rank_eps: float  # the absolute tolerance ε of Rank_ε
    depth_runs: tuple[DepthRun, ...]
    gamma_runs: tuple[GammaRun, ...]
    gamma_dim: int
    gamma_target_rank: int
    gamma_rank_eps: float  # the absolute ε of the completion runs' Rank_ε


PRESETS = {
    "smoke": Config(
        width=60,
        sigma2=((1e-2, 1e-3, 1e-4, 1e-5, 1e-6), (1e-3, 10**-3.5, 1e-4), (1e-2, 10**-2.5, 1e-3)),
        n_log=60,
        gamma=GammaConfig(widths=(50, 200, 800), gammas=(0.5, 3.0)),
    ),
    "default": Config(),
    "paper": Config(
        sigma2=(
            (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
            (1e-2, 1e-3, 1e-4, 1e-5, 1e-6),
            (*_L4_GRID, 10**-4.5),
        ),
        max_time=1500.0,
        gamma=GammaConfig(widths=(50, 100, 200, 400, 800, 1600, 3200)),
    ),
}


def sub_run_tag(depth: int, sigma2: float) -> str:
    """The records' ``layer`` tag of one (depth, σ²) run, e.g. ``L=3,sigma2=1e-04``."""
    return f"L={depth},sigma2={sigma2:.0e}"


class _ModeTracker:
    """Per member: interpolated half-fit times and the compressed Rank_ε sequence."""

    def __init__(self, target: np.ndarray, n_members: int, eps: float, lr: float) -> None:
        self.target, self.eps, self.lr = target, eps, lr
        self.times = np.full((n_members, target.size), np.nan)
        self.sequences: list[list[int]] = [[] for _ in range(n_members)]
        self.prev: np.ndarray | None = None

    def update(self, step: int, s: torch.Tensor) -> np.ndarray:
        """Feed the spectra (E, d) at ``step``; returns the members whose rank changed."""
        k = self.target.size
        cur = s[:, :k].cpu().numpy()
        half = self.target / 2
        if self.prev is not None:
            new = np.isnan(self.times) & (cur > half) & (self.prev <= half)
            frac = (half - self.prev) / np.where(new, cur - self.prev, 1.0)
            self.times = np.where(new, self.lr * (step - 1 + frac), self.times)
        self.times = np.where(np.isnan(self.times) & (cur > half) & (step == 0), 0.0, self.times)
        self.prev = cur
        ranks = numerical_rank(s, "absolute", atol=self.eps).tolist()
        changed = np.zeros(len(ranks), dtype=bool)
        for e, r in enumerate(ranks):
            if not self.sequences[e] or self.sequences[e][-1] != r:
                self.sequences[e].append(int(r))
                changed[e] = True
        return changed

    def done(self, step: int, settle: float) -> bool:
        return bool(np.isfinite(self.times).all()) and step * self.lr >= settle * self.times.max()


class _Spectra:
    """Engine callback at every step: the spectrum of A_t for all members feeds the
    :class:`_ModeTracker`; spectra, losses and ranks go to the records at the log-spaced
    steps (and ranks whenever they change). Returns True (stop) once every mode is learned
    and settled."""

    def __init__(self, cfg: Config, tracker: _ModeTracker, target, tags, max_steps, ctx, span):
        self.cfg, self.tracker, self.tags, self.max_steps = cfg, tracker, tags, max_steps
        self.target = target
        self.log_at = log_spaced_steps(max_steps, cfg.n_log)
        self.ctx, self.span = ctx, span
        self.step, self.s, self.loss = 0, None, None

    def __call__(self, state) -> bool:
        step, log = state.step, self.ctx.log
        a = end_to_end([w.detach() for w in state.params])  # (E, d, d)
        s = singular_values(a)  # (E, d)
        loss = 0.5 * (a - self.target).square().sum((1, 2))  # ½‖A − A*‖² per member
        changed = self.tracker.update(step, s)
        done = self.tracker.done(step, self.cfg.settle) or step == self.max_steps
        for e, tag in enumerate(self.tags):
            if step in self.log_at or done:
                log.log_vector("sv", s[e, : self.cfg.n_sv_logged], step=step, layer=tag)
                log.log("loss", loss[e], step=step, layer=tag)
            if changed[e] or step in self.log_at or done:
                log.log("rank", self.tracker.sequences[e][-1], step=step, layer=tag)
        if step % 500 == 0:
            lo, hi = self.span
            self.ctx.progress(lo + (hi - lo) * step / self.max_steps)
        self.step, self.s, self.loss = step, s, loss
        return done


def _train_depth(
    cfg: Config, i: int, target: torch.Tensor, ctx: RunContext, span
) -> list[DepthRun]:
    """GD for every σ² of depth ``cfg.depths[i]`` as one stacked ensemble."""
    depth, lr, sig2 = cfg.depths[i], float(cfg.lr[i]), tuple(cfg.sigma2[i])
    dims = [cfg.dim] + [cfg.width] * (depth - 1) + [cfg.dim]
    ws = scaled_init(dims, [math.sqrt(s) for s in sig2], generator=ctx.child_generator(depth))
    ws = [w.to(ctx.device).requires_grad_(True) for w in ws]  # (E, n_ℓ, n_{ℓ−1}) each
    tgt = np.asarray(cfg.target, dtype=float)
    tracker = _ModeTracker(tgt, len(sig2), cfg.rank_eps * float(tgt.min()), lr)
    max_steps = math.ceil(cfg.max_time / lr)
    tags = [sub_run_tag(depth, s) for s in sig2]
    target = target.to(ctx.device)
    spectra = _Spectra(cfg, tracker, target, tags, max_steps, ctx, span)

    def loss_fn(params: list[torch.Tensor]) -> torch.Tensor:
        """Σ_e ½‖A_e − A*‖²: the members share nothing, so each gets its own gradient."""
        return 0.5 * (end_to_end(params) - target).square().sum()

    train(ws, loss_fn, optimizer="gd", lr=lr, steps=max_steps, log_at=1, callbacks=[spectra])
    final_s = spectra.s[:, : len(tgt)]
    return [
        DepthRun(
            depth=depth,
            sigma2=float(s2),
            lr=lr,
            tag=tags[e],
            half_fit=tuple(float(t) for t in tracker.times[e]),
            rank_sequence=tuple(tracker.sequences[e]),
            initial_rank=tracker.sequences[e][0],
            steps=spectra.step,
            time=spectra.step * lr,
            final_loss=float(spectra.loss[e]),
            final_sv=tuple(float(v) for v in final_s[e]),
        )
        for e, s2 in enumerate(sig2)
    ]


def run(config: Config, ctx: RunContext) -> Result:
    target, _, _ = planted_matrix(config.dim, config.target, generator=ctx.generator)
    runs: list[DepthRun] = []
    n = len(config.depths)
    for i in range(n):
        runs.extend(_train_depth(config, i, target, ctx, (0.8 * i / n, 0.8 * (i + 1) / n)))
    gamma_runs = gamma_transition(config.gamma, ctx)
    ctx.progress(1.0)
    summary = Summary(
        target=tuple(float(v) for v in config.target),
        rank_eps=config.rank_eps * min(config.target),
        depth_runs=tuple(runs),
        gamma_runs=tuple(GammaRun(**r) for r in gamma_runs),
        gamma_dim=config.gamma.dim,
        gamma_target_rank=len(config.gamma.target),
        gamma_rank_eps=config.gamma.rank_eps * min(config.gamma.target),
    )
    return Result(summary=summary, records=ctx.log.freeze())


CLAIMS = claims.CLAIMS

EXPERIMENT = Experiment(
    id="saddle-to-saddle",
    title="Saddle-to-saddle dynamics in deep linear networks",
    papers=("arXiv:2106.15933",),
    description=(
        "Gradient descent on a deep linear network A = W_L⋯W_1 (d = 20, width 100) fitting a "
        "target with singular values 10, 5, 2.5 from initial weights N(0, σ²). From small "
        "σ² the end-to-end matrix passes near saddles of rank 0, 1, 2, 3, learning one "
        "singular direction at a time; the plateau before mode i lasts ≈ ln(1/σ²)/(2s_i) for "
        "depth 2 and grows like σ^{−(L−2)} for depth L ≥ 3 (time is steps·η). A matrix-"
        "completion run (d = 40, half the entries observed, rank-2 target) with σ² = w^{−γ} "
        "shows the lazy (γ = 0.5: the unobserved entries barely move, less so as w grows) to "
        "active (γ = 3, σ²w ≤ 4e-4: rank 2, A* recovered) transition."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
