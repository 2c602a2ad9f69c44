"""Layer-wise spectral bias of the NTK (Dandi, Jacot, arXiv:2111.03972).

(a) Analytic: the per-layer kernels Θ_ℓ of an infinite-width ReLU net on S^{d−1} (NTK
parametrization, no bias) have Gegenbauer eigenvalues whose ratios μ_k^(ℓ)/μ_1^(ℓ) do not
increase with ℓ for k ∈ [2, 8]: early layers are relatively more sensitive to high
frequencies. The d = 10, L = 5 values are checked against the spec's reference table.
(b) Finite width: per-layer Gram matrices of a width-1000 net (δ·h factorisation) give the
layer shares S_ℓ(k) of the degree-k targets y_k = C_k^{(4)}(⟨x, e⟩): the first layer's share
rises with k and the last layer's falls. The shares are estimated at finite N by the
unbiased form of yᵀΘ_ℓy averaged over the direction e (:func:`degree_shares`: centred Gram,
i ≠ j terms only); the single-e form yᵀΘ_ℓy of the spec is kept as the diagnostic
``plain_shares`` (at N = 1000 on S^9 it cannot resolve k ≥ 3; docs/claims-changelog.md).
Definitions §20; standard setting (docs/decisions.md).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext, check
from rankscope.experiments.spectral.data import gegenbauer_targets, sphere_points
from rankscope.metrics.ntk import layer_shares, layerwise_ntk_eigenvalues, layerwise_ntk_grams

PAPER = "arXiv:2111.03972"

# docs/results.md [measured]: μ_k/μ_1 at d = 10, L = 5 for k = 2, 3, 4, 6, 8, as printed
REFERENCE_DEGREES = (2, 3, 4, 6, 8)
REFERENCE_TABLE = (
    ("0.207", "0.0316", "0.0075", "6.0e-4", "8.2e-5"),
    ("0.147", "0.0227", "0.0047", "3.6e-4", "4.8e-5"),
    ("0.128", "0.0174", "0.0035", "2.5e-4", "3.3e-5"),
    ("0.116", "0.0138", "0.0027", "1.7e-4", "2.1e-5"),
    ("0.105", "0.0101", "0.0017", "8e-5", "7e-6"),
)


@dataclass(frozen=True)
class AnalyticStudy:
    depths: tuple[int, ...] = (3, 5, 8)
    dims: tuple[int, ...] = (5, 10, 50)
    max_degree: int = 8
    nodes: int = 400

    def __post_init__(self) -> None:
        if min(self.depths) < 2 or min(self.dims) < 3 or self.max_degree < 2:
            raise ValueError(f"need depths >= 2, dims >= 3, max_degree >= 2; got {self}")


@dataclass(frozen=True)
class FiniteStudy:
    d: int = 10
    depth: int = 5
    width: int = 1000
    n: int = 2000  # finite-N noise of the degree-k share ∝ 1/N (docs/claims-changelog.md)
    degrees: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

    def __post_init__(self) -> None:
        if self.depth < 2 or self.width < 1 or self.n < 2 or len(self.degrees) < 3:
            raise ValueError(f"need depth >= 2, width >= 1, n >= 2, >= 3 degrees; got {self}")


@dataclass(frozen=True)
class Criteria:
    spearman: float = 0.8  # criterion 3: ρ > 0.8 (first layer), ρ < −0.8 (last layer)
    digits: int = 2  # criterion 2


@dataclass(frozen=True)
class Config:
    analytic: AnalyticStudy = field(default_factory=AnalyticStudy)
    finite: FiniteStudy = field(default_factory=FiniteStudy)
    criteria: Criteria = field(default_factory=Criteria)


PRESETS = {
    "smoke": Config(
        analytic=AnalyticStudy(depths=(3, 5), dims=(5, 10)),
        finite=FiniteStudy(width=200, n=200),
    ),
    "default": Config(),
    "paper": Config(finite=FiniteStudy(width=2000, n=2000)),
}


@dataclass(frozen=True)
class AnalyticCase:
    depth: int
    d: int
    ratios: list[list[float]]  # layer × k = 2 … max_degree: μ_k^(ℓ)/μ_1^(ℓ)
    violations: int  # (ℓ, k) with ratio[ℓ+1] > ratio[ℓ] (ties allowed)


@dataclass(frozen=True)
class Summary:
    analytic: list[AnalyticCase]
    reference: list[list[float]]  # d = 10, L = 5: layer × REFERENCE_DEGREES
    degrees: list[int]  # finite-width target degrees
    shares: list[list[float]]  # layer × degree: S_ℓ(k) at finite width (degree_shares)
    limit_shares: list[list[float]]  # layer × degree: μ_k^(ℓ)/Σ_ℓ′ μ_k^(ℓ′) (N, width → ∞)
    diagonal_part: list[float]  # per degree: mean over ℓ of Σ_i Θ_ℓ(x_i, x_i)y_i² / yᵀΘ_ℓy
    criteria: Criteria
    plain_shares: list[list[float]] = field(default_factory=list)  # spec's single-e yᵀΘ_ℓy


def _violations(ratios: np.ndarray) -> int:
    """Pairs (ℓ, k) with ratio[ℓ+1, k] > ratio[ℓ, k] beyond rounding (exact ties allowed)."""
    up = ratios[1:] - ratios[:-1]
    return int((up > 1e-12 * np.abs(ratios[:-1]) + 1e-300).sum())


def _analytic(cfg: AnalyticStudy) -> list[AnalyticCase]:
    out = []
    degrees = list(range(1, cfg.max_degree + 1))
    for depth in cfg.depths:
        for d in cfg.dims:
            mu = layerwise_ntk_eigenvalues(d, depth, degrees, nodes=cfg.nodes)
            ratios = mu[:, 1:] / mu[:, :1]
            out.append(AnalyticCase(depth, d, ratios.tolist(), _violations(ratios)))
    return out


def degree_shares(grams: torch.Tensor, x: torch.Tensor, degrees) -> torch.Tensor:
    """Finite-N estimate of the limit share μ_k^(ℓ)/Σ_ℓ′ μ_k^(ℓ′): (L, len(degrees)).

    Averaging yᵀΘ_ℓy over the direction e of y = C_k(⟨x, e⟩) gives, by the addition theorem,
    c_k·Σ_ij Θ_ℓ(x_i, x_j)·C_k(⟨x_i, x_j⟩) with c_k > 0 common to all layers. Two finite-N
    terms are dropped because their population value for k ≥ 1 carries no μ_k: the i = j terms
    (Θ_ℓ(x, x) = C_k(1)-weighted, equal for every layer, the ≈ 1/L pull) and the degree-0 part of
    Θ_ℓ (the Gram is double-centred: Σ_i C_k(⟨x_i, x_j⟩) ≠ 0 at finite N lets μ_0 ≫ μ_k leak in).
    What remains is a U-statistic with mean ∝ N(N−1)·μ_k^(ℓ)·dim H_k and noise ∝ 1/N.
    """
    from scipy.special import eval_gegenbauer

    g = grams.to(torch.float64)
    g = g - g.mean(1, keepdim=True)
    g = g - g.mean(2, keepdim=True)
    t = (x.to(torch.float64) @ x.to(torch.float64).T).clamp(-1.0, 1.0).numpy()
    cols = []
    for k in degrees:
        if int(k) < 1:
            raise ValueError(f"degrees must be >= 1 (degree 0 is centred out), got {k}")
        p = torch.from_numpy(eval_gegenbauer(int(k), (x.shape[1] - 2) / 2.0, t))
        p.fill_diagonal_(0.0)
        cols.append(torch.einsum("lnm,nm->l", g, p))
    quad = torch.stack(cols, dim=1)  # (L, K)
    return quad / quad.sum(0, keepdim=True)


def _finite(cfg: FiniteStudy, ctx: RunContext) -> tuple[list, list, list, list]:
    g = ctx.child_generator(1)
    x = sphere_points(cfg.n, cfg.d, g)
    e = sphere_points(1, cfg.d, g)[0]
    dims = [cfg.d] + [cfg.width] * (cfg.depth - 1) + [1]
    ws = [torch.randn(b, a, generator=g, dtype=torch.float64) for a, b in itertools.pairwise(dims)]
    grams = layerwise_ntk_grams(ws, x)
    y = gegenbauer_targets(x, cfg.degrees, e)
    plain = layer_shares(grams, y)  # (L, K), the spec's single-e form (diagnostic)
    shares = degree_shares(grams, x, cfg.degrees)
    # diagnostic, not a claim: the part of yᵀΘ_ℓy from the i = j terms. Θ_ℓ(x, x) → 1 for
    # every layer on the sphere, so where it dominates (high k at finite N) S_ℓ(k) → 1/L.
    diag = torch.diagonal(grams, dim1=1, dim2=2)  # (L, N)
    quad = torch.einsum("nk,lnm,mk->lk", y, grams, y)
    off = (torch.einsum("ln,nk->lk", diag, y * y) / quad).sum(0) / cfg.depth  # mean over ℓ
    mu = layerwise_ntk_eigenvalues(cfg.d, cfg.depth, list(cfg.degrees))
    limit = mu / mu.sum(0, keepdims=True)
    for l in range(cfg.depth):
        ctx.log.log_vector("share", shares[l], layer=f"layer{l + 1}")
    return shares.tolist(), limit.tolist(), off.tolist(), plain.tolist()


def run(config: Config, ctx: RunContext) -> Result:
    cases = _analytic(config.analytic)
    ref = layerwise_ntk_eigenvalues(10, 5, [1, *REFERENCE_DEGREES], nodes=config.analytic.nodes)
    ctx.progress(0.3)
    shares, limit, off, plain = _finite(config.finite, ctx)
    ctx.progress(1.0)
    summary = Summary(cases, (ref[:, 1:] / ref[:, :1]).tolist(), list(config.finite.degrees),
                      shares, limit, off, config.criteria, plain)  # fmt: skip
    return Result(summary=summary, records=ctx.log.freeze())


# ---- claims ------------------------------------------------------------------------------


def _lsb_a1(result: Result):
    cases: list[AnalyticCase] = result.summary.analytic
    bad = [f"(L={c.depth}, d={c.d}): {c.violations}" for c in cases if c.violations]
    total = sum(len(c.ratios[0]) * (len(c.ratios) - 1) for c in cases)
    head = f"{len(cases)} (L, d) cases, {total} (ℓ, k) steps: " + (
        "μ_k/μ_1 never increases with ℓ → pass" if not bad else f"increases at {bad} → fail"
    )
    return check(not bad, headline=head, cases=len(cases),
                 violations=sum(c.violations for c in cases))  # fmt: skip


def _last_unit(printed: str) -> float:
    mant, _, exp = printed.lower().partition("e")
    return 10.0 ** (-len(mant.partition(".")[2]) + (int(exp) if exp else 0))


def agrees_to_digits(got: float, printed: str, digits: int = 2) -> bool:
    """|got − table| <= half a unit of the ``digits``-th significant digit of the table value
    plus half a unit of its last printed digit (the table is itself rounded)."""
    want = float(printed)
    unit = 10.0 ** (math.floor(math.log10(abs(want))) - (digits - 1))
    return abs(got - want) <= 0.5 * unit + 0.5 * _last_unit(printed)


def _lsb_a2(result: Result):
    ref = result.summary.reference
    digits = result.summary.criteria.digits
    bad, worst = [], 0.0
    for l, (row, printed) in enumerate(zip(ref, REFERENCE_TABLE), start=1):
        for k, got, p in zip(REFERENCE_DEGREES, row, printed):
            worst = max(worst, abs(got / float(p) - 1))
            if not agrees_to_digits(got, p, digits):
                bad.append(f"ℓ={l} k={k}: {got:.3g} vs {p}")
    head = f"25 table entries at d = 10, L = 5, worst relative deviation {worst:.1%}: " + (
        "all agree to 2 significant digits → pass" if not bad else f"off at {bad[:3]} → fail"
    )
    return check(not bad, headline=head, mismatches=len(bad), worst_relative=worst)


def _spearman(values) -> float:
    from scipy.stats import spearmanr

    v = np.asarray(values, dtype=np.float64)
    return float(spearmanr(np.arange(len(v)), v).statistic)


def _lsb_b(which: str):
    def _check(result: Result):
        s = result.summary
        thr = s.criteria.spearman
        row = s.shares[0] if which == "first" else s.shares[-1]
        rho = _spearman(row)
        ok = rho > thr if which == "first" else rho < -thr
        sign = ">" if which == "first" else "<"
        head = (
            f"S_{'1' if which == 'first' else 'L'}(k), k = {s.degrees[0]}…{s.degrees[-1]}: "
            f"{[round(v, 3) for v in row]}; Spearman ρ = {rho:.2f} "
            f"(need {sign} {'' if which == 'first' else '−'}{thr})"
        )
        return check(ok, headline=head, rho=rho, **{f"k{k}": v for k, v in zip(s.degrees, row)})

    return _check


def _invert_a1(s: Summary) -> Summary:
    c = s.analytic[0]
    flipped = replace(c, ratios=c.ratios[::-1], violations=_violations(np.array(c.ratios[::-1])))
    return replace(s, analytic=[flipped, *s.analytic[1:]])


def _invert_a2(s: Summary) -> Summary:
    return replace(s, reference=[[v * 1.2 for v in row] for row in s.reference])


def _invert_b(s: Summary) -> Summary:
    return replace(s, shares=[row[::-1] for row in s.shares])


CLAIMS = (
    Claim("LSB-a1", PAPER,
          "Infinite-width ReLU NTK on the sphere: μ_k^(ℓ)/μ_1^(ℓ) is non-increasing in the layer "
          "ℓ (early layers are biased toward higher frequencies)",
          "no increase for k ∈ [2, 8] at L ∈ {3, 5, 8}, d ∈ {5, 10, 50}",
          check=_lsb_a1, invert=_invert_a1),
    Claim("LSB-a2", PAPER, "The d = 10, L = 5 ratios match the reference table",
          "2 significant digits", check=_lsb_a2, invert=_invert_a2),
    Claim("LSB-b1", PAPER,
          "Finite width 1000: the first layer's NTK share of y_k rises with the degree k",
          "Spearman ρ(k, S_1(k)) > 0.8, S_1(k) by the unbiased e-averaged form at N = 2000",
          check=_lsb_b("first"), invert=_invert_b),
    Claim("LSB-b2", PAPER,
          "Finite width 1000: the last layer's NTK share of y_k falls with the degree k",
          "Spearman ρ(k, S_L(k)) < −0.8, S_L(k) by the unbiased e-averaged form at N = 2000",
          check=_lsb_b("last"), invert=_invert_b),
)  # fmt: skip

EXPERIMENT = Experiment(
    id="layerwise-spectral-bias",
    title="Layer-wise spectral bias of the NTK",
    papers=(PAPER,),
    description=(
        "Splitting the ReLU NTK into per-layer kernels shows the early layers carry relatively "
        "more of the high-frequency (high Gegenbauer degree) part, analytically and at width 1000."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
