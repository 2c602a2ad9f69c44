"""Convolution bottleneck (Wen, Jacot, arXiv:2402.08010): which frequencies do CNNs need?

(a) A linear circular CNN (d = 16 positions, 4 channels, L = 6, full-size kernels) trained by
GD on MSE + λ‖θ‖² to a target whose blocks Â*(m) are rank 1 at m ∈ {0, 3, 13}: every middle
layer keeps one singular value at each of those frequencies and none elsewhere, and ‖θ‖²
equals the balanced cost (L/d)·Σ_m Σ_i s_i(Â(m))^{2/L}. (b) A circular ReLU CNN (depth 10,
16 channels, full-size kernels) trained by Adam with an explicit 5e-4·‖θ‖² penalty on the
translation-invariant task y = mean_i φ(x_i) concentrates its middle layers' kernel mass and
activations at frequency 0; the run without the penalty does not. Toolkit protocol
(docs/results.md): the paper's own hyper-parameters are not known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from rankscope.experiments.base import Claim, Experiment, Result, RunContext, check
from rankscope.experiments.spectral.data import (
    rank_one_frequency_target,
    translation_invariant_task,
)
from rankscope.metrics.conv import (
    conv_frequency_blocks,
    conv_operator_spectrum,
    frequency_mass,
    linear_cnn_blocks,
    spatially_constant_fraction,
)
from rankscope.models.circular_cnn import CircularCNN
from rankscope.train import train

PAPER = "arXiv:2402.08010"


@dataclass(frozen=True)
class LinearStudy:
    """(a): the linear CNN and its rank-1-per-frequency target."""

    d: int = 16
    channels: int = 4
    depth: int = 6
    kept: tuple[int, ...] = (0, 3)  # one member per conjugate pair: {0, 3, 13}
    strengths: tuple[float, ...] = (1.5, 0.8)  # s_1(Â*(m)), away from 1 (spec pitfall)
    n_samples: int = 256
    l2: float = 1e-3
    lr: float = 0.08
    steps: int = 20000  # lr·steps = 1600: the init's off-target modes decay (decisions, changelog)
    init_std: float = 0.3  # init gain: kernel entries N(0, gain²/(C·d))
    rtol: float = 0.1  # s > rtol·max_{m′} s_1(Ŵ_ℓ(m′)) counts (definitions §19)

    def __post_init__(self) -> None:
        if len(self.kept) != len(self.strengths):
            raise ValueError(f"kept {self.kept} and strengths {self.strengths} differ in length")
        if self.depth < 2 or self.d < 2 or self.channels < 1:
            raise ValueError(f"need depth >= 2, d >= 2, channels >= 1; got {self}")


@dataclass(frozen=True)
class NonlinearStudy:
    """(b): the ReLU CNN on y = mean_i φ(x_i), with and without the penalty."""

    d: int = 16
    channels: int = 8
    depth: int = 10
    kernel_size: int | None = None  # None: full-size circular kernels
    phi: str = "abs"
    n_train: int = 128
    n_test: int = 256
    l2: float = 5e-3
    # lr·steps = 15: kernel parts acting on a constant signal decay only through the penalty
    # (time ∝ 1/(lr·λ)); lr 5e-3 spikes after ~2500 steps (docs/claims-changelog.md)
    lr: float = 3e-3
    steps: int = 5000
    init_gain: float = 1.4142135623730951

    def __post_init__(self) -> None:
        if self.depth < 4:
            raise ValueError(
                f"nonlinear depth must be >= 4 to have middle layers, got {self.depth}"
            )
        if self.kernel_size is not None and not 1 <= self.kernel_size <= self.d:
            raise ValueError(
                f"kernel_size {self.kernel_size} must be in [1, d = {self.d}] or None (full size)"
            )


@dataclass(frozen=True)
class Criteria:
    """Pass thresholds (docs/results.md); stored in every summary."""

    mass_threshold: float = 0.9  # criterion 4: > 90% of a layer's mass at frequency 0
    activation_threshold: float = 0.9  # criterion 5
    layer_fraction: float = 0.6  # criterion 4: in >= 60% of the middle layers
    norm_rtol: float = 0.01  # criterion 2


@dataclass(frozen=True)
class Config:
    linear: LinearStudy = field(default_factory=LinearStudy)
    nonlinear: NonlinearStudy = field(default_factory=NonlinearStudy)
    criteria: Criteria = field(default_factory=Criteria)


PRESETS = {
    "smoke": Config(
        linear=LinearStudy(depth=4, steps=800, n_samples=64),
        nonlinear=NonlinearStudy(channels=4, depth=6, n_train=32, n_test=32, steps=40),
    ),
    "default": Config(),
    "paper": Config(  # the spec's λ = 5e-4 and 16 channels, run long enough for Adam + L2
        linear=LinearStudy(lr=0.05, steps=40000),
        nonlinear=NonlinearStudy(
            channels=16, n_train=256, n_test=512, l2=5e-4, lr=2e-3, steps=10000
        ),
    ),
}


def middle_layers(depth: int) -> list[int]:
    """1-based ℓ ∈ [⌈L/4⌉, ⌊3L/4⌋] (opens_questions D: middle layers for bottleneck proxies)."""
    return list(range(max(1, math.ceil(depth / 4)), math.floor(3 * depth / 4) + 1))


# ---- typed summary ----------------------------------------------------------------------


@dataclass(frozen=True)
class LinearRun:
    kept: list[int]  # the kept frequencies with their conjugates
    middle: list[int]  # 1-based layers
    counts: list[list[int]]  # middle layer × frequency: # s_i > rtol·max s_1
    top_sv: list[list[float]]  # every layer × frequency: s_1(Ŵ_ℓ(m))
    norm_sq: float  # ‖θ‖²
    balanced_cost: float  # (L/d)·Σ_m Σ_i s_i(Â(m))^{2/L}
    end_to_end_sv: list[list[float]]  # frequency × s_i(Â(m))
    final_loss: float


@dataclass(frozen=True)
class NonlinearRun:
    label: str  # "penalty" | "control"
    l2: float
    middle: list[int]
    mass0: list[float]  # every layer: F_ℓ(0)
    act_const: list[float]  # every layer: spatially-constant fraction of h_ℓ (test inputs)
    top_sv: list[list[float]]  # layer × frequency: s_1(Ŵ_ℓ(m))
    train_loss: float
    test_loss: float


@dataclass(frozen=True)
class Summary:
    linear: LinearRun
    penalty: NonlinearRun
    control: NonlinearRun
    criteria: Criteria


# ---- (a) linear --------------------------------------------------------------------------


class FourierMSE:
    """(1/d)·mean_b ‖f(x_b) − A*x_b‖² of a linear circular CNN, evaluated per frequency.

    By Parseval the sample loss is (1/d²)·Σ_m tr(E(m) Σ̂(m) E(m)^*) with E = Â − Â* and
    Σ̂(m) = mean_b x̂_b(m) x̂_b(m)^*: the same function of θ as the forward pass on the 256
    inputs (tests/spectral check it), at the cost of d products of C×C blocks.
    """

    def __init__(self, x: torch.Tensor, target_kernel: torch.Tensor, d: int) -> None:
        xf = torch.fft.fft(x.to(torch.float64), dim=-1).permute(2, 1, 0)  # (d, C, B)
        self.cov = xf @ xf.conj().mT / x.shape[0]  # (d, C, C)
        self.target = conv_frequency_blocks(target_kernel, d)
        u = torch.arange(d, dtype=torch.float64)
        self.dft = torch.exp(-2j * math.pi * torch.outer(u, u) / d)  # (m, u): e^{−2πimu/d}
        self.d = d

    def __call__(self, model) -> torch.Tensor:
        ws = torch.stack(list(model.weights)).to(torch.complex128)  # (L, C, C, d)
        blocks = torch.einsum("lcku,mu->lmck", ws, self.dft)  # Ŵ_ℓ(m), as conv_frequency_blocks
        prod = blocks[0]
        for b in blocks[1:]:
            prod = b @ prod
        err = prod - self.target
        return torch.einsum("mij,mjk,mik->", err, self.cov, err.conj()).real / self.d**2


def _linear(cfg: LinearStudy, ctx: RunContext) -> LinearRun:
    rng = np.random.default_rng(int(ctx.rng.integers(2**31)))
    kernel, _ = rank_one_frequency_target(cfg.d, cfg.channels, cfg.kept, cfg.strengths, rng)
    target = torch.from_numpy(kernel)
    x = torch.randn(cfg.n_samples, cfg.channels, cfg.d, generator=ctx.child_generator(1),
                    dtype=torch.float64)  # fmt: skip
    net = CircularCNN([cfg.channels] * (cfg.depth + 1), cfg.d, activation="identity",
                      init_gain=cfg.init_std, generator=ctx.child_generator(2),
                      dtype=torch.float64)  # fmt: skip
    loss_fn = FourierMSE(x, target, cfg.d)
    res = train(net, loss_fn, optimizer="gd", lr=cfg.lr, steps=cfg.steps, l2=cfg.l2,
                log_at=max(1, cfg.steps // 20), log=ctx.log)  # fmt: skip
    ws = [w.detach() for w in net.weights]
    spectra = [conv_operator_spectrum(w, cfg.d) for w in ws]  # each (d, C)
    middle = middle_layers(cfg.depth)
    counts = []
    for l in middle:
        s = spectra[l - 1]
        counts.append((s > cfg.rtol * s[:, 0].max()).sum(-1).tolist())
    a_sv = torch.linalg.svdvals(linear_cnn_blocks(ws, cfg.d))  # (d, C)
    norm_sq = float(sum((w**2).sum() for w in ws))
    cost = float(cfg.depth / cfg.d * (a_sv ** (2.0 / cfg.depth)).sum())
    kept = sorted({m % cfg.d for m in cfg.kept} | {(-m) % cfg.d for m in cfg.kept})
    for l, s in enumerate(spectra, start=1):
        ctx.log.log_vector("top_sv_linear", s[:, 0], layer=f"conv{l}")
    return LinearRun(kept, middle, counts, [s[:, 0].tolist() for s in spectra], norm_sq, cost,
                     a_sv.tolist(), float(res.final_loss))  # fmt: skip


# ---- (b) nonlinear -----------------------------------------------------------------------


def _nonlinear(cfg: NonlinearStudy, ctx: RunContext, l2: float, label: str, tag: int):
    g = ctx.child_generator(10)
    x, y = translation_invariant_task(cfg.n_train, cfg.d, g, cfg.phi)
    xt, yt = translation_invariant_task(cfg.n_test, cfg.d, g, cfg.phi)
    chans = [1] + [cfg.channels] * (cfg.depth - 1) + [1]
    net = CircularCNN(chans, cfg.d, kernel_size=cfg.kernel_size, readout="mean",
                      init_gain=cfg.init_gain, generator=ctx.child_generator(tag))  # fmt: skip

    def loss_fn(model, batch):
        xb, yb = batch
        return (model(xb) - yb).pow(2).mean()

    res = train(net, loss_fn, optimizer="adam", lr=cfg.lr, steps=cfg.steps, data=(x, y), l2=l2,
                log_at=max(1, cfg.steps // 10), log=ctx.log)  # fmt: skip
    with torch.no_grad():
        test_loss = float((net(xt) - yt).pow(2).mean())
        hs = net.activations(xt)
    ws = [w.detach() for w in net.weights]
    mass0 = [float(frequency_mass(w, cfg.d)[0]) for w in ws]
    act = [float(spatially_constant_fraction(h)) for h in hs]
    top = [conv_operator_spectrum(w, cfg.d)[:, 0].tolist() for w in ws]
    for l, (m0, a) in enumerate(zip(mass0, act), start=1):
        ctx.log.log(f"mass0_{label}", m0, layer=f"conv{l}")
        ctx.log.log(f"act_const_{label}", a, layer=f"conv{l}")
    return NonlinearRun(label, float(l2), middle_layers(cfg.depth), mass0, act, top,
                        float(res.final_loss), test_loss)  # fmt: skip


def run(config: Config, ctx: RunContext) -> Result:
    lin = _linear(config.linear, ctx)
    ctx.progress(0.2)
    pen = _nonlinear(config.nonlinear, ctx, config.nonlinear.l2, "penalty", 20)
    ctx.progress(0.6)
    ctl = _nonlinear(config.nonlinear, ctx, 0.0, "control", 20)  # same init, no penalty
    ctx.progress(1.0)
    summary = Summary(lin, pen, ctl, config.criteria)
    return Result(summary=summary, records=ctx.log.freeze())


# ---- claims ------------------------------------------------------------------------------


def _thresholds(result: Result) -> Criteria:
    return result.summary.criteria


def _cbn_a1(result: Result):
    lin: LinearRun = result.summary.linear
    bad = []
    for l, row in zip(lin.middle, lin.counts):
        for m, c in enumerate(row):
            want = 1 if m in lin.kept else 0
            if c != want:
                bad.append(f"ℓ={l} m={m}: {c}")
    counts = {f"layer{l}": sum(row) for l, row in zip(lin.middle, lin.counts)}
    head = (
        f"middle layers {lin.middle}: singular values above 0.1·max at m = "
        f"{sorted({m for row in lin.counts for m, c in enumerate(row) if c})} "
        f"(want exactly one at each of {lin.kept})"
    )
    head += " → pass" if not bad else f" → fails at {', '.join(bad[:4])}"
    return check(not bad, headline=head, mismatches=len(bad), **counts)


def _cbn_a2(result: Result):
    lin: LinearRun = result.summary.linear
    rtol = _thresholds(result).norm_rtol
    rel = abs(lin.norm_sq - lin.balanced_cost) / lin.balanced_cost
    head = (
        f"‖θ‖² = {lin.norm_sq:.4f} vs (L/d)·Σ s^(2/L) = {lin.balanced_cost:.4f}: "
        f"rel. diff {rel:.2%} (limit {rtol:.0%})"
    )
    return check(rel <= rtol, headline=head, norm_sq=lin.norm_sq, cost=lin.balanced_cost, rel=rel)


def _mass_fraction(run: NonlinearRun, threshold: float) -> float:
    mid = [run.mass0[l - 1] for l in run.middle]
    return sum(m > threshold for m in mid) / len(mid)


def _min_act(run: NonlinearRun) -> float:
    return min(run.act_const[l - 1] for l in run.middle)


def _cbn_b1(result: Result):
    cfg = _thresholds(result)
    pen: NonlinearRun = result.summary.penalty
    frac = _mass_fraction(pen, cfg.mass_threshold)
    mid = [round(pen.mass0[l - 1], 3) for l in pen.middle]
    head = (
        f"penalty run: F_ℓ(0) = {mid} in middle layers {pen.middle}; {frac:.0%} above "
        f"{cfg.mass_threshold:.0%} (need >= {cfg.layer_fraction:.0%})"
    )
    return check(frac >= cfg.layer_fraction, headline=head, fraction=frac,
                 **{f"mass0_layer{l}": pen.mass0[l - 1] for l in pen.middle})  # fmt: skip


def _cbn_b2(result: Result):
    cfg = _thresholds(result)
    pen: NonlinearRun = result.summary.penalty
    low = _min_act(pen)
    mid = [round(pen.act_const[l - 1], 3) for l in pen.middle]
    head = (
        f"penalty run: spatially-constant fraction {mid} in middle layers {pen.middle}; "
        f"min {low:.3f} (need > {cfg.activation_threshold})"
    )
    return check(low > cfg.activation_threshold, headline=head, min_fraction=low,
                 **{f"act_layer{l}": pen.act_const[l - 1] for l in pen.middle})  # fmt: skip


def _cbn_b3(result: Result):
    cfg = _thresholds(result)
    ctl: NonlinearRun = result.summary.control
    frac = _mass_fraction(ctl, cfg.mass_threshold)
    low = _min_act(ctl)
    shows = frac >= cfg.layer_fraction or low > cfg.activation_threshold
    head = (
        f"control (no penalty): {frac:.0%} of middle layers with F(0) > {cfg.mass_threshold:.0%}, "
        f"min activation constant fraction {low:.3f}"
        + (" → shows the bottleneck too (fail)" if shows else " → no bottleneck (pass)")
    )
    return check(not shows, headline=head, fraction=frac, min_act=low)


def _invert_a1(s: Summary) -> Summary:
    counts = [[c + 1 for c in row] for row in s.linear.counts]
    return replace(s, linear=replace(s.linear, counts=counts))


def _invert_a2(s: Summary) -> Summary:
    return replace(s, linear=replace(s.linear, norm_sq=s.linear.balanced_cost * 1.05))


def _invert_b1(s: Summary) -> Summary:
    return replace(s, penalty=replace(s.penalty, mass0=[0.2] * len(s.penalty.mass0)))


def _invert_b2(s: Summary) -> Summary:
    return replace(s, penalty=replace(s.penalty, act_const=[0.3] * len(s.penalty.act_const)))


def _invert_b3(s: Summary) -> Summary:
    ctl = replace(s.control, mass0=[0.99] * len(s.control.mass0),
                  act_const=[0.99] * len(s.control.act_const))  # fmt: skip
    return replace(s, control=ctl)


CLAIMS = (
    Claim("CBN-a1", PAPER,
          "Linear circular CNN: every middle layer keeps exactly one singular value at each "
          "target frequency {0, 3, 13} and none elsewhere",
          "one s_i > 0.1·max s_1 per kept m, zero at other m, in every middle layer",
          check=_cbn_a1, invert=_invert_a1),
    Claim("CBN-a2", PAPER,
          "Linear circular CNN: ‖θ‖² equals the balanced per-frequency cost (L/d)·Σ s^(2/L)",
          "relative difference <= 1%", check=_cbn_a2, invert=_invert_a2),
    Claim("CBN-b1", PAPER,
          "ReLU CNN with L2 penalty: the middle layers' kernel mass sits at frequency 0",
          ">= 60% of middle layers with F_ℓ(0) > 0.9", check=_cbn_b1, invert=_invert_b1),
    Claim("CBN-b2", PAPER,
          "ReLU CNN with L2 penalty: middle-layer activations are spatially constant",
          "spatially-constant fraction > 0.9 in every middle layer",
          check=_cbn_b2, invert=_invert_b2),
    Claim("CBN-b3", PAPER,
          "Without the penalty the same CNN does not show the frequency bottleneck",
          "control run fails both CBN-b1 and CBN-b2 criteria", check=_cbn_b3, invert=_invert_b3),
)  # fmt: skip

EXPERIMENT = Experiment(
    id="cnn-bottleneck",
    title="Convolution bottleneck: CNNs keep few frequencies in their middle layers",
    papers=(PAPER,),
    description=(
        "L2-regularized circular CNNs keep only the needed frequencies (and channel "
        "directions) in their middle layers: exactly for a linear CNN, at frequency 0 for a "
        "translation-invariant ReLU task."
    ),
    config_cls=Config,
    presets=PRESETS,
    run=run,
    claims=CLAIMS,
    summary_cls=Summary,
    seeds={"smoke": 1, "default": 3, "paper": 5},
)
