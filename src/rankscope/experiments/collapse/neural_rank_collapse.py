"""`neural-rank-collapse`: weight decay and within-class variability bound the layer ranks.

Zangrando, Deidda, Brugiapaglia, Guglielmi, Tudisco, arXiv 2402.03991 (docs/results.md). At a
critical point of J = (1/N)Σℓ + (λ/2)Σ‖W_l‖_F², W_l = −Δ_l H_{l−1}ᵀ/(λN), so s_{K+1}(W_l) and
d_K^F(W_l) are bounded by the within-class variability of H_{l−1} over λ (definitions §7, §14).
The run sweeps λ on digits under two protocols (full-batch L-BFGS in float64, near-critical;
Adam then GD, a fixed budget), then fits Gaussian mixtures with a variability knob s
(separable NRC-2, overlapping NRC-2b). Every layer gets its spectrum, ranks under the presets,
d_K/‖W‖_F, NC1/TCV/CDNV of H_{l−1}, the stationarity residual and the non-stationary bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rankscope.experiments.base import Claim, Experiment, Result, RunContext
from rankscope.experiments.collapse import nrc_claims
from rankscope.experiments.collapse.data import digits_split
from rankscope.experiments.collapse.nrc_runs import (
    NetworkRun,
    adam_sweep,
    lbfgs_sweep,
    mixture_sweep,
)

__all__ = [
    "CLAIMS",
    "EXPERIMENT",
    "PRESETS",
    "AdamConfig",
    "Config",
    "LbfgsConfig",
    "MixtureConfig",
    "Summary",
    "run",
]

PAPER = "arXiv:2402.03991"


@dataclass(frozen=True)
class LbfgsConfig:
    """Full-batch L-BFGS per λ of ``lams``: ``rounds`` restarts of ``iters`` strong-Wolfe
    iterations with a history of ``history`` pairs (docs/results.md NRC-1b)."""

    lams: tuple[float, ...] = (1e-3, 1e-2)
    rounds: int = 3
    iters: int = 400
    history: int = 20


@dataclass(frozen=True)
class AdamConfig:
    """``steps`` full-batch Adam at ``lr``, then ``gd_steps`` full-batch GD at ``gd_lr``, all λ
    of ``lams`` as one vectorized ensemble (empty: skipped) (docs/results.md NRC-1)."""

    lams: tuple[float, ...] = (1e-4, 1e-3, 3e-3, 1e-2)
    steps: int = 2500
    lr: float = 1e-3
    gd_steps: int = 1000
    gd_lr: float = 0.05


@dataclass(frozen=True)
class MixtureConfig:
    """K = ``classes`` centres ~ N(0, I_dim), ``per_class`` points per class, x = centre + s·ε
    for s in ``spreads``; MLP dim-``widths``-K at λ = ``lam`` by L-BFGS (``rounds`` ×
    ``iters``, history ``history``) (docs/results.md NRC-2, NRC-2b)."""

    spreads: tuple[float, ...] = (0.0, 0.1, 0.3, 1.0)
    dim: int = 40
    classes: int = 5
    per_class: int = 60
    widths: tuple[int, ...] = (64, 64)
    lam: float = 1e-2
    rounds: int = 3
    iters: int = 400
    history: int = 20


@dataclass(frozen=True)
class Config:
    """Digits MLP 64-w-w-w-10 (ReLU, no biases, He init, float64, cross-entropy).

    ``n_train = 0`` keeps the whole training split (1797·(1 − test_fraction) digits).
    Sub-studies: ``lbfgs`` (near-critical points), ``adam`` (a fixed Adam→GD budget), ``gmm``
    (separable mixtures) and ``overlap`` (overlapping mixtures). ``log_points`` log-spaced
    measurements per training run.
    """

    widths: tuple[int, ...] = (64, 64, 64)
    n_train: int = 0
    test_fraction: float = 0.2
    lbfgs: LbfgsConfig = field(default_factory=LbfgsConfig)
    adam: AdamConfig = field(default_factory=AdamConfig)
    gmm: MixtureConfig = field(default_factory=MixtureConfig)
    overlap: MixtureConfig = field(
        default_factory=lambda: MixtureConfig(spreads=(0.5, 1.0, 2.0, 3.0), dim=10)
    )
    log_points: int = 10

    def __post_init__(self) -> None:
        if len(self.widths) < 3:
            raise ValueError(
                f"widths needs >= 3 hidden layers (W2, W3 are claimed), got {self.widths}"
            )
        lams = (*self.lbfgs.lams, *self.adam.lams, self.gmm.lam, self.overlap.lam)
        if any(lam <= 0 for lam in lams):
            raise ValueError(f"every λ must be > 0 (the bound divides by λ), got {lams}")


@dataclass(frozen=True)
class Summary:
    """One seed: every trained network of every sub-study with its per-layer measurements."""

    K: int  # digits classes
    n_train: int
    data: str
    objective: str
    nrank: str
    global_mean: str
    lbfgs: list[NetworkRun]
    adam: list[NetworkRun]
    gmm: list[NetworkRun]
    gmm_overlap: list[NetworkRun]


_SMOKE_MIX = {"per_class": 20, "widths": (16, 16), "rounds": 1, "iters": 60}

PRESETS = {
    "smoke": Config(
        widths=(24, 24, 24),
        n_train=300,
        lbfgs=LbfgsConfig(rounds=1, iters=60),
        adam=AdamConfig(steps=200, lr=1e-2, gd_steps=50),
        gmm=MixtureConfig(spreads=(0.0, 1.0), dim=12, **_SMOKE_MIX),
        overlap=MixtureConfig(spreads=(0.5, 2.0), dim=6, **_SMOKE_MIX),
        log_points=4,
    ),
    "default": Config(),
    "paper": Config(lbfgs=LbfgsConfig(lams=(1e-4, 1e-3, 3e-3, 1e-2))),
}


def run(config: Config, ctx: RunContext) -> Result:
    split = digits_split(
        ctx.rng, n_train=config.n_train or None, test_fraction=config.test_fraction
    ).to(ctx.device)
    lb = config.lbfgs
    lbfgs = lbfgs_sweep(
        ctx,
        split,
        lb.lams,
        widths=config.widths,
        rounds=lb.rounds,
        iters=lb.iters,
        history=lb.history,
        log_points=config.log_points,
        progress=(0.0, 0.3),
    )
    adam = adam_sweep(config, ctx, split, progress=(0.3, 0.8))
    mix = {"ctx": ctx, "log_points": config.log_points}
    gmm = mixture_sweep(config.gmm, overlap=False, progress=(0.8, 0.9), **mix)
    overlap = mixture_sweep(config.overlap, overlap=True, progress=(0.9, 1.0), **mix)
    summary = Summary(
        K=split.num_classes,
        n_train=split.n_train,
        data=split.description,
        objective="J = mean CE + (λ/2)·Σ_l ‖W_l‖_F² (rankscope.train l2 = λ/2); no biases",
        nrank="rel_1e-2: #{s_i > 1e-2·s_1}",
        global_mean="sample",
        lbfgs=lbfgs,
        adam=adam,
        gmm=gmm,
        gmm_overlap=overlap,
    )
    return Result(summary=summary, records=ctx.log.freeze())


_P2_STATEMENT = (
    "Adam protocol: nrank_{1e-2}(W_l), l = 2, 3, strictly decreases along "
    "λ ∈ {1e-4, 1e-3, 3e-3, 1e-2}, and nrank(W_3) ≤ K + 2 at λ = 1e-2 (empirical trend)."
)

CLAIMS = (
    Claim(
        "P1",
        PAPER,
        "The non-stationary bounds s_{K+1}(W_l) ≤ ‖R_l‖₂ + ‖Δ_l(H−M)ᵀ‖₂/(λN) and "
        "d_K^F(W_l) ≤ ‖R_l‖_F + ‖Δ_l‖_F‖H−M‖_F/(λN) hold for every layer and λ.",
        "every (layer, λ, sub-run)",
        check=nrc_claims.p1,
        invert=nrc_claims.invert_p1,
    ),
    Claim(
        "P3'",
        PAPER,
        "For l = 2, 3 the relative tail d_K^F(W_l)/‖W_l‖_F is strictly smaller at "
        "λ = 1e-2 than at λ = 1e-3, under each protocol run.",
        "tail(1e-2) < tail(1e-3)",
        check=nrc_claims.p3_prime,
        invert=nrc_claims.invert_p3_prime,
    ),
    Claim(
        "P5",
        PAPER,
        "Under L-BFGS (near-critical points), nrank_{1e-2}(W_3) ≤ K for λ ≥ 1e-3.",
        "nrank(W3) ≤ 10",
        check=nrc_claims.p5,
        invert=nrc_claims.invert_p5,
    ),
    Claim(
        "P3",
        PAPER,
        "Adam protocol: the relative tail of W_2 and W_3 falls by ≥ 10× from λ = 1e-4 to λ = 1e-2.",
        "fall factor ≥ 10",
        check=nrc_claims.p3,
        invert=nrc_claims.invert_p3,
    ),
    Claim(
        "P2",
        PAPER,
        _P2_STATEMENT,
        "strictly decreasing; nrank(W3) ≤ 12",
        check=nrc_claims.p2,
        invert=nrc_claims.invert_p2,
        hard=False,
    ),
    Claim(
        "NRC-2",
        PAPER,
        "Separable Gaussian mixture at λ = 1e-2: nrank_{1e-2}(W_1) ≤ K at s = 0, "
        "and the bound holds for every spread s.",
        "nrank(W1) ≤ 5 at s = 0; bound holds",
        check=nrc_claims.nrc2,
        invert=nrc_claims.invert_nrc2,
    ),
    Claim(
        "NRC-2b",
        PAPER,
        "Overlapping classes (outcome unknown, reported): the relative tail of "
        "W_1 rises with the within-class spread s.",
        "exploratory: increasing in s",
        check=nrc_claims.nrc2b,
        invert=nrc_claims.invert_nrc2b,
        hard=False,
    ),
)

EXPERIMENT = Experiment(
    id="neural-rank-collapse",
    title="Neural rank collapse: weight decay and within-class variability bound layer ranks",
    papers=(PAPER,),
    description=(
        "MLPs on scikit-learn digits over a weight-decay grid, fitted to near-critical points by "
        "full-batch L-BFGS (float64) and, separately, by a fixed Adam-then-GD budget. Per layer: "
        "singular values, ranks, the distance to rank K relative to ‖W‖_F, neural-collapse "
        "statistics of the layer's input, the stationarity residual and the non-stationary "
        "bound σ_{K+1}(W_l) ≤ ‖R_l‖₂ + ‖Δ_l(H−M)ᵀ‖₂/(λN). Gaussian mixtures vary the within-class "
        "spread s (separable and overlapping)."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 1, "paper": 3},
)
