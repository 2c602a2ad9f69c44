"""`leaky-resnet`: Hamiltonian mechanics and bottleneck structure of leaky ResNets
(Jacot & Kaiser, arXiv 2405.17573; docs/results.md CPU recipe).

Teacher f* = g2∘g1 with random ReLU nets g1: R^d → R^3, g2: R^3 → R^d (k* = 3), inputs and
outputs standardized. Leaky ResNets of width w and depth L (learned input/output maps U, V,
regularized by default: unregularized, rescaling A by c → 0 with U → cU, V → V/c and the bias
column of every W_ℓ → c·b leaves f unchanged and drives the bias cost to 0, so J has no
critical point with a bias; docs/decisions.md, item 52) with effective depth L̃ ∈ ``leaks``
minimize C + (λ/(2L̃))(Σρ_ℓ‖W_ℓ‖² + ‖U‖² + ‖V‖²) (λ convention recorded) by full-batch Adam,
then L-BFGS in float64 (‖∇J‖ reported). Per layer: the spectra of W_ℓ, the stable COI_γ(A_ℓ)
(γ = γ0‖σ̃(A)‖²_op), the discrete Hamiltonian H_ℓ = H(A_ℓ, B_ℓ) with B_ℓ = −(1/λ)∂C/∂A_ℓ
by autograd of the data loss, and its kinetic and
potential parts (∂_pA ≈ (A_ℓ − A_{ℓ−1})/ρ_ℓ), Theorem 4's path length ℓ_γ and γc, and the
residual of the critical-point identity W_ℓ = L̃·B_ℓᵀσ̃(A_ℓ−1): LR-1…LR-4 are about critical
points and read inconclusive when that residual exceeds 0.25. Then equidistant against
adaptive steps at one L̃.
Records (layer ``Lt{L̃}`` or ``steps/{scheme}``, step = ℓ): ``H``, ``kinetic``, ``potential``,
``coi``, ``p``, ``neg_mass``, vectors ``sv``; ``rho`` during adaptive training.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Sequence
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
from rankscope.experiments.bottleneck._common import fit_two_phase, spectra
from rankscope.experiments.bottleneck.data import bottleneck_teacher
from rankscope.metrics import (
    cost_of_identity,
    count_above,
    hamiltonian,
    hamiltonian_terms,
    middle_layers,
    negative_mass,
)
from rankscope.metrics.bottleneck import features
from rankscope.models import LeakyResNet, adaptive_steps
from rankscope.models.leaky_resnet import LAMBDA_CONVENTIONS

__all__ = ["CLAIMS", "EXPERIMENT", "PRESETS", "Config", "Summary", "run"]

PAPER = "arXiv:2405.17573"


@dataclass(frozen=True)
class TeacherConfig:
    dim: int = 10
    k: int = 3
    hidden: int = 16
    n_train: int = 300
    n_test: int = 200


@dataclass(frozen=True)
class NetConfig:
    """Width, depth L, the L̃ sweep; λ read under ``lambda_convention``; γ0 of the stable COI."""

    width: int = 30
    depth: int = 10
    leaks: tuple[float, ...] = (2.0, 4.0, 7.0)
    lam: float = 1e-2
    lambda_convention: str = "lambda_over_Ltilde"
    input_map: str = "learned"
    output_map: str = "learned"
    regularize_maps: bool = True
    adam_steps: int = 800
    adam_lr: float = 1e-3
    lbfgs_steps: int = 30
    gamma0: float = 1e-3
    tau: float = 0.1

    def __post_init__(self) -> None:
        bad = [leak for leak in self.leaks if leak / self.depth >= 1]
        if bad:
            raise ValueError(
                f"equidistant steps ρ = 1/L = 1/{self.depth} give ρ·L̃ >= 1 for L̃ = {bad} "
                f"(ρ_ℓ·L̃ must be < 1: it flips the sign of the leak); use depth > {max(bad):g}"
            )
        if self.lambda_convention not in LAMBDA_CONVENTIONS:
            raise ValueError(
                f"unknown lambda_convention {self.lambda_convention!r}; expected one of "
                f"{LAMBDA_CONVENTIONS}"
            )


@dataclass(frozen=True)
class StepsConfig:
    """Equidistant against adaptive ρ_ℓ at effective depth ``leak`` (updated every
    ``every`` Adam steps, blended with weight ``mix``)."""

    leak: float = 3.0
    every: int = 50
    mix: float = 0.5
    p_cut: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.mix <= 1 or self.every < 1:
            raise ValueError(f"need 0 < mix <= 1 and every >= 1, got {self.mix}, {self.every}")


@dataclass(frozen=True)
class Config:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    net: NetConfig = field(default_factory=NetConfig)
    steps: StepsConfig = field(default_factory=StepsConfig)


PRESETS = {
    "smoke": Config(
        teacher=TeacherConfig(dim=6, hidden=8, n_train=30, n_test=30),
        net=NetConfig(width=10, depth=8, leaks=(2.0, 4.0), adam_steps=40, lbfgs_steps=2),
        steps=StepsConfig(every=10),
    ),
    "default": Config(),
    "paper": Config(
        teacher=TeacherConfig(dim=30, hidden=30, n_train=1000, n_test=1000),
        net=NetConfig(
            width=100,
            depth=20,
            leaks=(1.0, 2.0, 4.0, 7.0),
            lam=1e-3,
            adam_steps=3000,
            lbfgs_steps=200,
        ),
    ),
}


@dataclass(frozen=True)
class LeakRun:
    leak: float
    scheme: str
    p: list[float]  # p_0 … p_L
    hamiltonian: list[float]  # H_ℓ, ℓ = 0..L
    kinetic: list[float]  # ℓ = 1..L
    potential: list[float]  # ℓ = 1..L
    coi: list[float]  # COI_γ(A_ℓ), ℓ = 0..L
    k_estimate: float  # −(2/L̃)·median H
    h_spread: float  # (max − min)/|median| of H
    min_coi: float
    k_star_count: float  # fraction of middle layers with exactly k* s_i > τ s_max
    large_counts: list[int]  # #{s_i > τ s_max} per W_ℓ
    neg_mass: float  # negative share of |A| mass over the middle layers
    train_mse: float
    test_mse: float
    grad_norm: float
    early_layers: int  # #{ℓ : p_ℓ <= p_cut}
    # Theorem 4: path length ℓ_γ = Σ_ℓ ρ_ℓ‖∂_pA‖_(K+γI) and γc = max_ℓ γ_ℓ · max_ℓ ‖B_ℓ‖²_F
    path_length: float = float("nan")
    gamma_c: float = float("nan")
    # median_ℓ ‖W_ℓ − L̃·B_ℓᵀσ̃(A_ℓ−1)‖_F/‖W_ℓ‖_F: 0 at a critical point (stationarity in W_ℓ)
    critical_residual: float = float("nan")


@dataclass(frozen=True)
class Summary:
    runs: list[LeakRun]
    equidistant: LeakRun
    adaptive: LeakRun
    k_star: int
    lam: float
    lam_eff_at_steps: float
    lambda_convention: str
    p_cut: float


class _Adapt:
    """Adaptive step sizes as an engine callback: every ``every`` steps, ρ ← adaptive_steps
    (ρ_ℓL̃ < 1 is re-checked on every update)."""

    def __init__(self, x: torch.Tensor, every: int, mix: float, tag: str) -> None:
        self.x, self.every, self.mix, self.tag = x, every, mix, tag

    def __call__(self, state) -> None:
        net = state.model
        if state.step == 0 or state.step % self.every:
            return
        with torch.no_grad():
            _, reps = net.forward_with_reps(self.x)
        net.set_steps(adaptive_steps(reps, net.rho, net.leak, mix=self.mix))
        for l, r in enumerate(net.rho.tolist(), 1):
            state.log.log("rho", r, step=state.step, layer=f"{self.tag}/W{l}")


def _measure(net: LeakyResNet, task, cfg: NetConfig, k_star: int, cut: float, rep, ctx, tag):
    x, y = task.x.to(ctx.device), task.y.to(ctx.device)
    reps, bs = net.backward_variables(x, y)
    leak = net.leak
    h = [float(hamiltonian(a, b, leak)) for a, b in zip(reps, bs, strict=True)]
    coi = [float(cost_of_identity(a, gamma0=cfg.gamma0)) for a in reps]
    rho = net.rho.detach().double()
    kin, pot = [], []
    for l in range(1, len(reps)):
        k_, p_ = hamiltonian_terms(
            reps[l], (reps[l] - reps[l - 1]) / rho[l - 1], leak, gamma0=cfg.gamma0
        )
        kin.append(float(k_))
        pot.append(float(p_))
    p = net.p.tolist()
    for l, (hv, cv) in enumerate(zip(h, coi, strict=True)):
        ctx.log.log("H", hv, step=l, layer=tag)
        ctx.log.log("coi", cv, step=l, layer=tag)
        ctx.log.log("p", p[l], step=l, layer=tag)
    for l, (kv, pv) in enumerate(zip(kin, pot, strict=True), 1):
        ctx.log.log("kinetic", kv, step=l, layer=tag)
        ctx.log.log("potential", pv, step=l, layer=tag)
    sv = spectra(net.weights)
    for l, s in enumerate(sv, 1):
        ctx.log.log_vector("sv", s, step=l, layer=tag)
    counts = [int(count_above(s, cfg.tau)) for s in sv]
    mid = middle_layers(net.depth)
    neg = [float(negative_mass(reps[l])) for l in mid]
    for l, v in zip(mid, neg, strict=True):
        ctx.log.log("neg_mass", v, step=l, layer=tag)
    med = statistics.median(h)
    path = path_length(kin, rho.tolist(), leak)
    crit = critical_residual(net.weights, reps, bs, leak)
    gc = max(gamma_of(a, cfg.gamma0) for a in reps) * max(float((b * b).sum()) for b in bs)
    with torch.no_grad():
        test = float(net.data_cost(net(task.x_test.to(ctx.device)), task.y_test.to(ctx.device)))
        train = float(net.data_cost(net(x), y))  # rep.data_loss is J: the loss_fn is J
    return LeakRun(
        leak=leak,
        scheme=net.scheme,
        p=p,
        hamiltonian=h,
        kinetic=kin,
        potential=pot,
        coi=coi,
        k_estimate=-2.0 / leak * med,
        h_spread=(max(h) - min(h)) / abs(med) if med else float("inf"),
        min_coi=min(coi),
        k_star_count=sum(c == k_star for c in (counts[l - 1] for l in mid)) / len(mid),
        large_counts=counts,
        neg_mass=sum(neg) / len(neg),
        train_mse=train,
        test_mse=test,
        grad_norm=rep.grad_norm,
        early_layers=sum(1 for v in p[1:] if v <= cut + 1e-12),
        path_length=path,
        gamma_c=gc,
        critical_residual=crit,
    )


def critical_residual(weights, reps, bs, leak: float) -> float:
    """How far the net is from a critical point of the objective in its weights.

    ∂J/∂W_ℓ = (λ/L̃)·ρ_ℓ·(W_ℓ − L̃·B_ℓᵀσ̃(A_ℓ−1)), so W_ℓ = L̃·B_ℓᵀσ̃(A_ℓ−1) at a critical point
    (2405.17573; the relation the Hamiltonian claims rest on). Returns the median over layers
    of ‖W_ℓ − L̃·B_ℓᵀσ̃(A_ℓ−1)‖_F/‖W_ℓ‖_F (``reps`` = [A_0 … A_L], ``bs`` = [B_0 … B_L])."""
    if not (len(reps) == len(bs) == len(weights) + 1):
        raise ValueError(
            f"need L weights and L + 1 representations and B's, got {len(weights)}, "
            f"{len(reps)}, {len(bs)}"
        )
    out = []
    for l, w in enumerate(weights, 1):
        a = reps[l - 1].to(torch.float64)
        f = features(a)
        w = w.detach().to(torch.float64)
        pred = leak * bs[l].to(torch.float64).mT @ f
        out.append(float((w - pred).norm() / w.norm().clamp_min(1e-300)))
    return statistics.median(out)


def path_length(kinetic: Sequence[float], rho: Sequence[float], leak: float) -> float:
    """ℓ_γ = ∫‖∂_pA_p‖_(K_p+γI) dp from the per-layer kinetic energies (1/(2L̃))‖∂_pA‖²:
    Σ_ℓ ρ_ℓ·√(2L̃·kinetic_ℓ)."""
    if len(kinetic) != len(rho):
        raise ValueError(f"need one kinetic energy per step, got {len(kinetic)} and {len(rho)}")
    return sum(r * (2 * leak * max(k, 0.0)) ** 0.5 for k, r in zip(kinetic, rho, strict=True))


def gamma_of(a: torch.Tensor, gamma0: float) -> float:
    """γ = γ0·‖σ̃(A)‖²_op of the stable COI, for a representation (N, w)."""
    f = features(a.to(torch.float64))
    return gamma0 * float(torch.linalg.matrix_norm(f, ord=2)) ** 2


def theorem4_window(x: LeakRun) -> tuple[float, float]:
    """Theorem 4's bracket for −(2/L̃)H: [min COI − (ℓ_γ/L̃ + √(γc))², min COI + γc]."""
    width = (x.path_length / x.leak + x.gamma_c**0.5) ** 2
    return x.min_coi - width, x.min_coi + x.gamma_c


def _train(
    cfg: NetConfig,
    task,
    leak: float,
    scheme: str,
    ctx,
    tag: str,
    seed_tag: int,
    adapt: StepsConfig | None = None,
) -> tuple[LeakyResNet, object]:
    net = LeakyResNet(
        task.x.shape[1],
        task.y.shape[1],
        width=cfg.width,
        depth=cfg.depth,
        leak=leak,
        steps=scheme,
        input_map=cfg.input_map,
        output_map=cfg.output_map,
        regularize_maps=cfg.regularize_maps,
        lam=cfg.lam,
        lambda_convention=cfg.lambda_convention,
        generator=ctx.child_generator(seed_tag),
    ).to(ctx.device)
    x, y = task.x.to(ctx.device), task.y.to(ctx.device)

    def loss(m):
        return m.objective(x, y)

    cbs = ()
    every = None
    if adapt is not None and scheme == "adaptive":
        cbs, every = (_Adapt(x, adapt.every, adapt.mix, tag),), adapt.every
    rep = fit_two_phase(
        net,
        loss,
        l2=0.0,
        l2_params="weights",
        adam_steps=cfg.adam_steps,
        adam_lr=cfg.adam_lr,
        lbfgs_steps=cfg.lbfgs_steps,
        log=ctx.log,
        tag=tag,
        adam_callbacks=cbs,
        adam_log_every=every,
    )
    return net, rep


def run(config: Config, ctx: RunContext) -> Result:
    t, n, st = config.teacher, config.net, config.steps
    task = bottleneck_teacher(
        ctx.child_generator(0),
        d_in=t.dim,
        d_out=t.dim,
        k=t.k,
        hidden=t.hidden,
        n=t.n_train,
        n_test=t.n_test,
    )
    runs = []
    total = len(n.leaks) + 2
    for i, leak in enumerate(n.leaks):
        tag = f"Lt{leak:g}"
        net, rep = _train(n, task, leak, "equidistant", ctx, tag, 1)
        runs.append(_measure(net, task, n, t.k, st.p_cut, rep, ctx, tag))
        ctx.progress((i + 1) / total)
    pair = {}
    for j, scheme in enumerate(("equidistant", "adaptive")):
        tag = f"steps/{scheme}"
        net, rep = _train(n, task, st.leak, scheme, ctx, tag, 2, adapt=st)
        pair[scheme] = _measure(net, task, n, t.k, st.p_cut, rep, ctx, tag)
        lam_eff = net.lam_eff
        ctx.progress((len(n.leaks) + j + 1) / total)
    summary = Summary(
        runs=runs,
        equidistant=pair["equidistant"],
        adaptive=pair["adaptive"],
        k_star=t.k,
        lam=n.lam,
        lam_eff_at_steps=lam_eff,
        lambda_convention=n.lambda_convention,
        p_cut=st.p_cut,
    )
    return Result(summary=summary, records=ctx.log.freeze())


# ---------------------------------------------------------------- claims

BIG_LEAK = 4.0
FRACTION = 0.6
K_BAND = (2.5, 3.2)
NEG_MAX = 0.05
_GATED = "; inconclusive unless the fits are near a critical point (W = L̃Bᵀσ̃(A) residual <= 0.25)"
CRITICAL_MAX = 0.25  # median ‖W_ℓ − L̃B_ℓᵀσ̃(A_ℓ−1)‖/‖W_ℓ‖ up to which a fit counts as critical


def _gate(runs: Sequence[LeakRun], inner: Check) -> Check:
    """``inner`` when every fit it reads is near a critical point, else inconclusive.

    LR-1…LR-4 are statements about optimal paths, where W_ℓ = L̃·B_ℓᵀσ̃(A_ℓ−1) (and H is
    conserved); a fit far from that identity does not test them (docs/decisions.md, item 52).
    Runs stored before the residual was recorded (NaN) are not gated."""
    far = {f"{x.leak:g}": x.critical_residual for x in runs if x.critical_residual > CRITICAL_MAX}
    if not far:
        return inner
    shown = ", ".join(f"L̃ = {k}: {v:.2f}" for k, v in far.items())
    return inconclusive(
        f"not near a critical point: residual of W = L̃·Bᵀσ̃(A) {shown} (need <= {CRITICAL_MAX})",
        headline=f"not tested: fits not near a critical point (W = L̃·Bᵀσ̃(A) residual {shown}, "
        f"need <= {CRITICAL_MAX}); ungated: {inner.headline}",
        critical_residual={f"{x.leak:g}": x.critical_residual for x in runs},
        ungated_verdict=inner.verdict,
        **inner.measured,
    )


def _big(s: Summary) -> list[LeakRun]:
    return [r for r in s.runs if r.leak >= BIG_LEAK] or [max(s.runs, key=lambda r: r.leak)]


def _three(r: Result) -> Check:
    """At the largest swept L̃ (7, the paper's Fig. 1), like LR-4: the bottleneck is a
    large-L̃ statement and L̃ = 4 still has min COI ≈ 7 here (docs/claims-changelog.md)."""
    s = r.summary
    top = max(s.runs, key=lambda x: x.leak)
    vals = {f"{top.leak:g}": top.k_star_count}
    ok = all(v >= FRACTION for v in vals.values())
    shown = ", ".join(f"L̃ = {k}: {v:.0%}" for k, v in vals.items())
    inner = check(
        ok,
        headline=f"middle layers with exactly {s.k_star} s_i > 0.1·s_max: {shown} (need >= "
        f"{FRACTION:.0%}) → " + ("pass" if ok else "fail"),
        fraction=vals,
        counts={f"{x.leak:g}": x.large_counts for x in s.runs},
    )
    return _gate([top], inner)


def _k_estimate(r: Result) -> Check:
    s = r.summary
    ks = [x.k_estimate for x in s.runs]
    lo, hi = K_BAND
    top = ks[-1]
    rising = all(b >= a for a, b in itertools.pairwise(ks))
    ok = lo <= top <= hi and rising
    shown = " / ".join(f"{k:.2f}" for k in ks)
    at = " / ".join(f"{x.leak:g}" for x in s.runs)
    inner = check(
        ok,
        headline=f"−(2/L̃)·median H = {shown} at L̃ = {at}; need the last in [{lo}, {hi}] and "
        f"rising ({'yes' if rising else 'no'}) → " + ("pass" if ok else "fail"),
        k_estimates={f"{x.leak:g}": x.k_estimate for x in s.runs},
        h_spread={f"{x.leak:g}": x.h_spread for x in s.runs},
        grad_norms={f"{x.leak:g}": x.grad_norm for x in s.runs},
        path_over_leak={f"{x.leak:g}": x.path_length / x.leak for x in s.runs},
        gamma_c={f"{x.leak:g}": x.gamma_c for x in s.runs},
    )
    return _gate(s.runs, inner)


def _coi_bound(r: Result) -> Check:
    s = r.summary
    gaps = {f"{x.leak:g}": x.min_coi - x.k_estimate for x in s.runs}
    ok = all(v >= 0 for v in gaps.values())
    shown = ", ".join(f"{x.min_coi:.2f} vs {x.k_estimate:.2f}" for x in s.runs)
    inner = check(
        ok,
        headline=f"min_p COI vs −(2/L̃)H per L̃: {shown} (need >=) → " + ("pass" if ok else "fail"),
        gaps=gaps,
        min_coi={f"{x.leak:g}": x.min_coi for x in s.runs},
    )
    return _gate(s.runs, inner)


def _nonneg(r: Result) -> Check:
    s = r.summary
    top = max(s.runs, key=lambda x: x.leak)
    smaller = [x for x in s.runs if x.leak < top.leak]
    shrinks = all(top.neg_mass <= x.neg_mass for x in smaller)
    ok = top.neg_mass < NEG_MAX and shrinks
    shown = ", ".join(f"L̃ = {x.leak:g}: {x.neg_mass:.1%}" for x in s.runs)
    inner = check(
        ok,
        headline=f"negative share of |A| in the middle layers {shown} (need < {NEG_MAX:.0%} at "
        f"the largest L̃ and no larger than at any smaller L̃: "
        f"{'yes' if shrinks else 'no'}) → " + ("pass" if ok else "fail"),
        neg_mass={f"{x.leak:g}": x.neg_mass for x in s.runs},
        diagnostic_all_big_below=bool(all(x.neg_mass < NEG_MAX for x in _big(s))),
    )
    return _gate(s.runs, inner)


def layers_before(p: Sequence[float], cut: float) -> float:
    """The (linearly interpolated) number of layers with p_ℓ <= ``cut``: ℓ* + (cut −
    p_ℓ*)/(p_ℓ*+1 − p_ℓ*), ℓ* = max{ℓ : p_ℓ <= cut}, for p = (p_0 = 0, p_1, …, p_L = 1).
    Equidistant steps give exactly cut·L; a larger value means denser layers before ``cut``."""
    if not p or p[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(p)):
        raise ValueError("p must start at 0 and increase strictly")
    if not 0 <= cut < p[-1]:
        raise ValueError(f"cut must lie in [0, p_L), got {cut}")
    last = max(i for i, v in enumerate(p) if v <= cut)
    return last + (cut - p[last]) / (p[last + 1] - p[last])


def _early(r: Result) -> Check:
    s = r.summary
    a, e = layers_before(s.adaptive.p, s.p_cut), layers_before(s.equidistant.p, s.p_cut)
    ok = a > e
    return check(
        ok,
        headline=f"layers at p <= {s.p_cut} (interpolated): adaptive {a:.2f} vs equidistant "
        f"{e:.2f} (whole layers {s.adaptive.early_layers} vs {s.equidistant.early_layers}) → "
        + ("pass" if ok else "fail"),
        adaptive=a,
        equidistant=e,
        adaptive_whole=s.adaptive.early_layers,
        equidistant_whole=s.equidistant.early_layers,
        adaptive_p=s.adaptive.p,
    )


def _test_error(results: Sequence[Result]) -> Check:
    ad = [r.summary.adaptive.test_mse for r in results]
    eq = [r.summary.equidistant.test_mse for r in results]
    ma, me = sum(ad) / len(ad), sum(eq) / len(eq)
    ok = ma <= me
    return check(
        ok,
        headline=f"mean test MSE over {len(ad)} seeds: adaptive {ma:.4f} vs equidistant "
        f"{me:.4f} (need <=) → " + ("pass" if ok else "fail"),
        adaptive=ad,
        equidistant=eq,
    )


def _inv_runs(s: Summary, **kw) -> Summary:
    """Every run replaced by ``kw`` and marked critical, so that the gate lets it through."""
    kw = {"critical_residual": 0.0, **kw}
    return dataclasses.replace(s, runs=[dataclasses.replace(x, **kw) for x in s.runs])


def _inv_coi(s: Summary) -> Summary:
    return _inv_runs(
        dataclasses.replace(
            s, runs=[dataclasses.replace(x, min_coi=x.k_estimate - 1.0) for x in s.runs]
        )
    )


def _inv_early(s: Summary) -> Summary:
    return dataclasses.replace(
        s,
        adaptive=dataclasses.replace(
            s.adaptive, early_layers=s.equidistant.early_layers, p=s.equidistant.p
        ),
    )


CLAIMS = (
    Claim(
        "LR-1",
        PAPER,
        "At large L̃ (the largest swept, 7 as in the paper's Fig. 1), at least 60% of the "
        "middle layers have exactly k* = 3 singular values of W_ℓ above 0.1·s_max.",
        ">= 60% of middle layers at the largest L̃" + _GATED,
        check=_three,
        invert=lambda s: _inv_runs(s, k_star_count=0.0),
    ),
    Claim(
        "LR-2",
        PAPER,
        "−(2/L̃)·median_ℓ H_ℓ lies in [2.5, 3.2] and rises toward k* = 3 with L̃.",
        "largest L̃ in [2.5, 3.2], non-decreasing in L̃" + _GATED,
        check=_k_estimate,
        invert=lambda s: _inv_runs(s, k_estimate=10.0),
    ),
    Claim(
        "LR-3",
        PAPER,
        "min_p COI(A_p) >= −(2/L̃)H (Theorem 4, γ-stable COI).",
        "min COI >= k estimate for every L̃" + _GATED,
        check=_coi_bound,
        invert=_inv_coi,
    ),
    Claim(
        "LR-4",
        PAPER,
        "Bottleneck representations are almost non-negative: negative entries carry < 5% of "
        "the absolute mass at large L̃ (the largest swept, 7 as in the paper's Fig. 1), and "
        "less than at smaller L̃.",
        "< 5% at the largest L̃, no larger than at any smaller L̃" + _GATED,
        check=_nonneg,
        invert=lambda s: _inv_runs(s, neg_mass=0.5),
    ),
    Claim(
        "LR-5",
        PAPER,
        "Adaptive ρ_ℓ puts more layers at p_ℓ <= 0.2 than equidistant steps.",
        "interpolated count of layers at p <= 0.2: adaptive > equidistant (= 0.2·L)",
        check=_early,
        invert=_inv_early,
    ),
    Claim(
        "LR-6",
        PAPER,
        "Adaptive ρ_ℓ does not lose test error: mean test MSE over seeds <= equidistant.",
        "adaptive <= equidistant",
        across_seeds=_test_error,
        hard=False,
    ),
)

EXPERIMENT = Experiment(
    id="leaky-resnet",
    title="Leaky ResNets: a conserved Hamiltonian, COI and the bottleneck rank k*",
    papers=(PAPER,),
    description=(
        "L2-regularized leaky ResNets on a k* = 3 teacher: −(2/L̃)H and min COI bracket k*, "
        "middle weights have 3 large singular values, adaptive steps crowd near p = 0."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
