"""`bottleneck-structure`: deep L2-regularized nets become R⁽⁰⁾-dimensional in the middle
(Jacot, arXiv 2305.19008).

Task: x ~ N(0, I_4), f*(x) = h(‖x_{1:2}‖, ‖x_{3:4}‖) with random Fourier features h (invariant
under SO(2)×SO(2): Rank_BN ≤ 2). ReLU students of depth L ∈ ``depths`` (12–24, He init:
LeCun init and L ≤ 12 stay outside the regime ‖θ‖² ≈ L·R⁽⁰⁾ + R⁽¹⁾, docs/claims-changelog.md)
with biases minimize C + λΣ‖W_ℓ‖² (weights only) by full-batch Adam, then L-BFGS in float64
(‖∇J‖ reported); each depth trains ``restarts`` students from independent inits and measures
the one with the lowest J.
Measured per depth: the spectra of the middle W_ℓ (2 values near s_1, the rest small and
shrinking with L), the tail Σ_{i>2}s_i², ‖W_ℓ‖_F², the held-out R² of predicting the two radii
from the top-2 principal components of the middle representation, and the median
log|Jf(x)|_+ over the top 2 singular values (for the R⁽¹⁾ bound; reported). Linear sanity
check: a deep linear net fitting a known A against L·Rank A + 2Σlog s + (2/L)Σ(log s)².
Records: ``sv`` (step = L, layer ``L{depth}/W{l}``), ``tail`` and ``r2`` (step = L),
``linear_sq_norm``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

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
from rankscope.experiments.bottleneck.data import radial_task
from rankscope.metrics import (
    depth_expansion,
    fit_line,
    jacobian_log_pdet,
    middle_layers,
    tail_energy,
)
from rankscope.models import MLP, DeepLinear

__all__ = ["CLAIMS", "EXPERIMENT", "PRESETS", "Config", "Summary", "run"]

PAPER = "arXiv:2305.19008"


@dataclass(frozen=True)
class StudentConfig:
    depths: tuple[int, ...] = (12, 16, 20, 24)
    width: int = 32
    n_train: int = 200
    n_test: int = 200
    d_out: int = 4
    n_features: int = 8
    lam: float = 3e-3
    adam_steps: int = 3000
    adam_lr: float = 3e-3
    lbfgs_steps: int = 100
    n_jacobian: int = 50
    init: str = "he"
    restarts: int = 9

    def __post_init__(self) -> None:
        if len(self.depths) < 2:
            raise ValueError(f"depths needs >= 2 depths for a trend, got {self.depths}")
        if not (isinstance(self.restarts, int) and self.restarts >= 1):
            raise ValueError(f"restarts must be an integer >= 1, got {self.restarts!r}")
        if self.init not in ("he", "lecun"):
            raise ValueError(f"init must be 'he' or 'lecun', got {self.init!r}")


@dataclass(frozen=True)
class LinearConfig:
    """A = U diag(singular) Vᵀ (dim × dim); a depth-``depth`` DLN fits it with penalty λ."""

    depth: int = 8
    dim: int = 5
    singular: tuple[float, ...] = (2.0, 1.0, 0.5)
    lam: float = 1e-4
    init_std: float = 0.3
    lbfgs_steps: int = 50


@dataclass(frozen=True)
class Config:
    students: StudentConfig = field(default_factory=StudentConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)


PRESETS = {
    "smoke": Config(
        students=StudentConfig(
            depths=(3, 4),
            width=12,
            n_train=40,
            n_test=40,
            adam_steps=60,
            lbfgs_steps=2,
            n_jacobian=5,
            restarts=2,
        ),
        linear=LinearConfig(depth=4, lbfgs_steps=10),
    ),
    "default": Config(),
    "paper": Config(
        students=StudentConfig(
            width=64, n_train=1000, n_test=1000, lam=1e-4, adam_steps=5000, lbfgs_steps=200
        ),
        linear=LinearConfig(lbfgs_steps=200),
    ),
}


@dataclass(frozen=True)
class DepthStructure:
    depth: int
    middle: list[int]
    frac_two_large: float  # middle layers with exactly 2 s_i >= 0.3 s_1 and the rest <= 0.15 s_1
    mean_tail: float  # mean over middle layers of Σ_{i>2} s_i²
    middle_norms: list[float]  # ‖W_ℓ‖_F² of the middle layers
    r2: float  # held-out R² of the radii from the top-2 PCs of the middle representation
    median_log_pdet: float  # median log|Jf(x)|_+ over the top 2 singular values
    sq_norm: float
    data_loss: float
    grad_norm: float
    # objective J = C + λΣ‖W_ℓ‖² of every restart; the measured one is the lowest
    restart_objectives: list[float] = field(default_factory=list)
    chosen: int = 0


@dataclass(frozen=True)
class LinearCheck:
    depth: int
    sq_norm: float
    expansion: float
    exact: float  # L·Σ s_i^{2/L}
    rel_error: float
    fit_error: float  # ‖W_L⋯W_1 − A‖/‖A‖
    grad_norm: float


@dataclass(frozen=True)
class Summary:
    depths: list[DepthStructure]
    tail_slope: float  # log-log slope of mean_tail against L
    linear: LinearCheck
    lam: float


def _r2(train_h, test_h, train_r, test_r) -> float:
    """Held-out R² of linear regression of r on the top-2 PCs of h (fit on the train split).

    PCA from ``eigh`` of the covariance and regression from the 3×3 normal equations; the
    value is rounded to 12 digits because LAPACK's blocked paths differ in the last bits
    between calls (records must be identical for a seed)."""
    mu = train_h.mean(0)
    centred = train_h - mu
    _, vecs = torch.linalg.eigh(centred.mT @ centred)
    basis = vecs[:, -2:].flip(1)

    def design(h):
        z = (h - mu) @ basis
        return torch.cat([z, torch.ones(z.shape[0], 1, dtype=z.dtype)], 1)

    d = design(train_h)
    coef = torch.linalg.solve(d.mT @ d, d.mT @ train_r)
    pred = design(test_h) @ coef
    ss_res = ((test_r - pred) ** 2).sum(0)
    ss_tot = ((test_r - test_r.mean(0)) ** 2).sum(0)
    return round(float((1 - ss_res / ss_tot).mean()), 12)


def _fit_student(cfg: StudentConfig, task, depth: int, ctx: RunContext, restart: int):
    """One student from its own init (restart 0 draws from ``child_generator(depth)``)."""
    dims = [4, *([cfg.width] * (depth - 1)), cfg.d_out]
    g = ctx.child_generator(depth + 1000 * restart)
    net = MLP(dims, "relu", True, init=cfg.init, generator=g, dtype=torch.float64).to(ctx.device)
    x, y = task.x.to(ctx.device), task.y.to(ctx.device)

    def loss(m):
        return mse_sum(m(x), y)

    rep = fit_two_phase(
        net,
        loss,
        l2=cfg.lam,
        l2_params="weights",
        adam_steps=cfg.adam_steps,
        adam_lr=cfg.adam_lr,
        lbfgs_steps=cfg.lbfgs_steps,
        log=ctx.log,
        tag=f"L{depth}" if restart == 0 else f"L{depth}/restart{restart}",
    )
    return net, rep


def _student(cfg: StudentConfig, task, depth: int, ctx: RunContext) -> DepthStructure:
    """The student with the lowest objective J over ``cfg.restarts`` inits, measured.

    The theorem is about near-minimizers (‖θ‖² <= L·R⁽⁰⁾ + O(1)); from one init the fits end
    at critical points whose data losses differ tenfold between seeds. J alone picks the
    restart, never a claim's measurement (docs/decisions.md, items 51 and 55)."""
    fits = [_fit_student(cfg, task, depth, ctx, r) for r in range(cfg.restarts)]
    objectives = [rep.objective for _, rep in fits]
    chosen = min(range(len(fits)), key=objectives.__getitem__)
    net, rep = fits[chosen]
    x = task.x.to(ctx.device)
    sv = spectra(net.weights)
    mid = middle_layers(depth)
    good, tails, norms = 0, [], []
    for l in mid:
        s = sv[l - 1]
        rel = s / s[0]
        good += int(int((rel >= 0.3).sum()) == 2 and bool((rel[2:] <= 0.15).all()))
        tails.append(float(tail_energy(s, 2)))
        norms.append(float((s**2).sum()))
    for l, s in enumerate(sv, 1):
        ctx.log.log_vector("sv", s, step=depth, layer=f"L{depth}/W{l}")
    with torch.no_grad():
        _, hs_tr, _ = net.forward_with_hidden(x)
        _, hs_te, _ = net.forward_with_hidden(task.x_test.to(ctx.device))
    h_layer = min(max(1, depth // 2), depth - 1)
    r2 = _r2(hs_tr[h_layer], hs_te[h_layer], task.latent, task.latent_test)
    lp = jacobian_log_pdet(net, task.x_test[: cfg.n_jacobian].to(ctx.device), rank=2)
    mean_tail = sum(tails) / len(tails)
    ctx.log.log("tail", mean_tail, step=depth)
    ctx.log.log("r2", r2, step=depth)
    return DepthStructure(
        depth=depth,
        middle=mid,
        frac_two_large=good / len(mid),
        mean_tail=mean_tail,
        middle_norms=norms,
        r2=r2,
        median_log_pdet=float(lp.median()),
        sq_norm=float(sum((w.detach() ** 2).sum() for w in net.weights)),
        data_loss=rep.data_loss,
        grad_norm=rep.grad_norm,
        restart_objectives=objectives,
        chosen=chosen,
    )


def _linear(cfg: LinearConfig, ctx: RunContext) -> LinearCheck:
    g = ctx.child_generator(900)
    k = len(cfg.singular)
    u, _ = torch.linalg.qr(torch.randn(cfg.dim, cfg.dim, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cfg.dim, cfg.dim, generator=g, dtype=torch.float64))
    s = torch.tensor(cfg.singular, dtype=torch.float64)
    a = u[:, :k] @ torch.diag(s) @ v[:, :k].mT
    net = DeepLinear(
        [cfg.dim] * (cfg.depth + 1), sigma=cfg.init_std, generator=g, dtype=torch.float64
    )

    def loss(m):
        return ((m.product() - a) ** 2).sum()

    rep = fit_two_phase(
        net,
        loss,
        l2=cfg.lam,
        l2_params="weights",
        adam_steps=0,
        adam_lr=1e-3,
        lbfgs_steps=cfg.lbfgs_steps,
        log=ctx.log,
        tag="linear",
    )
    sq = float(sum((w.detach() ** 2).sum() for w in net.weights))
    expansion = float(depth_expansion(s).cost(cfg.depth))
    exact = float(cfg.depth * (s ** (2 / cfg.depth)).sum())
    with torch.no_grad():
        fit = float((net.product() - a).norm() / a.norm())
    ctx.log.log("linear_sq_norm", sq, step=cfg.depth)
    return LinearCheck(
        cfg.depth, sq, expansion, exact, abs(sq - expansion) / expansion, fit, rep.grad_norm
    )


def run(config: Config, ctx: RunContext) -> Result:
    c = config.students
    task = radial_task(
        ctx.child_generator(0), d_out=c.d_out, n_features=c.n_features, n=c.n_train, n_test=c.n_test
    )
    out = []
    for i, depth in enumerate(c.depths):
        out.append(_student(c, task, depth, ctx))
        ctx.progress((i + 1) / (len(c.depths) + 1))
    tails = [max(d.mean_tail, 1e-300) for d in out]
    slope = fit_line([math.log(d.depth) for d in out], [math.log(t) for t in tails]).slope
    lin = _linear(config.linear, ctx)
    summary = Summary(depths=out, tail_slope=slope, linear=lin, lam=c.lam)
    return Result(summary=summary, records=ctx.log.freeze())


# ---------------------------------------------------------------- claims

DEEP = 8  # the bottleneck criteria apply from this depth on (docs/results.md)
HI, LO = 0.3, 0.15
TAIL_SLOPE = -0.5
NORM_BAND = (1.5, 2.7)
R2_MIN = 0.9
LINEAR_TOL = 1e-2


def _deep(s: Summary) -> list[DepthStructure]:
    deep = [d for d in s.depths if d.depth >= DEEP]
    return deep or [max(s.depths, key=lambda d: d.depth)]  # smoke: the deepest


def _two_large(r: Result) -> Check:
    deep = _deep(r.summary)
    fr = {d.depth: d.frac_two_large for d in deep}
    ok = all(v == 1.0 for v in fr.values())
    shown = ", ".join(f"L = {k}: {v:.0%}" for k, v in fr.items())
    return check(
        ok,
        headline=f"middle layers with exactly 2 s_i >= {HI}·s_1 and the rest <= {LO}·s_1: "
        f"{shown} (need 100%) → " + ("pass" if ok else "fail"),
        fraction=fr,
        grad_norms={d.depth: d.grad_norm for d in deep},
        restart_objectives={d.depth: d.restart_objectives for d in deep},
    )


def _tail(r: Result) -> Check:
    s = r.summary
    ok = s.tail_slope < TAIL_SLOPE
    tails = " / ".join(f"{d.mean_tail:.2g}" for d in s.depths)
    at = " / ".join(str(d.depth) for d in s.depths)
    return check(
        ok,
        headline=f"tail Σ_(i>2) s_i² {tails} at L = {at}: log-log slope {s.tail_slope:.2f} "
        f"(need < {TAIL_SLOPE}) → " + ("pass" if ok else "fail"),
        tail_slope=s.tail_slope,
        tails={d.depth: d.mean_tail for d in s.depths},
    )


def norm_extrapolation(s: Summary):
    """Least-squares fit of the mean middle ‖W_ℓ‖_F² against 1/L over every depth.

    At a critical point with unpenalized biases, rescaling (W_ℓ, b_ℓ) by α and W_{ℓ+1} by
    1/α leaves f unchanged, so ‖W_ℓ‖_F² is the same in every layer, i.e. ‖θ‖²/L, and the
    expansion ‖θ‖² = L·R⁽⁰⁾ + R⁽¹⁾ + R⁽²⁾/L gives ‖W_ℓ‖_F² = R⁽⁰⁾ + R⁽¹⁾/L + O(L⁻²): the
    intercept estimates R⁽⁰⁾ and the slope R⁽¹⁾ (docs/claims-changelog.md, BS-3)."""
    inv = [1.0 / d.depth for d in s.depths]
    mean = [sum(d.middle_norms) / len(d.middle_norms) for d in s.depths]
    return fit_line(inv, mean), mean


def _norms(r: Result) -> Check:
    s = r.summary
    deep = _deep(s)
    vals = [v for d in deep for v in d.middle_norms]
    lo, hi = NORM_BAND
    if len({d.depth for d in s.depths}) < 2:
        return inconclusive(
            "one depth: no 1/L extrapolation", headline="one depth: nothing to extrapolate"
        )
    fit, mean = norm_extrapolation(s)
    ok = lo <= fit.intercept <= hi
    at = " / ".join(str(d.depth) for d in s.depths)
    shown = " / ".join(f"{v:.2f}" for v in mean)
    return check(
        ok,
        headline=f"mean middle ‖W_ℓ‖_F² {shown} at L = {at}: fit a + b/L gives a = "
        f"{fit.intercept:.2f} ± {fit.intercept_stderr:.2f} (L → ∞; band [{lo}, {hi}], R⁽⁰⁾ = 2),"
        f" b = {fit.slope:.1f} (≈ R⁽¹⁾) → " + ("pass" if ok else "fail"),
        intercept=fit.intercept,
        intercept_stderr=fit.intercept_stderr,
        r1_estimate=fit.slope,
        mean_middle_norms={d.depth: m for d, m in zip(s.depths, mean, strict=True)},
        middle_norms={d.depth: d.middle_norms for d in s.depths},
        grad_norms={d.depth: d.grad_norm for d in s.depths},
        diagnostic_band_at_deep=bool(all(lo <= v <= hi for v in vals)),
    )


def _invariants(r: Result) -> Check:
    deep = _deep(r.summary)
    vals = {d.depth: d.r2 for d in deep}
    ok = all(v > R2_MIN for v in vals.values())
    shown = " / ".join(f"{v:.3f}" for v in vals.values())
    return check(
        ok,
        headline=f"held-out R² of (‖x_12‖, ‖x_34‖) from 2 PCs: {shown} at L = "
        f"{' / '.join(map(str, vals))} (need > {R2_MIN}) → " + ("pass" if ok else "fail"),
        r2=vals,
    )


def _linear_check(r: Result) -> Check:
    lin = r.summary.linear
    if lin.fit_error > 1e-3:
        return inconclusive(
            f"the DLN did not fit A (relative error {lin.fit_error:.1e})",
            headline=f"DLN fit error {lin.fit_error:.1e} > 1e-3: the expansion is not tested",
            fit_error=lin.fit_error,
        )
    ok = lin.rel_error < LINEAR_TOL
    return check(
        ok,
        headline=f"‖θ‖² {lin.sq_norm:.4f} vs three-term expansion {lin.expansion:.4f} at "
        f"L = {lin.depth}: rel. error {lin.rel_error:.1e} (< {LINEAR_TOL:g}) → "
        + ("pass" if ok else "fail"),
        sq_norm=lin.sq_norm,
        expansion=lin.expansion,
        exact=lin.exact,
        rel_error=lin.rel_error,
        grad_norm=lin.grad_norm,
    )


def _inv_depths(s: Summary, **kw) -> Summary:
    return dataclasses.replace(s, depths=[dataclasses.replace(d, **kw) for d in s.depths])


CLAIMS = (
    Claim(
        "BS-1",
        PAPER,
        "For L >= 8 every middle W_ℓ has exactly R⁽⁰⁾ = 2 singular values >= 0.3·s_1 and "
        "the rest <= 0.15·s_1.",
        "100% of middle layers",
        check=_two_large,
        invert=lambda s: _inv_depths(s, frac_two_large=0.0),
    ),
    Claim(
        "BS-2",
        PAPER,
        "The tail Σ_{i>2}s_i(W_ℓ)² of the middle layers shrinks with L (log-log slope < −0.5).",
        "slope < -0.5",
        check=_tail,
        invert=lambda s: dataclasses.replace(s, tail_slope=0.5),
    ),
    Claim(
        "BS-3",
        PAPER,
        "Middle-layer ‖W_ℓ‖_F² ≈ R⁽⁰⁾ = 2 (balancedness: ‖W_ℓ‖_F² = ‖θ‖²/L = R⁽⁰⁾ + R⁽¹⁾/L "
        "+ O(L⁻²)).",
        "L → ∞ intercept of the mean middle ‖W_ℓ‖_F² fitted as a + b/L in [1.5, 2.7]",
        check=_norms,
        invert=lambda s: _inv_depths(s, middle_norms=[10.0]),  # intercept 10
    ),
    Claim(
        "BS-4",
        PAPER,
        "The top-2 principal components of the middle representation recover the task's "
        "invariants (‖x_{1:2}‖, ‖x_{3:4}‖): held-out R² > 0.9 for L >= 8.",
        "R² > 0.9",
        check=_invariants,
        invert=lambda s: _inv_depths(s, r2=0.0),
    ),
    Claim(
        "BS-5",
        PAPER,
        "A deep linear net's ‖θ‖² matches L·Rank A + 2Σlog s_i + (2/L)Σ(log s_i)² at L = 8.",
        "rel. error < 1e-2",
        check=_linear_check,
        invert=lambda s: dataclasses.replace(
            s, linear=dataclasses.replace(s.linear, rel_error=0.5, fit_error=0.0)
        ),
    ),
)

EXPERIMENT = Experiment(
    id="bottleneck-structure",
    title="Bottleneck structure: R⁽⁰⁾ singular values near s_1, the rest shrinking with depth",
    papers=(PAPER,),
    description=(
        "Deep L2-regularized ReLU nets on an SO(2)×SO(2)-invariant task keep 2 large "
        "singular values in their middle layers and recover the invariants there."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
