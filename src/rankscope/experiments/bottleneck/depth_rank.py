"""`depth-rank`: the L2 cost of a deep ReLU net grows like Rank_BN·L (Jacot, arXiv 2209.15055).

(a) A teacher f* = h∘g with g: R^10 → R^2 and h: R^2 → R^10 random ReLU nets (Rank_BN ≤ 2).
Students of depth L ∈ ``depths`` (biases, ‖θ‖² counting biases by default) minimize
C + λ‖θ‖² by full-batch Adam, then L-BFGS in float64 (‖∇J‖ reported). The slope a of
‖θ‖² ≈ a·L + b estimates R⁽⁰⁾ (definitions §11 (c)); the middle-layer numerical rank is read as
proxy (b) (s_i > τ·s_1 of the centred representation, median over middle layers) at the
depths with ‖θ‖² < 2·L·Rank_BN, with proxy (a) on the weights reported.
(b) A denoising autoencoder: a random smooth closed curve in R^10 plus N(0, σ²) noise; a
deep L2-regularized autoencoder maps held-out noisy points onto the curve (distance ratio
< 0.5), a depth-2 one does no more than the projection onto the curve's span. Records:
``sq_norm`` (step = L), ``layer_norm`` / ``sv`` per layer (layer ``L{depth}/W{l}``), the
autoencoder's 2-D PCA views ``view/*`` and the training curves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

from rankscope.experiments.base import (
    Check,
    Claim,
    Experiment,
    Result,
    RunContext,
    check,
    inconclusive,
)
from rankscope.experiments.bottleneck._common import fit_two_phase, mse_sum, spectra
from rankscope.experiments.bottleneck.data import bottleneck_teacher, trig_curve
from rankscope.metrics import (
    count_above,
    fit_line,
    middle_layers,
    nearest_distance,
    singular_values,
    weight_count_rank,
)
from rankscope.models import MLP, autoencoder, bottleneck_layer
from rankscope.models.mlp import l2_params_for

__all__ = ["CLAIMS", "EXPERIMENT", "PRESETS", "Config", "Summary", "run"]

PAPER = "arXiv:2209.15055"


@dataclass(frozen=True)
class SlopeConfig:
    """(a) Teacher d → k → d (hidden ``teacher_width``), N = ``n_train``; students of width
    ``width`` at every depth, initialised by ``init`` (``he`` or ``lecun``); λ‖θ‖² (biases
    counted when ``count_bias_in_norm``).

    The default depths start at 7 and reach 19 (docs/decisions.md, item 46): at L <= 5 the
    R⁽²⁾/L term of the expansion dominates (‖θ‖² at L = 3 is no smaller than at L = 5), so a
    straight line through them does not measure R⁽⁰⁾; He init keeps a depth-19 ReLU student
    off the f = 0 critical point that LeCun init falls into at λ = 1e-2. 300 L-BFGS steps
    (item 50): after 30 the deep fits still had ‖∇J‖ up to 0.4 and a ‖θ‖² too large by up to
    20, which bent the slope upward."""

    depths: tuple[int, ...] = (7, 11, 15, 19)
    dim: int = 10
    k: int = 2
    teacher_width: int = 32
    n_train: int = 100
    width: int = 32
    lam: float = 1e-2
    count_bias_in_norm: bool = True
    adam_steps: int = 1000
    adam_lr: float = 3e-3
    lbfgs_steps: int = 300
    tau: float = 0.1
    init: str = "he"

    def __post_init__(self) -> None:
        if len(self.depths) < 3 or min(self.depths) < 2:
            raise ValueError(f"depths needs >= 3 depths >= 2 for a slope, got {self.depths}")
        if not self.lam > 0:
            raise ValueError(f"lam must be > 0, got {self.lam}")
        if self.init not in ("he", "lecun"):
            raise ValueError(f"init must be 'he' or 'lecun', got {self.init!r}")


@dataclass(frozen=True)
class DenoiseConfig:
    """(b) Curve of ``degree`` in R^dim, noise std ``noise``; autoencoders of depth ``depth``
    and ``control_depth``; distances to ``n_dense`` clean curve samples."""

    dim: int = 10
    degree: int = 3
    noise: float = 0.05
    n_train: int = 200
    n_test: int = 200
    n_dense: int = 10000
    depth: int = 8
    control_depth: int = 2
    width: int = 32
    lam: float = 1e-3
    adam_steps: int = 1000
    adam_lr: float = 3e-3
    lbfgs_steps: int = 30
    tau: float = 0.1

    def __post_init__(self) -> None:
        if self.control_depth >= self.depth or self.control_depth < 2:
            raise ValueError(
                f"need 2 <= control_depth < depth, got {self.control_depth}, {self.depth}"
            )


@dataclass(frozen=True)
class Config:
    slope: SlopeConfig = field(default_factory=SlopeConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)


PRESETS = {
    "smoke": Config(
        slope=SlopeConfig(depths=(2, 3, 4), n_train=30, width=12, adam_steps=60, lbfgs_steps=2),
        denoise=DenoiseConfig(
            n_train=40, n_test=30, n_dense=500, depth=4, width=12, adam_steps=60, lbfgs_steps=2
        ),
    ),
    "default": Config(),
    "paper": Config(
        slope=SlopeConfig(
            depths=(3, 5, 7, 9, 11),
            n_train=500,
            width=100,
            lam=1e-4,
            adam_steps=5000,
            lbfgs_steps=200,
        ),
        denoise=DenoiseConfig(n_train=500, n_test=500, width=100, lam=1e-4, adam_steps=5000),
    ),
}


@dataclass(frozen=True)
class DepthFit:
    depth: int
    sq_norm: float
    data_loss: float
    rel_mse: float  # data loss / mean ‖y‖²
    grad_norm: float
    layer_norms: list[float]
    layer_ranks: list[int]  # #{s_i > τ s_1} per W_ℓ
    middle_rank: float  # proxy (a): median over middle layers
    rep_ranks: list[int]  # proxy (b): #{s_i > τ s_1} of the centred h_ℓ, per middle layer
    rep_rank: float  # proxy (b): median over middle layers
    third_share: float  # median over middle layers of s_3/s_1 of the centred h_ℓ
    balance_gap: float  # max_ℓ |‖W_ℓ+1‖² − ‖W_ℓ‖² − c·‖b_ℓ‖²| / mean_ℓ ‖W_ℓ‖² (0 if critical)


@dataclass(frozen=True)
class AutoencoderFit:
    depth: int
    ratio: float  # mean dist(output, curve) / mean dist(input, curve), held out
    dist_in: float
    dist_out: float
    middle_rank: int  # #{s_i > τ s_1} of the centred bottleneck representation
    weight_rank: float  # proxy (a) on the weights
    sq_norm: float
    grad_norm: float


@dataclass(frozen=True)
class Summary:
    fits: list[DepthFit]
    slope: float
    slope_stderr: float
    intercept: float
    r2: float
    deep: AutoencoderFit
    control: AutoencoderFit
    linear_ratio: float  # the autoencoders' ratio for the projection onto the curve's span
    lam: float
    count_bias_in_norm: bool
    tau: float


def _fit_depth(cfg: SlopeConfig, task, depth: int, ctx: RunContext) -> DepthFit:
    dims = [cfg.dim, *([cfg.width] * (depth - 1)), cfg.dim]
    net = MLP(
        dims, "relu", True, init=cfg.init, generator=ctx.child_generator(depth), dtype=torch.float64
    ).to(ctx.device)
    x, y = task.x.to(ctx.device), task.y.to(ctx.device)

    def loss(m):
        return mse_sum(m(x), y)

    rep = fit_two_phase(
        net,
        loss,
        l2=cfg.lam,
        l2_params=l2_params_for(cfg.count_bias_in_norm),
        adam_steps=cfg.adam_steps,
        adam_lr=cfg.adam_lr,
        lbfgs_steps=cfg.lbfgs_steps,
        log=ctx.log,
        tag=f"L{depth}",
    )
    sv = spectra(net.weights)
    norms = net.layer_norms(cfg.count_bias_in_norm)
    sq = float(sum(norms))
    gap = _balance_gap(net, cfg.count_bias_in_norm)
    with torch.no_grad():
        _, hs, _ = net.forward_with_hidden(x)
    rep_sv = [singular_values(hs[l] - hs[l].mean(0)) for l in middle_layers(depth)]
    rep_ranks = [int(count_above(s, cfg.tau)) for s in rep_sv]
    thirds = [float(s[2] / s[0]) if s.numel() > 2 and s[0] > 0 else 0.0 for s in rep_sv]
    ctx.log.log("sq_norm", sq, step=depth)
    for l, (s, nrm) in enumerate(zip(sv, norms, strict=True), 1):
        ctx.log.log_vector("sv", s, step=depth, layer=f"L{depth}/W{l}")
        ctx.log.log("layer_norm", nrm, step=depth, layer=f"L{depth}/W{l}")
    return DepthFit(
        depth=depth,
        sq_norm=sq,
        data_loss=rep.data_loss,
        rel_mse=rep.data_loss / float((y**2).sum(1).mean()),
        grad_norm=rep.grad_norm,
        layer_norms=norms,
        layer_ranks=[int(count_above(s, cfg.tau)) for s in sv],
        middle_rank=weight_count_rank(sv, cfg.tau),
        rep_ranks=rep_ranks,
        rep_rank=float(np.median(rep_ranks)),
        third_share=float(np.median(thirds)),
        balance_gap=gap,
    )


def _balance_gap(net: MLP, count_bias: bool) -> float:
    """How far the fit is from the rescaling identity of a critical point.

    Scaling (W_ℓ, b_ℓ) by α and W_ℓ+1 by 1/α leaves f unchanged, so at a critical point of
    C + λ‖θ‖² the derivative in α vanishes: ‖W_ℓ+1‖² = ‖W_ℓ‖² + ‖b_ℓ‖² when biases are in
    the norm, ‖W_ℓ+1‖² = ‖W_ℓ‖² when they are not. With biases counted the layer norms
    therefore grow with ℓ at a critical point; they are not equal."""
    with torch.no_grad():
        w = [float((m * m).sum()) for m in net.weights]
        b = [float((v * v).sum()) for v in net.biases] if count_bias else [0.0] * len(w)
    if len(w) < 2:
        return 0.0
    dev = max(abs(w[i + 1] - w[i] - b[i]) for i in range(len(w) - 1))
    return dev / (sum(w) / len(w))


def _pca_basis(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu = points.mean(0)
    _, _, vh = torch.linalg.svd(points - mu, full_matrices=False)
    return mu, vh[:2].mT


def linear_denoise_ratio(dense: torch.Tensor, noisy: torch.Tensor) -> float:
    """Distance ratio of the orthogonal projection onto the affine span of the clean curve.

    A degree-m trigonometric curve spans 2m dimensions, so this projection removes the noise
    orthogonal to that span and nothing else: for small noise the ratio is
    √((2m − 1)/(dim − 1)) (≈ 0.745 for m = 3 in R^10), what a network that learns only the
    linear structure achieves (docs/claims-changelog.md, DR-3)."""
    mu = dense.mean(0)
    _, s, vh = torch.linalg.svd(dense - mu, full_matrices=False)
    basis = vh[: int((s > 1e-9 * s[0]).sum())].mT
    proj = mu + (noisy - mu) @ basis @ basis.mT
    return float(nearest_distance(proj, dense).mean() / nearest_distance(noisy, dense).mean())


def _fit_autoencoder(cfg: DenoiseConfig, curve, test, depth: int, ctx: RunContext, tag: str):
    net = autoencoder(
        cfg.dim, cfg.width, depth, init="lecun", generator=ctx.child_generator(1000 + depth)
    ).to(ctx.device)
    x = curve.noisy.to(ctx.device)

    def loss(m):
        return mse_sum(m(x), x)

    rep = fit_two_phase(
        net,
        loss,
        l2=cfg.lam,
        l2_params="all",
        adam_steps=cfg.adam_steps,
        adam_lr=cfg.adam_lr,
        lbfgs_steps=cfg.lbfgs_steps,
        log=ctx.log,
        tag=tag,
    )
    with torch.no_grad():
        out, hs, _ = net.forward_with_hidden(test.noisy.to(ctx.device))
    dense = curve.dense.to(ctx.device)
    d_in = float(nearest_distance(test.noisy, dense).mean())
    d_out = float(nearest_distance(out, dense).mean())
    h = hs[bottleneck_layer(depth)]
    rep_rank = int(count_above(singular_values(h - h.mean(0)), cfg.tau))
    mu, basis = _pca_basis(dense)
    view = (out - mu) @ basis
    for j in range(2):
        ctx.log.log_vector(f"view/{tag}", view[:, j], step=j)
    return AutoencoderFit(
        depth=depth,
        ratio=d_out / d_in,
        dist_in=d_in,
        dist_out=d_out,
        middle_rank=rep_rank,
        weight_rank=weight_count_rank(spectra(net.weights), cfg.tau),
        sq_norm=float(net.squared_norm(True).detach()),
        grad_norm=rep.grad_norm,
    )


def run(config: Config, ctx: RunContext) -> Result:
    a, b = config.slope, config.denoise
    task = bottleneck_teacher(
        ctx.child_generator(0),
        d_in=a.dim,
        d_out=a.dim,
        k=a.k,
        hidden=a.teacher_width,
        n=a.n_train,
    )
    fits = []
    for i, depth in enumerate(a.depths):
        fits.append(_fit_depth(a, task, depth, ctx))
        ctx.progress((i + 1) / (len(a.depths) + 2))
    line = fit_line([f.depth for f in fits], [f.sq_norm for f in fits])
    g = ctx.child_generator(500)
    curve = trig_curve(g, dim=b.dim, degree=b.degree, n=b.n_train, noise=b.noise, n_dense=b.n_dense)
    test = _same_curve_points(ctx.child_generator(501), b, curve)  # held out, same curve
    mu, basis = _pca_basis(curve.dense)
    for name, pts in (("clean", curve.dense[:: max(1, b.n_dense // 400)]), ("noisy", test.noisy)):
        view = (pts - mu) @ basis
        for j in range(2):
            ctx.log.log_vector(f"view/{name}", view[:, j], step=j)
    deep = _fit_autoencoder(b, curve, test, b.depth, ctx, "deep")
    ctx.progress((len(a.depths) + 1) / (len(a.depths) + 2))
    control = _fit_autoencoder(b, curve, test, b.control_depth, ctx, "control")
    summary = Summary(
        fits=fits,
        slope=line.slope,
        slope_stderr=line.slope_stderr,
        intercept=line.intercept,
        r2=line.r2,
        deep=deep,
        control=control,
        linear_ratio=linear_denoise_ratio(curve.dense, test.noisy),
        lam=a.lam,
        count_bias_in_norm=a.count_bias_in_norm,
        tau=a.tau,
    )
    return Result(summary=summary, records=ctx.log.freeze())


def _same_curve_points(g: torch.Generator, b: DenoiseConfig, curve):
    """Held-out noisy points on the training curve: pick dense samples at random, add noise."""
    idx = torch.randint(0, curve.dense.shape[0], (b.n_test,), generator=g)
    clean = curve.dense[idx]
    noisy = clean + b.noise * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    return dataclasses.replace(curve, clean=clean, noisy=noisy)


# ---------------------------------------------------------------- claims

SLOPE_BAND = (1.6, 2.6)
RANK_BN = 2  # the teacher's bottleneck rank (SlopeConfig.k)
RATIO_DEEP, RATIO_CONTROL = 0.5, 0.8


def _three_term(depths: list[float], sq: list[float]) -> float:
    """a of the least-squares fit ‖θ‖² ≈ a·L + b + c/L (the expansion with its R⁽²⁾/L term);
    NaN with fewer than 4 depths."""
    if len(depths) < 4:
        return float("nan")
    ls = np.asarray(depths, dtype=float)
    x = np.stack([ls, np.ones_like(ls), 1 / ls], 1)
    return float(np.linalg.lstsq(x, np.asarray(sq, dtype=float), rcond=None)[0][0])


def _slope(r: Result) -> Check:
    s = r.summary
    lo, hi = SLOPE_BAND
    depths, sq = [f.depth for f in s.fits], [f.sq_norm for f in s.fits]
    deep = [(d, v) for d, v in zip(depths, sq, strict=True) if d >= 5]
    later = fit_line(*zip(*deep, strict=True)).slope if len(deep) >= 2 else float("nan")
    ok = lo <= s.slope <= hi
    worst = max(f.grad_norm for f in s.fits)
    return check(
        ok,
        headline=(
            f"slope {s.slope:.2f} ± {s.slope_stderr:.2f} over L = {s.fits[0].depth}…"
            f"{s.fits[-1].depth} vs Rank_BN = 2 (band [{lo}, {hi}]; max ‖∇J‖ {worst:.1e}, "
            f"rescaling identity to {max(f.balance_gap for f in s.fits):.1%})"
            f" → {'pass' if ok else 'fail'}"
        ),
        slope=s.slope,
        slope_stderr=s.slope_stderr,
        intercept=s.intercept,
        r2=s.r2,
        sq_norms={f.depth: f.sq_norm for f in s.fits},
        grad_norms={f.depth: f.grad_norm for f in s.fits},
        balance_gaps={f.depth: f.balance_gap for f in s.fits},
        diagnostic_three_term_slope=_three_term(depths, sq),
        diagnostic_slope_depth_ge_5=later,
    )


def bottleneck_depths(s: Summary, rank: int = RANK_BN) -> list[DepthFit]:
    """The fits in the regime of the bottleneck theorem: ‖θ‖² < 2·L·R⁽⁰⁾ with R⁽⁰⁾ = Rank_BN.

    The theorem of 2305.19008 covers ‖θ‖² ≤ L·R⁽⁰⁾ + O(1) with the O(1) term small against
    L·R⁽⁰⁾. Here the remainder ‖θ‖² − L·R⁽⁰⁾ of each fit must be below L·R⁽⁰⁾; shallower or
    less optimal fits may trade a higher inner dimension for regularity (the R⁽¹⁾ term), so
    they are not tested (docs/claims-changelog.md, DR-2)."""
    return [f for f in s.fits if f.sq_norm < 2 * rank * f.depth]


def _middle_rank(r: Result) -> Check:
    s = r.summary
    tested = bottleneck_depths(s)
    at = " / ".join(str(f.depth) for f in s.fits)
    reps = " / ".join(f"{f.rep_rank:g}" for f in s.fits)
    thirds = " / ".join(f"{f.third_share:.2f}" for f in s.fits)
    weights = " / ".join(f"{f.middle_rank:g}" for f in s.fits)
    numbers = dict(
        representation_ranks={f.depth: f.rep_rank for f in s.fits},
        representation_layer_ranks={f.depth: f.rep_ranks for f in s.fits},
        third_shares={f.depth: f.third_share for f in s.fits},
        weight_ranks={f.depth: f.middle_rank for f in s.fits},
        all_layer_ranks={f.depth: f.layer_ranks for f in s.fits},
        remainder_over_l_r0={f.depth: f.sq_norm / (RANK_BN * f.depth) - 1 for f in s.fits},
        tested_depths=[f.depth for f in tested],
    )
    shown = (
        f"centred middle representation rank (τ = {s.tau}) {reps} at L = {at} "
        f"(s_3/s_1 {thirds}; weight count {weights})"
    )
    if not tested:
        return inconclusive(
            f"no depth with ‖θ‖² < 2·L·R⁽⁰⁾ = {2 * RANK_BN}·L",
            headline=f"{shown}; no fit has ‖θ‖² < {2 * RANK_BN}·L: not tested",
            **numbers,
        )
    ok = all(f.rep_rank == 2 for f in tested)
    return check(
        ok,
        headline=f"{shown}; tested where ‖θ‖² < {2 * RANK_BN}·L "
        f"(L = {', '.join(str(f.depth) for f in tested)}): expected 2 → "
        + ("pass" if ok else "fail"),
        **numbers,
    )


def _denoise(r: Result) -> Check:
    s = r.summary
    lin = s.linear_ratio
    floor = RATIO_CONTROL * lin
    ok = s.deep.ratio < RATIO_DEEP and s.control.ratio >= floor
    return check(
        ok,
        headline=(
            f"distance ratio {s.deep.ratio:.2f} (depth {s.deep.depth}, need < {RATIO_DEEP}) "
            f"vs {s.control.ratio:.2f} (depth {s.control.depth}, need >= {RATIO_CONTROL}·"
            f"{lin:.3f} = {floor:.2f}, the projection onto the curve's span) → "
            + ("pass" if ok else "fail")
        ),
        deep_ratio=s.deep.ratio,
        control_ratio=s.control.ratio,
        linear_ratio=lin,
        control_floor=floor,
        dist_in=s.deep.dist_in,
        deep_dist_out=s.deep.dist_out,
        control_dist_out=s.control.dist_out,
    )


def _ae_rank(r: Result) -> Check:
    s = r.summary
    ok = s.deep.middle_rank in (1, 2)
    return check(
        ok,
        headline=(
            f"bottleneck representation rank {s.deep.middle_rank} (τ = {s.tau}; weights "
            f"{s.deep.weight_rank:g}) of the depth-{s.deep.depth} autoencoder; expected 1 or 2"
            f" → {'pass' if ok else 'fail'}"
        ),
        representation_rank=s.deep.middle_rank,
        weight_rank=s.deep.weight_rank,
        control_rank=s.control.middle_rank,
    )


def _invert_slope(s: Summary) -> Summary:
    return dataclasses.replace(s, slope=2 * SLOPE_BAND[1])


def _invert_middle(s: Summary) -> Summary:
    return dataclasses.replace(
        s, fits=[dataclasses.replace(f, rep_rank=6.0, sq_norm=float(f.depth)) for f in s.fits]
    )


def _invert_denoise(s: Summary) -> Summary:
    return dataclasses.replace(s, deep=dataclasses.replace(s.deep, ratio=1.0))


def _invert_ae_rank(s: Summary) -> Summary:
    return dataclasses.replace(s, deep=dataclasses.replace(s.deep, middle_rank=8))


CLAIMS = (
    Claim(
        "DR-1",
        PAPER,
        "‖θ‖² of near-optimal students grows linearly in L with slope ≈ R⁽⁰⁾ = Rank_BN = 2.",
        f"slope in [{SLOPE_BAND[0]}, {SLOPE_BAND[1]}]",
        check=_slope,
        invert=_invert_slope,
    ),
    Claim(
        "DR-2",
        PAPER,
        "Where the L·R⁽⁰⁾ term dominates the cost (‖θ‖² < 2·L·R⁽⁰⁾, R⁽⁰⁾ = 2), the centred "
        "middle representations have numerical rank 2 (τ = 0.1, definitions §11 proxy (b)).",
        "median rank 2 at every depth with ‖θ‖² < 4·L",
        check=_middle_rank,
        invert=_invert_middle,
    ),
    Claim(
        "DR-3",
        PAPER,
        "A deep L2-regularized autoencoder denoises a curve (held-out distance ratio < 0.5); "
        "a depth-2 one does no more than project onto the curve's linear span (ratio >= 0.8× "
        "that projection's ratio).",
        "deep < 0.5, control >= 0.8·linear-projection ratio",
        check=_denoise,
        invert=_invert_denoise,
    ),
    Claim(
        "DR-4",
        PAPER,
        "The deep autoencoder's middle-layer representation has rank 1 or 2.",
        "rank in {1, 2}",
        check=_ae_rank,
        invert=_invert_ae_rank,
    ),
)

EXPERIMENT = Experiment(
    id="depth-rank",
    title="Depth and rank: ‖θ‖² ≈ Rank_BN·L and denoising autoencoders",
    papers=(PAPER,),
    description=(
        "L2-regularized ReLU students of growing depth fit a rank-2 teacher; the slope of "
        "‖θ‖² against L estimates the bottleneck rank, and a deep autoencoder denoises a curve."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
