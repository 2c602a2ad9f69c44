"""`rank-diminishing`: the rank of the input-output Jacobian never rises with depth.

Feng, Zheng, Huang, Zhao, Jordan, Zha, arXiv 2206.06072 (docs/results.md). J_l(x) = ∂h_l(x)/∂x =
D_l W_l ⋯ D_1 W_1 (D_l the ReLU derivative diagonals), so rank J_{l+1}(x) ≤ rank J_l(x) by
rank(AB) ≤ min(rank A, rank B) (definitions §10). Measured on MLPs on digits, at init and after
full-batch Adam, with a width-8 bottleneck control: per-input Jacobians of every layer output
h_l (h_L = logits) in float64 at held-out inputs, ranked under the `torch` preset and under
the `feng` paper preset (rank of JᵀJ, a squared threshold; rankscope.metrics.RANK_PRESETS).
The summary keeps every (depth, input) rank table; the records hold the same ranks as
``jac_rank_torch`` / ``jac_rank_feng`` at step = depth l (0 = the input), index = input,
layer = network tag; a violation of monotonicity logs both spectra as ``violation_sv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext
from rankscope.experiments.collapse import feng_claims
from rankscope.experiments.collapse.data import digits_split
from rankscope.experiments.collapse.fit import ce_loss, mlp_dims
from rankscope.metrics import jacobians, numerical_rank, singular_values
from rankscope.models.mlp import MLP
from rankscope.models.stacked import StackedModule
from rankscope.train import train
from rankscope.train.errors import Diverged

__all__ = [
    "CLAIMS",
    "EXPERIMENT",
    "PRESETS",
    "Config",
    "NetworkRanks",
    "Rise",
    "Summary",
    "ensemble_key",
    "run",
    "run_many",
]

PAPER = "arXiv:2206.06072"
POLICIES = ("torch", "feng")  # a generic policy and the paper's preset (metrics.RANK_PRESETS)


@dataclass(frozen=True)
class Config:
    """Plain MLP 64-``widths``-10 and a control 64-``bottleneck_widths``-10 (ReLU, no biases,
    He init, float64); trained copies by ``train_steps`` of full-batch Adam at ``train_lr``;
    Jacobians at the first ``n_inputs`` test digits."""

    widths: tuple[int, ...] = (64, 64, 64, 64, 64)
    bottleneck_widths: tuple[int, ...] = (64, 64, 8, 64, 64)
    n_inputs: int = 50
    train_steps: int = 400
    train_lr: float = 3e-3
    test_fraction: float = 0.2
    max_violation_spectra: int = 5

    def __post_init__(self) -> None:
        if min(self.bottleneck_widths) > 8:
            raise ValueError(
                f"bottleneck_widths needs a layer of width <= 8, got {self.bottleneck_widths}"
            )


@dataclass(frozen=True)
class Rise:
    """rank J_depth(x_input) > rank J_{depth−1}(x_input): ``ranks`` = [before, after]."""

    depth: int
    input: int
    ranks: tuple[int, int]


@dataclass(frozen=True)
class NetworkRanks:
    """Jacobian ranks of one network at the probe inputs, per depth (0 = the input)."""

    tag: str
    dims: list[int]
    trained: bool
    ranks_torch: list[list[int]]  # (depth, input)
    ranks_feng: list[list[int]]  # (depth, input)
    median_rank_torch: list[float]
    max_rank_torch: list[int]
    median_rank_feng: list[float]
    rises: list[Rise]
    n_rises: int
    train_loss: float | None = None
    test_acc: float | None = None


@dataclass(frozen=True)
class Summary:
    networks: list[NetworkRanks]
    bottleneck_width: int
    bottleneck_depth: int
    n_inputs: int
    jacobian_dtype: str
    presets: dict[str, str] = field(default_factory=dict)


PRESETS = {
    "smoke": Config(
        widths=(32, 32, 32), bottleneck_widths=(32, 8, 32), n_inputs=12, train_steps=60
    ),
    "default": Config(),
    "paper": Config(
        widths=(64,) * 8,
        bottleneck_widths=(64, 64, 64, 8, 64, 64, 64, 64),
        n_inputs=100,
        train_steps=1000,
    ),
}


def layer_outputs(net: MLP):
    """x (B, d) -> [h_1, …, h_L] concatenated (B, Σ n_l); h_L is the logits."""

    def f(x: torch.Tensor) -> torch.Tensor:
        out, hs, _ = net.forward_with_hidden(x)
        return torch.cat([*hs[1:], out], dim=1)

    return f


def _net_ranks(
    ctx: RunContext, cfg: Config, tag: str, net: MLP, x: torch.Tensor, **extra
) -> NetworkRanks:
    """Per-layer Jacobian ranks at every probe input; records and a compact summary."""
    jac = jacobians(layer_outputs(net), x)  # (B, Σ n_l, d)
    blocks = torch.split(jac, list(net.dims[1:]), dim=1)
    d = x.shape[1]
    eye = torch.eye(d, dtype=torch.float64, device=x.device).expand(x.shape[0], d, d)
    spectra, ranks = [], {pol: [] for pol in POLICIES}
    for depth, j in enumerate((eye, *blocks)):
        s = singular_values(j)  # (B, min(n_l, d))
        spectra.append(s)
        for pol in ranks:
            r = numerical_rank(s, pol, shape=tuple(j.shape[-2:]), eps_dtype=torch.float64)
            ranks[pol].append(r)
            for b, v in enumerate(r.tolist()):
                ctx.log.log(f"jac_rank_{pol}", v, step=depth, layer=tag, index=b)
    torch_ranks = torch.stack(ranks["torch"])  # (L+1, B)
    feng_ranks = torch.stack(ranks["feng"])
    rises = torch.nonzero(torch_ranks[1:] > torch_ranks[:-1]).tolist()  # [(l, b)]
    for l, b in rises[: cfg.max_violation_spectra]:
        for depth in (l, l + 1):
            ctx.log.log_vector(
                "violation_sv", spectra[depth][b], step=depth, layer=f"{tag}/input={b}"
            )
    return NetworkRanks(
        tag=tag,
        dims=list(net.dims),
        ranks_torch=torch_ranks.tolist(),
        ranks_feng=feng_ranks.tolist(),
        median_rank_torch=torch_ranks.double().median(dim=1).values.tolist(),
        max_rank_torch=torch_ranks.max(dim=1).values.tolist(),
        median_rank_feng=feng_ranks.double().median(dim=1).values.tolist(),
        rises=[
            Rise(l + 1, b, (int(torch_ranks[l, b]), int(torch_ranks[l + 1, b])))
            for l, b in rises[: cfg.max_violation_spectra]
        ],
        n_rises=len(rises),
        **extra,
    )


def _split(config: Config, ctx: RunContext):
    split = digits_split(ctx.rng, test_fraction=config.test_fraction).to(ctx.device)
    if split.y_test.numel() < config.n_inputs:
        raise ValueError(
            f"n_inputs={config.n_inputs} exceeds the {split.y_test.numel()} test digits"
        )
    return split, split.x_test[: config.n_inputs]


def _net(config: Config, ctx: RunContext, split, i: int, widths) -> MLP:
    return MLP(
        mlp_dims(split.dim, widths, split.num_classes),
        generator=ctx.child_generator(i + 1),
        dtype=torch.float64,
    ).to(ctx.device)


def _accuracy(net: MLP, split) -> float:
    with torch.no_grad():
        return float((net(split.x_test).argmax(1) == split.y_test).double().mean())


def _nets(config: Config) -> dict[str, tuple[int, ...]]:
    return {"plain": config.widths, "bottleneck": config.bottleneck_widths}


def run(config: Config, ctx: RunContext) -> Result:
    split, x = _split(config, ctx)
    nets, out = _nets(config), []
    for i, (kind, widths) in enumerate(nets.items()):
        net = _net(config, ctx, split, i, widths)
        out.append(_net_ranks(ctx, config, f"init/{kind}", net, x, trained=False))
        res = train(
            net,
            ce_loss,
            optimizer="adam",
            lr=config.train_lr,
            steps=config.train_steps,
            data=(split.x_train, split.y_train),
        )
        out.append(
            _net_ranks(
                ctx,
                config,
                f"trained/{kind}",
                net,
                x,
                trained=True,
                train_loss=res.final_loss,
                test_acc=_accuracy(net, split),
            )
        )
        ctx.progress((i + 1) / len(nets))
    return Result(summary=_summary(config, out), records=ctx.log.freeze())


def _summary(config: Config, out: list[NetworkRanks]) -> Summary:
    return Summary(
        networks=out,
        bottleneck_width=min(config.bottleneck_widths),
        bottleneck_depth=1 + config.bottleneck_widths.index(min(config.bottleneck_widths)),
        n_inputs=config.n_inputs,
        jacobian_dtype="float64",
        presets={"torch": "s_i > max(m, n)·eps·s_1", "feng": "s_i > √(n·eps)·s_1"},
    )


def ensemble_key(config: Config) -> tuple:
    """Configs whose networks and training share shapes and steps train as one ensemble
    (``train_lr`` may differ: the engine takes one learning rate per member)."""
    return (config.widths, config.bottleneck_widths, config.train_steps, config.test_fraction)


def run_many(configs: Sequence[Config], ctxs: Sequence[RunContext]) -> list[Result]:
    """:func:`run` for several (config, seed) pairs sharing :func:`ensemble_key`: for each
    network kind, the E members (each on its own seed's digits split and init) train as ONE
    stacked ensemble (:class:`~rankscope.models.StackedModule`) through the engine; the
    Jacobian ranks are then measured per member exactly as :func:`run` does. A member that
    diverges is frozen and its run recorded as diverged (what :func:`run` raises)."""
    if len(configs) != len(ctxs) or not configs:
        raise ValueError(
            f"run_many needs as many configs as contexts, got {len(configs)}, {len(ctxs)}"
        )
    keys = {ensemble_key(c) for c in configs}
    if len(keys) != 1:
        raise ValueError(f"run_many needs configs with one ensemble_key, got {sorted(keys)}")
    splits = [_split(c, ctx) for c, ctx in zip(configs, ctxs)]
    outs: list[list[NetworkRanks]] = [[] for _ in configs]
    diverged: dict[int, int] = {}  # member -> step
    kinds = _nets(configs[0])
    for i, (kind, widths) in enumerate(kinds.items()):
        live = [e for e in range(len(configs)) if e not in diverged]
        if not live:
            break
        nets = []
        for e in live:
            (split, x), cfg, ctx = splits[e], configs[e], ctxs[e]
            net = _net(cfg, ctx, split, i, widths)
            outs[e].append(_net_ranks(ctx, cfg, f"init/{kind}", net, x, trained=False))
            nets.append(net)
        stack = StackedModule.from_modules(nets)
        data = (
            torch.stack([splits[e][0].x_train for e in live]),  # (E, N, d): one split each
            torch.stack([splits[e][0].y_train for e in live]),
        )
        res = train(
            stack,
            ce_loss,
            optimizer="adam",
            lr=[configs[e].train_lr for e in live],
            steps=configs[0].train_steps,
            data=data,
            on_diverge="stop",
        )
        for k, e in enumerate(live):
            if res.statuses[k] == "diverged":
                diverged[e] = res.diverged_steps[k]
                continue
            (split, x), cfg, ctx = splits[e], configs[e], ctxs[e]
            net = stack.member(k)
            outs[e].append(
                _net_ranks(
                    ctx,
                    cfg,
                    f"trained/{kind}",
                    net,
                    x,
                    trained=True,
                    train_loss=float(res.final_losses[k]),
                    test_acc=_accuracy(net, split),
                )
            )
            ctx.progress((i + 1) / len(kinds))
    results = []
    for e, (cfg, ctx) in enumerate(zip(configs, ctxs)):
        if e in diverged:
            exc = Diverged(diverged[e])
            results.append(
                Result(
                    status="diverged",
                    diverged_step=exc.step,
                    error=str(exc),
                    records=ctx.log.freeze(),
                )
            )
        else:
            results.append(Result(summary=_summary(cfg, outs[e]), records=ctx.log.freeze()))
    return results


CLAIMS = (
    Claim(
        "FENG-1",
        PAPER,
        "For every input and layer, rank J_{l+1}(x) ≤ rank J_l(x) under the "
        "`torch` preset in float64 (a rise logs both spectra).",
        "no rise",
        check=feng_claims.monotone,
        invert=feng_claims.invert_monotone,
    ),
    Claim(
        "FENG-2",
        PAPER,
        "After a width-8 layer, rank J_l(x) ≤ 8 for every later layer and input.",
        "max rank ≤ 8",
        check=feng_claims.bottleneck,
        invert=feng_claims.invert_bottleneck,
    ),
    Claim(
        "FENG-3",
        PAPER,
        "For every Jacobian, the `feng` rank (of JᵀJ) is ≤ the `torch` rank.",
        "feng ≤ torch",
        check=feng_claims.feng_below_torch,
        invert=feng_claims.invert_feng_below_torch,
    ),
)

EXPERIMENT = Experiment(
    id="rank-diminishing",
    title="Rank diminishing: Jacobian rank never rises with depth",
    papers=(PAPER,),
    description=(
        "Per-layer Jacobians ∂h_l/∂x of ReLU MLPs on scikit-learn digits, in float64, at "
        "initialization and after training, with a width-8 bottleneck control. Ranks under "
        "the `torch` preset (and `feng`, the rank of JᵀJ) at held-out inputs, per depth."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
    run_many=run_many,
    ensemble_key=ensemble_key,
)
