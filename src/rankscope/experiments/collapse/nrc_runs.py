"""The sub-runs of `neural-rank-collapse`: L-BFGS and Adam→GD λ sweeps, Gaussian mixtures.

Every sub-run returns one :class:`NetworkRun` per λ (or per spread s) holding the final
measurements of :func:`~rankscope.experiments.collapse.measure.measure_network`; during
training, log-spaced callbacks write tidy records tagged ``"{protocol}/lam={λ:g}/W{l}"``:
``nrank_1e-2``, ``rel_tail`` and ``s_k1`` of W_l, ``tcv1_prev`` of H_{l−1}; ``train_ce`` under
``"{protocol}/lam={λ:g}"``. Final spectra are logged as the vector ``sv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch

from rankscope.experiments.base import RunContext
from rankscope.experiments.collapse.data import Split, gaussian_mixture
from rankscope.experiments.collapse.fit import fit_adam_then_gd, fit_lbfgs, mlp_dims
from rankscope.experiments.collapse.measure import LayerMeasure, measure_network
from rankscope.metrics import distance_to_rank, numerical_rank, singular_values
from rankscope.models import MLPEnsemble
from rankscope.models.mlp import MLP
from rankscope.train import cross_entropy, log_steps

__all__ = ["NetworkRun", "adam_sweep", "lam_tag", "lbfgs_sweep", "mixture_sweep"]


@dataclass(frozen=True)
class NetworkRun:
    """One trained network (one λ, or one spread s of a mixture) and its final measurements.

    A diverged member keeps its λ, tag and status, NaN numbers and no layers.
    """

    lam: float
    tag: str
    num_classes: int
    status: str = "completed"
    train_ce: float = math.nan
    train_acc: float = math.nan
    test_acc: float = math.nan
    constant_predictor: bool = False
    layers: list[LayerMeasure] = field(default_factory=list)
    objective: float | None = None  # L-BFGS: the final objective J
    iterations: int | None = None  # L-BFGS: iterations run
    spread: float | None = None  # mixtures: the within-class spread s
    dim: int | None = None  # mixtures: the input dimension d

    def layer(self, name: str) -> LayerMeasure:
        """The measurements of weight matrix ``name`` (``"W1"``, …)."""
        for entry in self.layers:
            if entry.layer == name:
                return entry
        raise KeyError(f"{self.tag}: no layer {name!r}; layers: {[e.layer for e in self.layers]}")


def lam_tag(protocol: str, lam: float) -> str:
    return f"{protocol}/lam={lam:g}"


def _log_point(ctx: RunContext, step: int, tag: str, ws, x, y, k: int) -> None:
    """Rank, tail and TCV_1 of every layer of one network at one training step."""
    ws = [w.detach().to(torch.float64) for w in ws]
    h = x.to(torch.float64)
    for i, w in enumerate(ws):
        s = singular_values(w)
        t = f"{tag}/W{i + 1}"
        ctx.log.log("nrank_1e-2", numerical_rank(s, "relative", rtol=1e-2), step=step, layer=t)
        ctx.log.log("rel_tail", distance_to_rank(s, k, norm="relative"), step=step, layer=t)
        ctx.log.log("s_k1", distance_to_rank(s, k, norm="op"), step=step, layer=t)
        sums = torch.zeros(k, h.shape[1], dtype=h.dtype, device=h.device).index_add_(0, y, h)
        means = sums / torch.bincount(y, minlength=k).clamp_min(1)[:, None]
        ctx.log.log("tcv1_prev", (h - means[y]).norm(dim=1).mean(), step=step, layer=t)
        z = h @ w.T
        h = torch.relu(z) if i < len(ws) - 1 else z
    ctx.log.log("train_ce", cross_entropy(h, y), step=step, layer=tag)


def _final(ctx: RunContext, tag: str, ws, split: Split, lam: float, step: int) -> NetworkRun:
    """Final measurements of one trained network (and its spectra into the records)."""
    k = split.num_classes
    layers, constant = measure_network(ws, split.x_train, split.y_train, lam=lam, num_classes=k)
    for i, w in enumerate(ws):
        s = singular_values(w.detach().to(torch.float64))
        ctx.log.log_vector("sv", s, step=step, layer=f"{tag}/W{i + 1}")
    ws64 = [w.detach().to(torch.float64) for w in ws]

    def predict(x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.float64)
        for w in ws64[:-1]:
            h = torch.relu(h @ w.T)
        return h @ ws64[-1].T

    logits = predict(split.x_train)
    test_acc = math.nan
    if split.y_test.numel():
        test_acc = float((predict(split.x_test).argmax(1) == split.y_test).double().mean())
    return NetworkRun(
        lam=float(lam),
        tag=tag,
        num_classes=k,
        train_ce=float(cross_entropy(logits, split.y_train)),
        train_acc=float((logits.argmax(1) == split.y_train).double().mean()),
        test_acc=test_acc,
        constant_predictor=constant,
        layers=layers,
    )


def lbfgs_sweep(
    ctx: RunContext,
    split: Split,
    lams: Sequence[float],
    *,
    widths: Sequence[int],
    rounds: int,
    iters: int,
    history: int,
    log_points: int,
    protocol: str = "lbfgs",
    init_tag: int = 1,
    progress=(0.0, 1.0),
) -> list[NetworkRun]:
    """One float64 MLP per λ, same init, fitted by L-BFGS (``rounds`` × ``iters``)."""
    dims = mlp_dims(split.dim, widths, split.num_classes)
    total = rounds * (iters // 20) * 20
    log_at = [20 * s for s in log_steps(total // 20, log_points)]
    out = []
    for j, lam in enumerate(lams):
        tag = lam_tag(protocol, lam)
        net = MLP(dims, generator=ctx.child_generator(init_tag), dtype=torch.float64)
        net = net.to(ctx.device)

        def cb(it, net, tag=tag) -> None:
            _log_point(
                ctx, it, tag, list(net.weights), split.x_train, split.y_train, split.num_classes
            )

        fit = fit_lbfgs(
            net,
            split.x_train,
            split.y_train,
            l2=lam / 2,
            rounds=rounds,
            iters=iters,
            history=history,
            log_at=log_at,
            callback=cb,
            tag=tag,
        )
        res = _final(ctx, tag, list(net.weights), split, lam, fit["iterations"])
        out.append(replace(res, objective=fit["objective"], iterations=fit["iterations"]))
        lo, hi = progress
        ctx.progress(lo + (hi - lo) * (j + 1) / len(lams))
    return out


def adam_sweep(cfg, ctx: RunContext, split: Split, progress=(0.0, 1.0)) -> list[NetworkRun]:
    """docs/results.md NRC-1: every λ of ``cfg.adam.lams`` as one ensemble member (same init)."""
    adam = cfg.adam
    lams = list(adam.lams)
    if not lams:
        return []
    dims = mlp_dims(split.dim, cfg.widths, split.num_classes)
    ens = MLPEnsemble(dims, generators=[ctx.child_generator(1) for _ in lams], dtype=torch.float64)
    ens = ens.to(ctx.device)
    total = adam.steps + adam.gd_steps
    tags = [lam_tag("adam", lam) for lam in lams]

    def cb(step, ens, active) -> None:
        for e in torch.nonzero(active).flatten().tolist():
            _log_point(
                ctx,
                step,
                tags[e],
                [w[e] for w in ens.weights],
                split.x_train,
                split.y_train,
                split.num_classes,
            )
        ctx.progress(progress[0] + (progress[1] - progress[0]) * 0.9 * step / max(total, 1))

    fit = fit_adam_then_gd(
        ens,
        split.x_train,
        split.y_train,
        l2=torch.tensor(lams, dtype=torch.float64, device=ctx.device) / 2,
        adam_steps=adam.steps,
        adam_lr=adam.lr,
        gd_steps=adam.gd_steps,
        gd_lr=adam.gd_lr,
        log_at=log_steps(total, cfg.log_points),
        callback=cb,
    )
    out = []
    for e, lam in enumerate(lams):
        if fit["status"][e] == "diverged":
            k = split.num_classes
            out.append(NetworkRun(lam=float(lam), tag=tags[e], num_classes=k, status="diverged"))
            continue
        res = _final(ctx, tags[e], [w[e] for w in ens.weights], split, lam, total)
        out.append(replace(res, status=fit["status"][e]))
    return out


def mixture_sweep(
    mix, ctx: RunContext, *, overlap: bool, log_points: int, progress=(0.0, 1.0)
) -> list[NetworkRun]:
    """NRC-2 (separable) or NRC-2b (overlapping): ``mix`` is that sub-study's config.

    One mixture per spread s, all sharing the class centres (one generator reset per s).
    """
    protocol = "gmm_overlap" if overlap else "gmm"
    out = []
    for j, s in enumerate(mix.spreads):
        split = gaussian_mixture(
            ctx.child_generator(2 if overlap else 3),
            num_classes=mix.classes,
            dim=mix.dim,
            per_class=mix.per_class,
            spread=float(s),
            n_test_per_class=mix.per_class,
        ).to(ctx.device)
        (res,) = lbfgs_sweep(
            ctx,
            split,
            [mix.lam],
            widths=mix.widths,
            rounds=mix.rounds,
            iters=mix.iters,
            history=mix.history,
            log_points=log_points,
            protocol=f"{protocol}/s={s:g}",
            init_tag=4,
        )
        out.append(replace(res, spread=float(s), dim=mix.dim))
        lo, hi = progress
        ctx.progress(lo + (hi - lo) * (j + 1) / len(mix.spreads))
    return out
