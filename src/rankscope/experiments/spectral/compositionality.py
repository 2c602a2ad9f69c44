"""Compositionality scaling laws (Jacot, Choi, Wen, arXiv:2407.05664, ICLR 2025).

f* = h∘g with g: R^15 → R^3 a Matérn(ν_g) GP sample and h: R^3 → R^20 a Matérn(ν_h) one.
An L2-regularized AccNet learns f* at a rate set by the harder of g (smoothness ν_g in 15
dimensions) and h (ν_h in 3), so its scaling exponent orders the regimes A (both smooth) ≥
B (h rough) > C (g rough), and in B it beats a shallow method that only sees f*'s smoothness
in 15 dimensions (kernel ridge regression with a Laplace kernel, scikit-learn). The AccNet's
narrow layers then have numerical rank ≈ d_mid = 3. Setup: the official code's generator and
3-stage Adam schedule (shc443/CoveringNumber_GB), scaled down for CPU (docs/results.md;
docs/decisions.md gives what the paper preset would need).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext, check
from rankscope.experiments.spectral.data import compositional_data
from rankscope.metrics.ranks import numerical_rank
from rankscope.metrics.scaling import scaling_exponent
from rankscope.metrics.spectra import singular_values
from rankscope.models.accnet import AccNetEnsemble
from rankscope.optional import require
from rankscope.train import train

PAPER = "arXiv:2407.05664"
WD_MODES = ("adam_coupled",)


@dataclass(frozen=True)
class AccNetShape:
    """Default: the CPU-scale AccNet 15 → [300 → 30] × 2 → 300 → 20 (docs/decisions.md 53:
    at 100/10 the nets under-fit and the exponents of B and C tie)."""

    d_full: int = 300
    d_narrow: int = 30
    blocks: int = 3
    narrow_relu: bool = True  # as the official Net / AccordionNet forward


@dataclass(frozen=True)
class Schedule:
    """The official 3-stage Adam schedule; ``weight_decays`` are torch Adam's coupled
    ``weight_decay`` on every parameter, i.e. the penalty (wd/2)·‖θ‖² (definitions §0)."""

    lrs: tuple[float, ...] = (1.5e-3, 4e-4, 1e-4)
    weight_decays: tuple[float, ...] = (0.0, 2e-3, 5e-3)
    epochs: tuple[int, ...] = (150, 150, 150)
    batches_per_epoch: int = 5
    wd_mode: str = "adam_coupled"

    def __post_init__(self) -> None:
        if not len(self.lrs) == len(self.weight_decays) == len(self.epochs):
            raise ValueError(
                f"lrs {self.lrs}, weight_decays {self.weight_decays} and epochs {self.epochs} "
                "must have one entry per stage"
            )
        if self.wd_mode not in WD_MODES:
            raise ValueError(
                f"wd_mode must be one of {WD_MODES} (the official loop's coupled Adam "
                f"weight_decay; AdamW is not an L2 penalty), got {self.wd_mode!r}"
            )


@dataclass(frozen=True)
class KernelBaseline:
    """scikit-learn KernelRidge, Laplace kernel exp(−γ‖x − x′‖_1), (α, γ) by 3-fold CV."""

    alphas: tuple[float, ...] = (1e-2, 1e-1)
    gammas: tuple[float, ...] = (0.05,)


@dataclass(frozen=True)
class Criteria:
    margin: float = 0.05  # criterion 2: AccNet − kernel exponent in regime B
    rank_tolerance: int = 1  # criterion 3: |rank − d_mid| <= this in every narrow layer
    rank_atol: float = 0.1  # `accnet` rank preset: s_i > max(0.1, 0.1·s_1)
    rank_rtol: float = 0.1


@dataclass(frozen=True)
class Config:
    regimes: tuple[str, ...] = ("A", "B", "C")
    nu_g: tuple[float, ...] = (8.0, 8.0, 1.5)
    nu_h: tuple[float, ...] = (8.0, 1.0, 8.0)
    sizes: tuple[int, ...] = (200, 400, 800, 1600)
    n_test: int = 500
    d_in: int = 15
    d_mid: int = 3
    d_out: int = 20
    jitter: float = 1e-4
    tabulate_kernel: bool = True  # K_ν on 2^18 distances + interpolation (error < 2e-9)
    net: AccNetShape = field(default_factory=AccNetShape)
    schedule: Schedule = field(default_factory=Schedule)
    kernel: KernelBaseline = field(default_factory=KernelBaseline)
    criteria: Criteria = field(default_factory=Criteria)

    def __post_init__(self) -> None:
        if not len(self.regimes) == len(self.nu_g) == len(self.nu_h):
            raise ValueError(f"regimes {self.regimes}, nu_g, nu_h need one entry per regime")
        if len(self.sizes) < 2 or sorted(self.sizes) != list(self.sizes):
            raise ValueError(f"sizes must be >= 2 increasing training sizes, got {self.sizes}")
        if min(self.sizes) < self.schedule.batches_per_epoch:
            raise ValueError(f"every size must be >= batches_per_epoch, got {self.sizes}")
        for nu in (*self.nu_g, *self.nu_h):
            if not nu > 0:
                raise ValueError(f"Matérn smoothness nu must be > 0, got {nu!r}")


PRESETS = {
    "smoke": Config(
        sizes=(40, 80),
        n_test=80,
        net=AccNetShape(d_full=24, d_narrow=6, blocks=2),
        schedule=Schedule(epochs=(8, 8, 8)),
        kernel=KernelBaseline(alphas=(1e-2,), gammas=(0.03,)),
    ),
    "default": Config(),
    "paper": Config(
        sizes=(100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000),
        n_test=2500,
        net=AccNetShape(d_full=900, d_narrow=100, blocks=5),
        schedule=Schedule(epochs=(1200, 1200, 1200)),
        kernel=KernelBaseline(alphas=(1e-3, 1e-2, 1e-1), gammas=(0.01, 0.03, 0.1)),
    ),
}


@dataclass(frozen=True)
class RegimeRun:
    name: str
    nu_g: float
    nu_h: float
    predicted: float  # min(1/2, ν_g/d_in, ν_h/d_mid) [unverified rate, docs/decisions.md]
    sizes: list[int]
    accnet_test: list[float]  # test MSE per size
    accnet_train: list[float]
    kernel_test: list[float]
    accnet_exponent: float
    kernel_exponent: float
    narrow_ranks: list[list[int]]  # per size: rank of each inner narrow layer


@dataclass(frozen=True)
class Summary:
    regimes: list[RegimeRun]
    d_mid: int
    criteria: Criteria


def _mse(ens: AccNetEnsemble, batch) -> torch.Tensor:
    """Per-member test/train MSE; ``batch`` = (x (N, E, d_in), y (N, E, d_out)), one data
    column per member, or the per-member minibatches (E, B, E, d) of the engine
    (``rankscope.train.train``; member e reads its own column e)."""
    x, y = batch
    if x.ndim == 4:  # (E, B, E, d): rows drawn for member e, keep member e's own column
        x = torch.diagonal(x, dim1=0, dim2=2).permute(2, 0, 1)
        y = torch.diagonal(y, dim1=0, dim2=2).permute(2, 0, 1)
    else:
        x, y = x.transpose(0, 1), y.transpose(0, 1)
    return (ens(x) - y).pow(2).mean((1, 2))


def _train_accnets(cfg: Config, x, y, gens, batch_gens) -> AccNetEnsemble:
    """One AccNet per member, trained together: x (N, E, d_in), y (N, E, d_out); member e
    initialises from ``gens[e]`` and draws its minibatches from ``batch_gens[e]``, so its run
    does not depend on which other members share the ensemble."""
    shape = cfg.net
    ens = AccNetEnsemble(cfg.d_in, shape.d_full, shape.d_narrow, cfg.d_out, shape.blocks,
                         generators=gens, narrow_relu=shape.narrow_relu)  # fmt: skip
    sch = cfg.schedule
    batch = x.shape[0] // sch.batches_per_epoch
    offset = 0
    for lr, wd, epochs in zip(sch.lrs, sch.weight_decays, sch.epochs):
        steps = epochs * sch.batches_per_epoch
        # coupled Adam weight_decay = wd  ⇔  penalty (wd/2)·‖θ‖² on every parameter
        train(ens, _mse, optimizer="adam", lr=lr, steps=steps, data=(x, y), batch_size=batch,
              batches="per_member", generator=batch_gens, l2=wd / 2, l2_params="all",
              log_at=[steps], step_offset=offset)  # fmt: skip
        offset += steps
    return ens


def _narrow_ranks(ens: AccNetEnsemble, e: int, crit: Criteria) -> list[int]:
    """Official ``ranks()``: inner narrow layer i: max(rank W_out_i, rank V_in_{i+1})."""
    ws = [w[e].detach() for w in ens.weights]
    ranks = []
    for i in range(1, len(ws) - 1, 2):  # ws[i]: wide → narrow, ws[i+1]: narrow → wide
        r = [int(numerical_rank(singular_values(w), "torch", atol=crit.rank_atol,
                                rtol=crit.rank_rtol)) for w in (ws[i], ws[i + 1])]  # fmt: skip
        ranks.append(max(r))
    return ranks


def _require_sklearn() -> None:
    """The kernel baseline is scikit-learn's; fail before any training, not after it."""
    require("sklearn", extra="digits", needed_for="compositionality's kernel-ridge baseline")


def _kernel_fit(cfg: KernelBaseline, x, y, xt, yt) -> float:
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV

    grid = {"alpha": list(cfg.alphas), "gamma": list(cfg.gammas)}
    if len(cfg.alphas) * len(cfg.gammas) == 1:
        model = KernelRidge(kernel="laplacian", alpha=cfg.alphas[0], gamma=cfg.gammas[0])
    else:
        model = GridSearchCV(KernelRidge(kernel="laplacian"), grid, cv=3,
                             scoring="neg_mean_squared_error")  # fmt: skip
    model.fit(x, y)
    return float(((model.predict(xt) - yt) ** 2).mean())


def predicted_exponent(nu_g: float, nu_h: float, d_in: int, d_mid: int) -> float:
    """min(1/2, ν_g/d_in, ν_h/d_mid): the spec's [unverified] rate (docs/decisions.md)."""
    return min(0.5, nu_g / d_in, nu_h / d_mid)


def _datasets(config: Config, ctx: RunContext) -> list:
    n_total = config.sizes[-1] + config.n_test
    out = []
    for i, (nu_g, nu_h) in enumerate(zip(config.nu_g, config.nu_h)):
        rng = np.random.default_rng(int(ctx.rng.integers(2**31)) + i)
        out.append(compositional_data(
            n_total, nu_g, nu_h, rng, d_in=config.d_in, d_mid=config.d_mid,
            d_out=config.d_out, jitter=config.jitter, tabulate=config.tabulate_kernel,
        ))  # fmt: skip
    return out


def run_many(configs, ctxs) -> list[Result]:
    """Several seeds of one config: every (seed, regime) pair is a member of one AccNet
    ensemble per training size. Each member's init, minibatches and data come from its own
    seed, so a seed's result does not depend on which seeds share the ensemble."""
    config = configs[0]
    if any(c != config for c in configs):
        raise ValueError("run_many needs identical configs (ensemble_key is the config)")
    _require_sklearn()
    n_reg, n_max = len(config.regimes), config.sizes[-1]
    data = [d for ctx in ctxs for d in _datasets(config, ctx)]  # member = (seed, regime)
    xs = torch.from_numpy(np.stack([d.x for d in data], axis=1)).float()  # (N, E, d_in)
    ys = torch.from_numpy(np.stack([d.y for d in data], axis=1)).float()
    members = [(ctx, i) for ctx in ctxs for i in range(n_reg)]
    test, train_err, kern, ranks = [], [], [], []
    for j, n in enumerate(config.sizes):
        gens = [ctx.child_generator(100 * j + i) for ctx, i in members]
        batch_gens = [ctx.child_generator(10_000 + 100 * j + i) for ctx, i in members]
        ens = _train_accnets(config, xs[:n], ys[:n], gens, batch_gens)
        with torch.no_grad():
            test.append(_mse(ens, (xs[n_max:], ys[n_max:])).tolist())
            train_err.append(_mse(ens, (xs[:n], ys[:n])).tolist())
        ranks.append([_narrow_ranks(ens, e, config.criteria) for e in range(len(members))])
        kern.append([_kernel_fit(config.kernel, d.x[:n], d.y[:n], d.x[n_max:], d.y[n_max:])
                     for d in data])  # fmt: skip
        for ctx in ctxs:
            ctx.progress((j + 1) / len(config.sizes))
    results = []
    for s_idx, ctx in enumerate(ctxs):
        runs = []
        for i, name in enumerate(config.regimes):
            e = s_idx * n_reg + i
            acc = [test[j][e] for j in range(len(config.sizes))]
            ker = [kern[j][e] for j in range(len(config.sizes))]
            for n, a, k in zip(config.sizes, acc, ker):
                ctx.log.log(f"test_mse_accnet_{name}", a, step=n)
                ctx.log.log(f"test_mse_kernel_{name}", k, step=n)
            runs.append(RegimeRun(
                name, float(config.nu_g[i]), float(config.nu_h[i]),
                predicted_exponent(config.nu_g[i], config.nu_h[i], config.d_in, config.d_mid),
                list(config.sizes), acc, [train_err[j][e] for j in range(len(config.sizes))],
                ker, scaling_exponent(config.sizes, acc).exponent,
                scaling_exponent(config.sizes, ker).exponent,
                [ranks[j][e] for j in range(len(config.sizes))],
            ))  # fmt: skip
        summary = Summary(runs, config.d_mid, config.criteria)
        results.append(Result(summary=summary, records=ctx.log.freeze()))
    return results


def run(config: Config, ctx: RunContext) -> Result:
    return run_many([config], [ctx])[0]


# ---- claims ------------------------------------------------------------------------------


def _by_name(s: Summary) -> dict[str, RegimeRun]:
    return {r.name: r for r in s.regimes}


def _stats(results, name: str, attr: str) -> tuple[float, float, list[float]]:
    vals = [getattr(_by_name(r.summary)[name], attr) for r in results]
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return float(np.mean(vals)), sd, vals


def _comp1(results):
    a, sa, _va = _stats(results, "A", "accnet_exponent")
    b, sb, _vb = _stats(results, "B", "accnet_exponent")
    c, sc, _vc = _stats(results, "C", "accnet_exponent")
    ok = a >= b > c
    head = (
        f"AccNet exponents A {a:.3f} ± {sa:.3f}, B {b:.3f} ± {sb:.3f}, C {c:.3f} ± {sc:.3f} "
        f"over {len(results)} seed(s); want A ≥ B > C → {'pass' if ok else 'fail'}"
    )
    return check(ok, headline=head, A=a, B=b, C=c, sd_A=sa, sd_B=sb, sd_C=sc,
                 seeds=len(results))  # fmt: skip


def _comp2(results):
    margin = results[0].summary.criteria.margin
    acc, sa, _ = _stats(results, "B", "accnet_exponent")
    ker, sk, _ = _stats(results, "B", "kernel_exponent")
    gap = acc - ker
    head = (
        f"regime B: AccNet exponent {acc:.3f} ± {sa:.3f} vs kernel ridge {ker:.3f} ± {sk:.3f}: "
        f"gap {gap:+.3f} (need ≥ {margin})"
    )
    return check(gap >= margin, headline=head, accnet=acc, kernel=ker, gap=gap)


def _comp3(result: Result):
    s: Summary = result.summary
    b = _by_name(s)["B"]
    ranks = b.narrow_ranks[-1]
    tol = s.criteria.rank_tolerance
    ok = all(abs(r - s.d_mid) <= tol for r in ranks)
    head = (
        f"regime B at N = {b.sizes[-1]}: narrow-layer ranks {ranks} (accnet preset) vs "
        f"d_mid = {s.d_mid} ± {tol} → {'pass' if ok else 'fail'}"
    )
    return check(ok, headline=head, **{f"narrow{i + 1}": r for i, r in enumerate(ranks)})


# Inversions of the across-seed claims (the shared tester applies ``invert=`` to per-seed
# checks only; tests/spectral apply these to ``across_seeds``).
def invert_comp1(s: Summary) -> Summary:
    order = {"A": -1.0, "B": 0.0, "C": 1.0}
    return replace(s, regimes=[replace(r, accnet_exponent=order.get(r.name, 0.0))
                               for r in s.regimes])  # fmt: skip


def invert_comp2(s: Summary) -> Summary:
    return replace(s, regimes=[replace(r, kernel_exponent=r.accnet_exponent + 0.1)
                               for r in s.regimes])  # fmt: skip


def _invert_comp3(s: Summary) -> Summary:
    far = s.d_mid + 5 * (s.criteria.rank_tolerance + 1)
    return replace(s, regimes=[replace(r, narrow_ranks=[[far] * len(x) for x in r.narrow_ranks])
                               for r in s.regimes])  # fmt: skip


CLAIMS = (
    Claim("COMP-1", PAPER,
          "AccNet scaling exponents follow the harder of g and h: both smooth (A) ≥ h rough (B) "
          "> g rough (C)",
          "mean exponents over seeds ordered A ≥ B > C", across_seeds=_comp1),
    Claim("COMP-2", PAPER,
          "With a rough h on a 3-dimensional quotient (B), the AccNet beats a shallow method "
          "that sees f* in 15 dimensions",
          "AccNet exponent − kernel ridge exponent ≥ 0.05 (means over seeds)",
          across_seeds=_comp2),
    Claim("COMP-3", PAPER,
          "In regime B the AccNet's narrow layers learn the 3-dimensional quotient",
          "numerical rank (accnet preset) within 3 ± 1 in every narrow layer at the largest N",
          check=_comp3, invert=_invert_comp3),
)  # fmt: skip

EXPERIMENT = Experiment(
    id="compositionality",
    title="Compositionality: AccNet scaling laws follow the harder of g and h",
    papers=(PAPER,),
    description=(
        "Deep L2-regularized AccNets learn f* = h∘g at the rate of its harder part and beat a "
        "shallow kernel method when h is rough but lives on a 3-dimensional quotient."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 3},
    run_many=run_many,
    ensemble_key=lambda config: config,
)
