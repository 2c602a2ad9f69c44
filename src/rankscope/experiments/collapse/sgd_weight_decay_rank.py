"""`sgd-weight-decay-rank`: mini-batch SGD with weight decay lowers the rank of the weights.

Galanti, Siegel, Gupte, Poggio, arXiv 2206.05794 (docs/results.md). Unrolling SGD on
loss + λ‖W‖² gives W_T = (1 − 2μλ)^T W_0 − μ·Σ_s (1 − 2μλ)^{T−1−s} G_s with rank(G_s) ≤ B for a
fully connected layer, so after ≈ log(2/ε)/(2μλ) steps W_T/‖W_T‖ is ε-close to a matrix of rank
≲ B·log(2/ε)/(2μλ): lower for small batches B, large learning rates μ and large λ. An MLP on
digits is trained with plain SGD over the grid B × μ × λ for one number of steps T, chosen so
that every λ > 0 point has decayed its initial weights by (1 − 2μλ)^T ≤ e^{−D}, D = 10 (the
bound needs 2μλT ≥ log(2/ε) ≈ 7.6 at ε = 1e-3; a fixed epoch count left most of the grid
short of it). The members of one batch size train as one vectorized ensemble (per-member μ
and λ, shared batches, same init). Ranks use the official `galanti` preset,
s_i > 1e-3·‖W‖_F (definitions §1). The B, μ and λ claims are matched-pair sign tests over
seeds (galanti_claims).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext
from rankscope.experiments.collapse import galanti_claims
from rankscope.experiments.collapse.data import Split, digits_split
from rankscope.experiments.collapse.fit import ce_loss, mlp_dims
from rankscope.metrics import numerical_rank, singular_values, stable_rank
from rankscope.models import MLPEnsemble
from rankscope.train import log_steps, train

__all__ = ["CLAIMS", "EXPERIMENT", "PRESETS", "Config", "GridRun", "Summary", "run", "run_tag"]

PAPER = "arXiv:2206.05794"
RANK_PRESET = "galanti"  # the official evaluator's rule (rankscope.metrics.RANK_PRESETS)
DECAY_CONVENTION = (
    "penalty λ·Σ_l ‖W_l‖_F² added to the mean cross-entropy (rankscope.train l2 = λ); "
    "equivalent to torch SGD weight_decay = 2λ; decay factor per step 1 − 2μλ; no biases"
)


@dataclass(frozen=True)
class Config:
    """MLP 64-w-w-w-10 (ReLU, no biases, He init, float32) trained by plain SGD (no momentum)
    at every (B, μ, λ) of the grid; λ is the coefficient of λ‖W‖².

    ``length="steps"`` (default): every grid point trains the same T = max ⌈D/(2μλ)⌉ over the
    λ > 0 points, so each of them has decayed its initial weights by (1 − 2μλ)^T ≤ e^{−D}
    (``decay_budget`` D; e^{−10} ≈ 4.5e-5, below Galanti's ε = 1e-3) and pairs differing in
    B alone share T. ``length="decay"``: each λ > 0 point trains its own T = ⌈D/(2μλ)⌉ (the
    same decay everywhere), λ = 0 points the longest of those. A member that diverges is
    retrained with μ halved (and T doubled), at most ``max_lr_halvings`` times."""

    widths: tuple[int, ...] = (100, 100, 100)
    batch_sizes: tuple[int, ...] = (4, 16, 64)
    lrs: tuple[float, ...] = (0.1, 0.2)
    weight_decays: tuple[float, ...] = (0.0, 5e-3, 1e-2)
    decay_budget: float = 10.0  # D: 2μλT ≥ D at every λ > 0 point
    length: str = "steps"  # "steps": one T for all; "decay": T_e = ⌈D/(2μλ)⌉ per point
    n_train: int = 0
    test_fraction: float = 0.2
    log_points: int = 8
    max_lr_halvings: int = 2


@dataclass(frozen=True)
class GridRun:
    """One grid point (B, μ, λ) after training; a diverged member has no measurements."""

    batch_size: int
    lr: float  # μ of the grid
    lr_used: float  # μ it ended with (halved after a divergence)
    weight_decay: float  # λ of λ‖W‖²
    torch_weight_decay: float  # 2λ
    status: str
    steps: int  # T: SGD steps it trained (its own T_e = ⌈D/(2μλ)⌉, or the grid's longest)
    epochs: float  # T / ⌈n_train/B⌉
    decay: float  # 2·μ_used·λ·T (0 at λ = 0)
    tag: str
    rank: dict[str, int] | None = None  # `galanti` rank per hidden layer
    stable_rank: dict[str, float] | None = None
    full_rank: dict[str, int] | None = None  # min(m, n) per hidden layer
    test_acc: float | None = None
    final_objective: float | None = None

    @property
    def finished(self) -> bool:
        return self.rank is not None


@dataclass(frozen=True)
class Summary:
    runs: list[GridRun]
    decay_convention: str
    rank_preset: str  # a name of rankscope.metrics.RANK_PRESETS
    layers: list[str]
    data: str


PRESETS = {
    "smoke": Config(
        widths=(32, 32, 32),
        batch_sizes=(4, 32),
        lrs=(0.1, 0.2),
        weight_decays=(0.0, 1e-2, 4e-2),
        decay_budget=2.0,
        n_train=300,
        log_points=3,
    ),
    "default": Config(),
    # the spec's grid run to the same budget: T = 10/(2·0.05·1e-3) = 100 000 steps (not run here)
    "paper": Config(batch_sizes=(4, 32, 256), lrs=(0.05, 0.2), weight_decays=(0.0, 1e-3, 5e-3)),
}


def run_tag(b: int, lr: float, wd: float) -> str:
    """Records tag of one grid point, e.g. ``B=4,lr=0.05,wd=0.001``."""
    return f"B={b},lr={lr:g},wd={wd:g}"


def _measure(ctx: RunContext, step: int, ens: MLPEnsemble, members, tags, split: Split):
    """Galanti rank, stable rank of every hidden layer's weights and test accuracy."""
    with torch.no_grad():
        acc = (ens(split.x_test).argmax(-1) == split.y_test).double().mean(-1)  # (E,)
    out = {}
    for i, w in enumerate(ens.weights[:-1]):
        s = singular_values(w.detach()[members])  # (E', k) float64
        ranks = numerical_rank(s, RANK_PRESET)
        srs = stable_rank(s)
        for row, e in enumerate(members):
            ctx.log.log(f"rank_{RANK_PRESET}", ranks[row], step=step, layer=f"{tags[e]}/W{i + 1}")
            ctx.log.log("stable_rank", srs[row], step=step, layer=f"{tags[e]}/W{i + 1}")
            out.setdefault(e, {})[f"W{i + 1}"] = (int(ranks[row]), float(srs[row]))
    for e in members:
        ctx.log.log("test_acc", acc[e], step=step, layer=tags[e])
    return out, acc


def decay_steps(budget: float, lr: float, wd: float) -> int:
    """Steps T = ⌈D/(2μλ)⌉ after which (1 − 2μλ)^T ≤ e^{−D}: the training length of a λ > 0
    grid point."""
    if not (budget > 0 and lr > 0 and wd > 0):
        raise ValueError(f"decay_steps needs D, μ, λ > 0, got D={budget}, μ={lr}, λ={wd}")
    return math.ceil(budget / (2.0 * lr * wd) - 1e-9)


def grid_steps(cfg: Config) -> int:
    """The longest λ > 0 training length of the grid: the length of every λ = 0 point."""
    pairs = [(mu, wd) for mu in cfg.lrs for wd in cfg.weight_decays if wd > 0]
    return max(decay_steps(cfg.decay_budget, mu, wd) for mu, wd in pairs)


def _train_group(cfg: Config, ctx: RunContext, split: Split, b: int, grid, lr_scale) -> dict:
    """Train the members ``grid`` [(μ, λ)] of batch size b as one ensemble (shared batches);
    member e stops after its own T_e steps (:func:`decay_steps` at the μ it uses)."""
    dims = mlp_dims(split.dim, cfg.widths, split.num_classes)
    ens = MLPEnsemble(dims, generators=[ctx.child_generator(1) for _ in grid]).to(ctx.device)
    lrs = [mu * lr_scale[k] for k, (mu, _) in enumerate(grid)]
    tags = [run_tag(b, mu, wd) for mu, wd in grid]
    lengths = [
        decay_steps(cfg.decay_budget, lr, wd)
        if wd > 0 and cfg.length == "decay"
        else grid_steps(cfg) * round(mu / lr)  # x2 per halving of μ: still 2μλT ≥ D
        for lr, (mu, wd) in zip(lrs, grid)
    ]
    steps = max(lengths)
    ends = torch.tensor(lengths)
    final: dict[int, tuple[dict, float]] = {}

    def cb(state):
        members = state.members()
        measured, acc = _measure(ctx, state.step, ens, members, tags, split)
        done = [e for e in members if lengths[e] == state.step]
        for e in done:
            final[e] = (measured[e], float(acc[e]))
        return (ends == state.step) if done else None  # freeze the members at their T_e

    res = train(
        ens,
        ce_loss,
        optimizer="sgd",
        lr=lrs,
        steps=steps,
        data=(split.x_train, split.y_train),
        batch_size=b,
        batches="shared",
        generator=ctx.child_generator(1000 + b),
        l2=[wd for _, wd in grid],
        log_at=sorted(set(log_steps(steps, cfg.log_points)) | set(lengths)),
        callbacks=[cb],
        on_diverge="stop",  # a diverged member is frozen and retrained at a smaller μ
    )
    out = {}
    full = {
        f"W{i + 1}": min(int(w.shape[1]), int(w.shape[2])) for i, w in enumerate(ens.weights[:-1])
    }
    per_epoch = math.ceil(split.n_train / b)
    for e, (mu, wd) in enumerate(grid):
        measured = {}
        status = res.statuses[e]
        if status != "diverged" and e in final:
            layer_values, acc = final[e]
            status = "completed"  # a stop at its own T_e is the planned end
            measured = {
                "rank": {k: v[0] for k, v in layer_values.items()},
                "stable_rank": {k: v[1] for k, v in layer_values.items()},
                "full_rank": full,
                "test_acc": acc,
                "final_objective": float(res.final_losses[e]),
            }
        out[(mu, wd)] = GridRun(
            batch_size=b,
            lr=mu,
            lr_used=lrs[e],
            weight_decay=wd,
            torch_weight_decay=2 * wd,
            status=status,
            steps=lengths[e],
            epochs=lengths[e] / per_epoch,
            decay=2 * lrs[e] * wd * lengths[e],
            tag=tags[e],
            **measured,
        )
    return out


def _validate(cfg: Config) -> None:
    if not any(wd > 0 for wd in cfg.weight_decays):
        raise ValueError(
            f"weight_decays {cfg.weight_decays} has no λ > 0: the training length T = "
            "⌈D/(2μλ)⌉ is set by the λ > 0 points"
        )
    if any(wd < 0 for wd in cfg.weight_decays) or any(mu <= 0 for mu in cfg.lrs):
        raise ValueError(f"need λ ≥ 0 and μ > 0, got {cfg.weight_decays}, {cfg.lrs}")
    if cfg.length not in ("steps", "decay"):
        raise ValueError(f"length must be 'steps' or 'decay', got {cfg.length!r}")
    if not cfg.decay_budget > 0:
        raise ValueError(f"decay_budget D = 2μλT must be > 0, got {cfg.decay_budget}")


def run(config: Config, ctx: RunContext) -> Result:
    _validate(config)
    split = digits_split(
        ctx.rng, n_train=config.n_train or None, test_fraction=config.test_fraction
    )
    split = split.with_dtype(torch.float32, " (float32)").to(ctx.device)
    runs = []
    for j, b in enumerate(config.batch_sizes):
        grid = [(mu, wd) for mu in config.lrs for wd in config.weight_decays]
        scale = dict.fromkeys(range(len(grid)), 1.0)
        done: dict = {}
        for _ in range(config.max_lr_halvings + 1):
            todo = [
                k
                for k in range(len(grid))
                if grid[k] not in done or done[grid[k]].status == "diverged"
            ]
            if not todo:
                break
            sub = _train_group(
                config, ctx, split, b, [grid[k] for k in todo], [scale[k] for k in todo]
            )
            done.update(sub)
            for k in todo:
                scale[k] *= 0.5  # used only if this member diverged
        runs.extend(done[g] for g in grid)
        ctx.progress((j + 1) / len(config.batch_sizes))
    summary = Summary(
        runs=runs,
        decay_convention=DECAY_CONVENTION,
        rank_preset=RANK_PRESET,
        layers=[f"W{i + 1}" for i in range(len(config.widths))],
        data=split.description,
    )
    return Result(summary=summary, records=ctx.log.freeze())


CLAIMS = (
    Claim(
        "GAL-B",
        PAPER,
        "Smaller batches give lower rank: over matched pairs (same seed, μ and λ > 0, "
        "consecutive B), the smaller B has a strictly lower rank more often than chance, "
        "by a one-sided sign test (ties count against), for every hidden layer.",
        "p < 0.05",
        across_seeds=galanti_claims.rank_vs_batch,
    ),
    Claim(
        "GAL-lr",
        PAPER,
        "Larger learning rates give lower rank: over matched pairs (same seed, B and λ > 0), "
        "the larger μ has a strictly lower rank more often than chance, by a one-sided sign "
        "test (ties count against), for every hidden layer.",
        "p < 0.05",
        across_seeds=galanti_claims.rank_vs_lr,
    ),
    Claim(
        "GAL-wd",
        PAPER,
        "Stronger weight decay gives lower rank: over matched pairs (same seed, B and μ, "
        "consecutive λ > 0), the larger λ has a strictly lower rank more often than chance, by "
        "a one-sided sign test (ties count against), for every hidden layer.",
        "p < 0.05",
        across_seeds=galanti_claims.rank_vs_wd,
    ),
    Claim(
        "GAL-noWD",
        PAPER,
        "Weight decay is necessary: with λ = 0 every hidden layer keeps a "
        "rank within 10% of full rank.",
        "rank ≥ 0.9·min(m, n)",
        check=galanti_claims.no_decay,
        invert=galanti_claims.invert_no_decay,
    ),
    Claim(
        "GAL-acc",
        PAPER,
        "The effect on accuracy is marginal: test accuracy varies by < 3 "
        "points across the λ > 0 of the grid ({5e-3, 1e-2} by default) at fixed (B, μ).",
        "max gap < 0.03",
        check=galanti_claims.accuracy,
        invert=galanti_claims.invert_accuracy,
    ),
)

EXPERIMENT = Experiment(
    id="sgd-weight-decay-rank",
    title="SGD and weight decay lower the rank of the weights",
    papers=(PAPER,),
    description=(
        "An MLP on scikit-learn digits trained by plain mini-batch SGD over batch size × "
        "learning rate × weight decay (penalty λ‖W‖², i.e. torch weight_decay = 2λ), one "
        "vectorized ensemble per batch size. Tracked during training: the `galanti` rank "
        "(s_i > 1e-3·‖W‖_F), the stable rank of every hidden layer and test accuracy. Every "
        "point trains the same number of steps T, long enough that 2μλT ≥ 10 at every λ > 0; "
        "B, μ and λ are tested by matched-pair sign tests over seeds."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 3},
)
