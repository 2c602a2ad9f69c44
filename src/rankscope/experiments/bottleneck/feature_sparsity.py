"""`feature-sparsity`: L2-regularized ReLU nets in activation form, and Carathéodory pruning
(Jacot, Golikov, Hongler, Gabriel, arXiv 2205.15809).

N points in R^d with random targets; a ReLU net with two hidden layers and biases minimizes
J = C + λ‖θ‖² (C = (1/N)Σ‖y − f‖², biases counted) by full-batch Adam, then L-BFGS in
float64 (‖∇J‖ reported). At the critical point (1) J equals the activation form
C(Z_L) + λΣ_ℓ Tr[Z_ℓ(K^σ_{ℓ−1})⁺Z_ℓᵀ] and W_ℓ = Z_ℓσ̃(Z_{ℓ−1})⁺; (2) Carathéodory pruning
of each hidden layer in turn keeps ≤ N(N+1) neurons with J unchanged and the point still
critical; (3) a width sweep over several N shows where the best J stops improving.
Records: ``pruned_width`` (layer ``h{ℓ}``), ``sweep_best`` (step = width, layer ``N{n}``),
``sweep_pruned`` (step = N) and the training curves.
"""

from __future__ import annotations

import dataclasses
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
from rankscope.experiments.bottleneck._common import fit_two_phase, mse_sum
from rankscope.metrics import activation_form, min_norm_weights
from rankscope.models import MLP
from rankscope.sparsify import prune_layer
from rankscope.train import gradient_norm

__all__ = ["CLAIMS", "EXPERIMENT", "PRESETS", "Config", "Summary", "run"]

PAPER = "arXiv:2205.15809"


@dataclass(frozen=True)
class MainConfig:
    """The pruned network: ``n_points`` points in R^d_in, ``d_out`` outputs, two hidden
    layers of ``width``; ``rcond`` is the pseudo-inverse cutoff, ``prune_rtol`` the null-space
    cutoff of the Carathéodory steps (both relative, float64)."""

    n_points: int = 12
    d_in: int = 5
    d_out: int = 3
    width: int = 60
    lam: float = 1e-3
    adam_steps: int = 1500
    adam_lr: float = 3e-3
    lbfgs_steps: int = 60
    grad_tol: float = 1e-9
    rcond: float = 1e-10
    prune_rtol: float = 1e-10


@dataclass(frozen=True)
class SweepConfig:
    """Best J over ``inits`` initializations per width, for each N in ``n_points``."""

    n_points: tuple[int, ...] = (6, 12)
    widths: tuple[int, ...] = (2, 4, 8, 16, 32, 64)
    inits: int = 2
    adam_steps: int = 400
    lbfgs_steps: int = 20
    plateau: float = 0.01


@dataclass(frozen=True)
class Config:
    main: MainConfig = field(default_factory=MainConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


PRESETS = {
    "smoke": Config(
        main=MainConfig(n_points=4, width=30, adam_steps=150, lbfgs_steps=10),
        sweep=SweepConfig(n_points=(3,), widths=(2, 4, 8), inits=1, adam_steps=40, lbfgs_steps=2),
    ),
    "default": Config(),
    "paper": Config(
        main=MainConfig(width=300, adam_steps=5000, lbfgs_steps=500),
        sweep=SweepConfig(
            n_points=(6, 12, 24),
            widths=(4, 8, 12, 24, 48, 96),
            inits=5,
            adam_steps=3000,
            lbfgs_steps=200,
        ),
    ),
}


@dataclass(frozen=True)
class LayerPrune:
    layer: int
    width_before: int
    width_after: int
    n_dead: int
    cone_residual: float
    fit_residual: float


@dataclass(frozen=True)
class SweepPoint:
    n_points: int
    width: int
    best_objective: float
    grad_norm: float


@dataclass(frozen=True)
class Summary:
    n_points: int
    width: int
    objective: float
    data_loss: float
    grad_norm: float
    activation_form: float
    form_rel_error: float
    min_norm_deviation: float  # max_ℓ ‖W̃_ℓ − Z_ℓσ̃(Z_{ℓ−1})⁺‖/‖W̃_ℓ‖
    min_norm_deviations: list[float]  # per layer ℓ = 1..L
    layer_grad_norms: list[float]  # ‖∂J/∂W̃_ℓ‖ (weights and bias), per layer
    layer_weight_norms: list[float]  # ‖W̃_ℓ‖_F, per layer
    kink_fraction: float  # hidden pre-activations with |z| < 1e-6·max|z| (ReLU kinks)
    prunes: list[LayerPrune]
    pruned_objective: float
    pruned_rel_change: float
    pruned_grad_norm: float
    sweep: list[SweepPoint]
    sweep_pruned: dict[str, list[int]]  # N -> pruned widths of the widest sweep net
    lam: float
    rcond: float


def _task(g: torch.Generator, n: int, d_in: int, d_out: int):
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = torch.randn(n, d_out, generator=g, dtype=torch.float64)
    return x, y


def _net(dims, g) -> MLP:
    return MLP(dims, "relu", True, init="lecun", generator=g, dtype=torch.float64)


def _loss(x, y):
    def loss(m):
        return mse_sum(m(x), y)

    return loss


def _from_layers(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> MLP:
    """An MLP holding the given (W_ℓ, b_ℓ) (float64)."""
    dims = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
    # the init is overwritten at once; a fixed generator keeps the global RNG untouched
    net = MLP(dims, "relu", True, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        for l, (w, b) in enumerate(layers):
            net.weights[l].copy_(w)
            net.biases[l].copy_(b)
    return net


def _prune_all(net: MLP, x: torch.Tensor, rtol: float, rcond: float):
    """Prune hidden layers 1..L−1 in turn; returns the pruned net and per-layer reports."""
    layers = [(w.detach().clone(), b.detach().clone()) for w, b in zip(net.weights, net.biases)]
    reports = []
    for l in range(len(layers) - 1):
        h = x
        for w, b in layers[:l]:
            h = torch.relu(h @ w.mT + b)
        (w, b), (wn, bn) = layers[l], layers[l + 1]
        out = prune_layer(h, w, b, wn, bn, rtol=rtol, rcond=rcond)
        layers[l] = (out.weight, out.bias)
        layers[l + 1] = (out.next_weight, out.next_bias)
        reports.append(
            LayerPrune(
                l + 1,
                w.shape[0],
                out.weight.shape[0],
                out.n_dead,
                out.cone_residual,
                out.fit_residual,
            )
        )
    return _from_layers(layers), reports


def _layer_gradients(net: MLP, loss, lam: float) -> list[float]:
    """‖∂J/∂W̃_ℓ‖_F per layer, W̃_ℓ = [W_ℓ, b_ℓ], J = C + λ‖θ‖² (biases counted)."""
    params = [q for pair in zip(net.weights, net.biases) for q in pair]
    with torch.enable_grad():
        obj = loss(net) + lam * sum((q * q).sum() for q in params)
        grads = torch.autograd.grad(obj, params)
    return [
        float((grads[2 * l].square().sum() + grads[2 * l + 1].square().sum()).sqrt())
        for l in range(len(net.weights))
    ]


def _objective(net: MLP, loss, lam: float) -> float:
    with torch.no_grad():
        return float(loss(net)) + lam * float(net.squared_norm(True))


def run(config: Config, ctx: RunContext) -> Result:
    m, sw = config.main, config.sweep
    x, y = _task(ctx.child_generator(0), m.n_points, m.d_in, m.d_out)
    loss = _loss(x, y)
    net = _net([m.d_in, m.width, m.width, m.d_out], ctx.child_generator(1))
    rep = fit_two_phase(
        net,
        loss,
        l2=m.lam,
        l2_params="all",
        adam_steps=m.adam_steps,
        adam_lr=m.adam_lr,
        lbfgs_steps=m.lbfgs_steps,
        grad_tol=m.grad_tol,
        log=ctx.log,
        tag="main",
    )
    ctx.progress(0.4)
    with torch.no_grad():
        out, _, zs = net.forward_with_hidden(x)
        data = float(mse_sum(out, y))
        form = float(activation_form(x, zs, data, m.lam, rcond=m.rcond))
        devs, prev, act = [], x, False
        for l, z in enumerate(zs):
            w_full = torch.cat([net.weights[l], net.biases[l][:, None]], 1)
            w_min = min_norm_weights(z, prev, activation=act, rcond=m.rcond)
            devs.append(float((w_full - w_min).norm() / w_full.norm()))
            prev, act = z, True
        hidden = torch.cat([z.flatten() for z in zs[:-1]])
        kinks = float((hidden.abs() < 1e-6 * hidden.abs().max()).double().mean())
    g_layers = _layer_gradients(net, loss, m.lam)
    w_norms = [
        float(torch.cat([w, b[:, None]], 1).detach().norm())
        for w, b in zip(net.weights, net.biases)
    ]
    obj = rep.objective
    pruned, prunes = _prune_all(net, x, m.prune_rtol, m.rcond)
    p_obj = _objective(pruned, loss, m.lam)
    p_grad = gradient_norm(pruned, loss, l2=m.lam, l2_params="all")
    for p in prunes:
        ctx.log.log("pruned_width", p.width_after, step=m.n_points, layer=f"h{p.layer}")
    ctx.progress(0.5)
    sweep, sweep_pruned = [], {}
    for i, n in enumerate(sw.n_points):
        xs, ys = _task(ctx.child_generator(100 + n), n, m.d_in, m.d_out)
        ls = _loss(xs, ys)
        widest = None
        for w in sw.widths:
            best, best_net, best_grad = float("inf"), None, float("nan")
            for k in range(sw.inits):
                cand = _net([m.d_in, w, w, m.d_out], ctx.child_generator(10_000 * n + 100 * w + k))
                r = fit_two_phase(
                    cand,
                    ls,
                    l2=m.lam,
                    l2_params="all",
                    adam_steps=sw.adam_steps,
                    adam_lr=m.adam_lr,
                    lbfgs_steps=sw.lbfgs_steps,
                    log=ctx.log,
                    tag=f"sweep/N{n}/w{w}/{k}",
                )
                if r.objective < best:
                    best, best_net, best_grad = r.objective, cand, r.grad_norm
            sweep.append(SweepPoint(n, w, best, best_grad))
            ctx.log.log("sweep_best", best, step=w, layer=f"N{n}")
            widest = best_net
        _, pr = _prune_all(widest, xs, m.prune_rtol, m.rcond)
        sweep_pruned[str(n)] = [p.width_after for p in pr]
        for p in pr:
            ctx.log.log("sweep_pruned", p.width_after, step=n, layer=f"h{p.layer}")
        ctx.progress(0.5 + 0.5 * (i + 1) / len(sw.n_points))
    summary = Summary(
        n_points=m.n_points,
        width=m.width,
        objective=obj,
        data_loss=data,
        grad_norm=rep.grad_norm,
        activation_form=form,
        form_rel_error=abs(form - obj) / abs(obj),
        min_norm_deviation=max(devs),
        min_norm_deviations=devs,
        layer_grad_norms=g_layers,
        layer_weight_norms=w_norms,
        kink_fraction=kinks,
        prunes=prunes,
        pruned_objective=p_obj,
        pruned_rel_change=abs(p_obj - obj) / abs(obj),
        pruned_grad_norm=p_grad,
        sweep=sweep,
        sweep_pruned=sweep_pruned,
        lam=m.lam,
        rcond=m.rcond,
    )
    return Result(summary=summary, records=ctx.log.freeze())


# ---------------------------------------------------------------- claims

FORM_TOL, MIN_NORM_TOL = 1e-4, 1e-3
PRUNE_TOL, CRIT_TOL = 1e-6, 1e-6
CRIT_FACTOR = 2.0  # pruning may not make the point less stationary than this factor
ORDER_SLACK = 1e-12  # float64 slack on the inequalities J >= form and J_pruned <= J


def stationarity_bounds(s: Summary) -> tuple[float, list[float]]:
    """What the measured non-stationarity allows (docs/claims-changelog.md, FS-1).

    With P⊥_ℓ the projector off the column space of σ̃(Z_{ℓ−1}), the data-loss gradient of
    W̃_ℓ lies in that column space, so (∂J/∂W̃_ℓ)P⊥_ℓ = 2λW̃_ℓP⊥_ℓ exactly, and
    W̃_ℓ − Z_ℓσ̃(Z_{ℓ−1})⁺ = W̃_ℓP⊥_ℓ. Hence J − form = λΣ‖W̃_ℓP⊥_ℓ‖² ≤ Σ g_ℓ²/(4λ) and the
    min-norm deviation of layer ℓ is ≤ g_ℓ/(2λ‖W̃_ℓ‖), g_ℓ = ‖∂J/∂W̃_ℓ‖. Returns the bound
    on (J − form)/J and the per-layer deviation bounds; both → 0 as ‖∇J‖ → 0.
    """
    gap = sum(g * g for g in s.layer_grad_norms) / (4 * s.lam * abs(s.objective))
    devs = [
        g / (2 * s.lam * w) for g, w in zip(s.layer_grad_norms, s.layer_weight_norms, strict=True)
    ]
    return gap, devs


def _form(r: Result) -> Check:
    s = r.summary
    gap_bound, dev_bounds = stationarity_bounds(s)
    gap_tol = max(FORM_TOL, gap_bound)
    dev_tols = [max(MIN_NORM_TOL, b) for b in dev_bounds]
    signed_gap = (s.objective - s.activation_form) / abs(s.objective)
    below = signed_gap >= -ORDER_SLACK  # J >= activation form (the paper's inequality)
    ok = (
        below
        and s.form_rel_error <= gap_tol
        and all(d <= t for d, t in zip(s.min_norm_deviations, dev_tols, strict=True))
    )
    worst = max(range(len(dev_tols)), key=lambda i: s.min_norm_deviations[i] / dev_tols[i])
    return check(
        ok,
        headline=(
            f"J − activation form = {signed_gap:.1e}·J (>= 0; <= {gap_tol:.1e} = max({FORM_TOL:g}, "
            f"Σ‖∂J/∂W̃_ℓ‖²/(4λJ))); min-norm deviation {s.min_norm_deviations[worst]:.1e} "
            f"(layer {worst + 1}; <= {dev_tols[worst]:.1e} = max({MIN_NORM_TOL:g}, "
            f"‖∂J/∂W̃_ℓ‖/(2λ‖W̃_ℓ‖))); ‖∇J‖ {s.grad_norm:.1e} → {'pass' if ok else 'fail'}"
        ),
        form_rel_error=s.form_rel_error,
        signed_gap=signed_gap,
        gap_bound=gap_bound,
        min_norm_deviation=s.min_norm_deviation,
        min_norm_deviations=s.min_norm_deviations,
        deviation_bounds=dev_bounds,
        layer_grad_norms=s.layer_grad_norms,
        grad_norm=s.grad_norm,
        kink_fraction=s.kink_fraction,
        objective=s.objective,
        activation_form=s.activation_form,
        diagnostic_strict_pass=bool(
            s.form_rel_error < FORM_TOL and s.min_norm_deviation < MIN_NORM_TOL
        ),
    )


def pruned_cases(s: Summary) -> list[tuple[int, int, int]]:
    """(N, width before, width after) of every pruned net: the main one per hidden layer and
    the widest sweep net per N."""
    cases = [(s.n_points, p.width_before, p.width_after) for p in s.prunes]
    for n, widths in s.sweep_pruned.items():
        before = max(p.width for p in s.sweep if p.n_points == int(n))
        cases += [(int(n), before, w) for w in widths]
    return cases


def _by_n(cases: list[tuple[int, int, int]], ref) -> str:
    """'N = 6: 64 → 40–42 (ref)' per N: the widths before and the range after pruning."""
    parts = []
    for n in sorted({c[0] for c in cases}):
        before = sorted({b for m, b, _ in cases if m == n})
        after = [a for m, _, a in cases if m == n]
        span = f"{min(after)}–{max(after)}" if min(after) != max(after) else f"{after[0]}"
        parts.append(f"N = {n}: {'/'.join(map(str, before))} → {span} ({ref(n)})")
    return "; ".join(parts)


def _bound(r: Result) -> Check:
    s = r.summary
    cases = pruned_cases(s)
    tested = [(n, b, a) for n, b, a in cases if b > n * (n + 1)]  # else the bound is trivial
    shown = _by_n(tested, lambda n: f"N(N+1) = {n * (n + 1)}")
    if not tested:
        return inconclusive(
            "every pruned net was already at most N(N+1) wide: the bound holds trivially",
            headline="no pruned net wider than N(N+1): nothing to test",
            cases=cases,
        )
    ok = all(a <= n * (n + 1) for n, _, a in tested)
    return check(
        ok,
        headline=f"pruned widths {shown} → " + ("pass" if ok else "fail"),
        cases=cases,
        dead={p.layer: p.n_dead for p in s.prunes},
    )


def _unchanged(r: Result) -> Check:
    s = r.summary
    vs_form = abs(s.pruned_objective - s.activation_form) / abs(s.activation_form)
    not_up = s.pruned_objective <= s.objective * (1 + ORDER_SLACK)
    crit_tol = max(CRIT_TOL, CRIT_FACTOR * s.grad_norm)
    ok = vs_form < PRUNE_TOL and not_up and s.pruned_grad_norm <= crit_tol
    return check(
        ok,
        headline=(
            f"after pruning: J = activation form of the unpruned net to {vs_form:.0e} "
            f"(< {PRUNE_TOL:g}); J changes by {s.pruned_rel_change:.1e} (the unpruned net's "
            f"J − form gap {s.form_rel_error:.1e}; may not rise); ‖∇J‖ {s.pruned_grad_norm:.1e}"
            f" (<= {crit_tol:.1e} = max({CRIT_TOL:g}, {CRIT_FACTOR:g}·{s.grad_norm:.1e} before))"
            " → " + ("pass" if ok else "fail")
        ),
        pruned_vs_activation_form=vs_form,
        rel_change=s.pruned_rel_change,
        pruned_grad_norm=s.pruned_grad_norm,
        grad_norm_before=s.grad_norm,
        cone_residuals=[p.cone_residual for p in s.prunes],
        fit_residuals=[p.fit_residual for p in s.prunes],
        diagnostic_strict_pass=bool(
            s.pruned_rel_change < PRUNE_TOL and s.pruned_grad_norm < CRIT_TOL
        ),
    )


def _sparse(r: Result) -> Check:
    cases = [(n, b, a) for n, b, a in pruned_cases(r.summary) if b > 2 * n]
    if not cases:
        return inconclusive(
            "no pruned net was wider than 2N", headline="no net wider than 2N: nothing to test"
        )
    ok = all(a <= 2 * n for n, _, a in cases)
    shown = _by_n(cases, lambda n: f"2N = {2 * n}, N² = {n * n}")
    return check(ok, headline=f"pruned widths {shown} → " + ("pass" if ok else "fail"), cases=cases)


def saturation_width(points: list[SweepPoint], plateau: float) -> int | None:
    """Smallest swept width whose best J is within ``plateau`` (relative) of every wider
    width's; None when only the widest qualifies (no plateau seen inside the sweep)."""
    points = sorted(points, key=lambda p: p.width)
    for i, p in enumerate(points[:-1]):
        rest = min(q.best_objective for q in points[i:])
        if p.best_objective <= (1 + plateau) * rest:
            return p.width
    return None


def _plateau(r: Result) -> Check:
    s = r.summary
    by_n: dict[int, list[SweepPoint]] = {}
    for p in s.sweep:
        by_n.setdefault(p.n_points, []).append(p)
    found = {n: saturation_width(pts, 0.01) for n, pts in by_n.items()}
    if any(v is None for v in found.values()):
        missing = [n for n, v in found.items() if v is None]
        return inconclusive(
            f"no plateau inside the swept widths for N = {missing}",
            headline=f"best J still improving > 1% at the widest width for N = {missing}",
            saturation=found,
        )
    ok = all(w <= n * (n + 1) for n, w in found.items())
    shown = ", ".join(f"N = {n}: w* = {w} (N(N+1) = {n * (n + 1)})" for n, w in found.items())
    return check(ok, headline=f"{shown} → " + ("pass" if ok else "fail"), saturation=found)


def _invert_form(s: Summary) -> Summary:
    # an activation form above J: impossible for a correct form (J >= form always)
    return dataclasses.replace(s, activation_form=s.objective * 1.1, form_rel_error=0.1)


def _invert_bound(s: Summary) -> Summary:
    big = s.n_points * (s.n_points + 1) + 1
    return dataclasses.replace(
        s, prunes=[dataclasses.replace(p, width_before=big + 1, width_after=big) for p in s.prunes]
    )


def _invert_unchanged(s: Summary) -> Summary:
    return dataclasses.replace(s, pruned_rel_change=0.1, pruned_objective=s.objective * 1.1)


def _invert_sparse(s: Summary) -> Summary:
    n2 = s.n_points**2
    return dataclasses.replace(
        s, prunes=[dataclasses.replace(p, width_before=n2 + 1, width_after=n2) for p in s.prunes]
    )


def _invert_plateau(s: Summary) -> Summary:
    # the best loss halves at every wider width up to the widest, then plateaus beyond N(N+1)
    n = s.n_points
    pts = [SweepPoint(n, w, 2.0 ** (-i), 0.0) for i, w in enumerate((1, 2, n * (n + 1) + 1))]
    pts.append(SweepPoint(n, n * (n + 1) + 2, 0.25, 0.0))
    return dataclasses.replace(s, sweep=pts)


CLAIMS = (
    Claim(
        "FS-1",
        PAPER,
        "At a critical point the L2 loss equals its activation form "
        "C(Z_L) + λΣTr[Z_ℓ(K^σ_{ℓ−1})⁺Z_ℓᵀ] and W_ℓ = Z_ℓσ̃(Z_{ℓ−1})⁺.",
        "J >= form; (J − form)/J <= max(1e-4, Σg_ℓ²/(4λJ)); min-norm deviation of layer ℓ "
        "<= max(1e-3, g_ℓ/(2λ‖W̃_ℓ‖)), g_ℓ = ‖∂J/∂W̃_ℓ‖ (→ the 1e-4 / 1e-3 tolerances at a "
        "critical point)",
        check=_form,
        invert=_invert_form,
    ),
    Claim(
        "FS-2",
        PAPER,
        "Carathéodory pruning leaves at most N(N+1) neurons per hidden layer.",
        "pruned width <= N(N+1)",
        check=_bound,
        invert=_invert_bound,
    ),
    Claim(
        "FS-3",
        PAPER,
        "Pruning leaves the regularized loss unchanged and the point critical.",
        "pruned J = unpruned activation form to 1e-6, J does not rise, and "
        "‖∇J‖ <= max(1e-6, 2·‖∇J‖ before) (= J unchanged and critical at a critical point)",
        check=_unchanged,
        invert=_invert_unchanged,
    ),
    Claim(
        "FS-4",
        PAPER,
        "Typical pruned widths are far below N² (about 2N or less).",
        "pruned width <= 2N",
        check=_sparse,
        invert=_invert_sparse,
        hard=False,
    ),
    Claim(
        "FS-5",
        PAPER,
        "The best regularized loss stops improving (< 1%) at a width <= N(N+1).",
        "saturation width <= N(N+1) for every N",
        check=_plateau,
        invert=_invert_plateau,
    ),
)

EXPERIMENT = Experiment(
    id="feature-sparsity",
    title="Feature sparsity: activation form of the L2 loss and Carathéodory pruning",
    papers=(PAPER,),
    description=(
        "A 2-hidden-layer ReLU net at an L2-regularized critical point equals its activation "
        "form, prunes to <= N(N+1) neurons with the loss unchanged, and saturates in width."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
