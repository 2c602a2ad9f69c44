"""Hand-derived backward vs autograd, through the same engine, on the experiments' own shapes.

Run: ``RANKSCOPE_THREADS=1 python benchmarks/bench_closed_form.py [--quick] [--json PATH]``

Issue 8: a closed-form backward stays only where it is ≥ 2× faster than autograd. Both sides
call :func:`rankscope.train.train` on identical models; the closed form is a ``loss_fn``
object with ``value_and_grads(model, batch)`` (the engine's hook), the autograd side the
same loss as a plain function. Candidates, written out here:

1. **end-to-end losses** C(A), A = W_L⋯W_1 (the linear family): ∂C/∂A by autograd on A
   alone, then ∂C/∂W_ℓ = (W_L⋯W_{ℓ+1})ᵀ (∂C/∂A) (W_{ℓ−1}⋯W_1)ᵀ from the prefix products
   (what ``experiments/linear/_dln.py`` does by hand);
2. **supervised losses** on DLN / ReLU-MLP ensembles (``SupervisedLoss`` before issue 8):
   the output gradient in closed form, then a chain of ``bmm`` back through the layers.

Workloads (float64 for the linear family, as the experiments): saddle-to-saddle (E = 5 init
scales, d = 20, width 100, depths 2/3/4, ½‖A − A*‖², with and without the per-step
spectrum the experiment needs), its γ-transition completion (one network, d = 20, depth 2,
widths 50/200/800, ½Σ_obs), sgd-rank-jumps (E = 10, d = 20, depth 4, width 20, mean over
observed entries, λ‖θ‖²), schatten-l2 (one network, d = 10, width 10, depths 2/3/4,
½‖A − Y‖² + λ‖θ‖²), and the collapse family's MLP ensembles (sgd-weight-decay-rank: 6
members 64-100-100-100-10 float32, SGD batches 4/32/256; a DLN regression ensemble).
Reported: per-step time of each side (best of ``repeats`` interleaved runs; the machine is
shared) and the ratio autograd / closed form, plus the largest parameter difference.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from rankscope.metrics import singular_values
from rankscope.models import DeepLinear, DeepLinearEnsemble, MLPEnsemble
from rankscope.threads import requested_threads, set_threads
from rankscope.train import cross_entropy, mse, train

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- candidate 1: end-to-end losses ------------------------------------------------------


def _prefix_products(ws):
    out = [ws[0]]
    for w in ws[1:]:
        out.append(w @ out[-1])
    return out


def _factor_gradients(ws, grad_a, pre):
    grads = [grad_a] * len(ws)
    back = grad_a  # (W_L⋯W_{ℓ+1})ᵀ G
    for ell in range(len(ws) - 1, -1, -1):
        grads[ell] = back @ pre[ell - 1].mT if ell > 0 else back
        back = ws[ell].mT @ back
    return grads


class EndToEnd:
    """loss(model) = fn(A); ``value_and_grads`` by prefix products (the closed form)."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, model):
        return self.fn(model.product())

    def value_and_grads(self, model, batch):
        ws = [w.detach() for w in model.weights]
        pre = _prefix_products(ws)
        a = pre[-1].requires_grad_()
        with torch.enable_grad():
            c = self.fn(a)
            (g,) = torch.autograd.grad(c.sum(), a)
        return c.detach(), _factor_gradients(ws, g, pre)


# ---- candidate 2: supervised losses (the pre-issue-8 SupervisedLoss closed form) ---------


class Supervised:
    """loss(model, (x, y)) = mse/cross-entropy; the backward by hand (DLN or ReLU MLP)."""

    def __init__(self, name: str, relu: bool) -> None:
        self.name, self.relu = name, relu
        self.fn = mse if name == "mse" else cross_entropy

    def __call__(self, model, batch):
        return self.fn(model(batch[0]), batch[1])

    def _out_grad(self, out, target):
        b = out.shape[-2]
        if self.name == "mse":
            r = out - target
            return (r * r).flatten(-2).sum(-1) / b, r * (2.0 / b)
        logp = torch.log_softmax(out, -1)
        labels = target.expand(out.shape[:-1]).unsqueeze(-1)
        loss = -logp.gather(-1, labels).squeeze(-1).mean(-1)
        g = logp.exp()
        g.scatter_add_(-1, labels, torch.full_like(labels, -1, dtype=g.dtype))
        return loss, g / b

    def value_and_grads(self, model, batch):
        x, y = batch
        ws = [w.detach() for w in model.weights]
        e = ws[0].shape[0]
        hs = [x if x.ndim == 3 else x.expand(e, *x.shape)]
        for w in ws[:-1]:
            z = torch.bmm(hs[-1], w.mT)
            hs.append(z.relu_() if self.relu else z)
        loss, g = self._out_grad(torch.bmm(hs[-1], ws[-1].mT), y)
        grads = [g] * len(ws)
        for ell in range(len(ws) - 1, -1, -1):
            grads[ell] = torch.bmm(g.mT, hs[ell])
            if ell:
                g = torch.bmm(g, ws[ell])
                if self.relu:
                    g = g * (hs[ell] > 0)
        return loss, grads


# ---- timing ------------------------------------------------------------------------------


def _time(make, loss_fn, repeats: int, **kw) -> tuple[float, torch.nn.Module]:
    best, model = float("inf"), None
    for _ in range(repeats):
        model = make()
        t0 = time.perf_counter()
        train(model, loss_fn, **kw)
        best = min(best, time.perf_counter() - t0)
    return best, model


def compare(name: str, make, closed, autograd, steps: int, repeats: int, **kw) -> dict:
    """Per-step times of both sides (interleaved) and the largest parameter difference."""
    t_closed = t_auto = float("inf")
    for _ in range(repeats):
        tc, m_closed = _time(make, closed, 1, steps=steps, **kw)
        ta, m_auto = _time(make, autograd, 1, steps=steps, **kw)
        t_closed, t_auto = min(t_closed, tc), min(t_auto, ta)
    diff = max(
        float((a.detach() - b.detach()).abs().max() / b.detach().abs().max())
        for a, b in zip(m_closed.parameters(), m_auto.parameters())
    )
    out = {
        "workload": name,
        "closed_us_per_step": 1e6 * t_closed / steps,
        "autograd_us_per_step": 1e6 * t_auto / steps,
        "ratio": t_auto / t_closed,
        "max_rel_param_diff": diff,
    }
    print(
        f"{name:58s} closed {out['closed_us_per_step']:8.0f} us/step, autograd "
        f"{out['autograd_us_per_step']:8.0f} us/step -> {out['ratio']:.2f}x  (diff {diff:.1e})"
    )
    return out


def _planted(d: int, values, seed: int) -> torch.Tensor:
    g = _gen(seed)
    u, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    v, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    k = len(values)
    return u[:, :k] @ torch.diag(torch.tensor(values, dtype=F64)) @ v[:, :k].T


def _mask(d: int, frac: float, seed: int) -> torch.Tensor:
    m = torch.zeros(d * d, dtype=F64)
    m[torch.randperm(d * d, generator=_gen(seed))[: round(frac * d * d)]] = 1.0
    return m.reshape(d, d)


def saddle_to_saddle(steps: int, repeats: int) -> list[dict]:
    target = _planted(20, (10.0, 5.0, 2.5), 0)
    sig = [1e-1, 10**-1.5, 1e-2, 10**-2.5, 1e-3]
    fn = lambda a: 0.5 * ((a - target) ** 2).sum((-2, -1))  # noqa: E731
    out = []
    for depth, lr in ((2, 0.01), (3, 0.005), (4, 0.005)):
        dims = [20] + [100] * (depth - 1) + [20]

        def make(dims=dims):
            return DeepLinearEnsemble(dims, sigma=sig, generators=[_gen(1)] * 5, dtype=F64)

        def spectrum(state) -> None:
            singular_values(state.model.product().detach())

        for cbs, tag in (((), ""), ((spectrum,), " + spectrum every step")):
            out.append(
                compare(
                    f"saddle-to-saddle E=5 d=20 w=100 L={depth}{tag}",
                    make,
                    EndToEnd(fn),
                    lambda m, fn=fn: fn(m.product()),
                    steps,
                    repeats,
                    lr=lr,
                    log_at=1 if cbs else None,
                    callbacks=cbs,
                )
            )
    return out


def gamma_completion(steps: int, repeats: int) -> list[dict]:
    target, mask = _planted(20, (10.0, 5.0), 1), _mask(20, 0.3, 2)
    fn = lambda a: 0.5 * (((a - target) * mask) ** 2).sum()  # noqa: E731
    out = []
    for width in (50, 200, 800):

        def make(width=width):
            return DeepLinear([20, width, 20], sigma=width**-0.75, generator=_gen(3), dtype=F64)

        out.append(
            compare(
                f"saddle-to-saddle completion E=1 d=20 L=2 w={width}",
                make,
                EndToEnd(fn),
                lambda m: fn(m.product()),
                steps,
                repeats,
                lr=0.01,
            )
        )
    return out


def sgd_rank_jumps(steps: int, repeats: int) -> list[dict]:
    target, mask = _planted(20, (3.0, 2.0), 4), _mask(20, 0.4, 5)
    n_obs = float(mask.sum())
    fn = lambda a: (((a - target) * mask) ** 2).sum((-2, -1)) / n_obs  # noqa: E731
    lams = [1e-2 * s for s in (1.0, 0.3, 0.1, 0.03, 0.01)] * 2

    def make():
        return DeepLinearEnsemble([20] * 5, sigma=20**-0.5, generators=[_gen(6)] * 10, dtype=F64)

    return [
        compare(
            "sgd-rank-jumps E=10 d=20 w=20 L=4 (+ l2)",
            make,
            EndToEnd(fn),
            lambda m: fn(m.product()),
            steps,
            repeats,
            lr=0.05,
            l2=lams,
        )
    ]


def schatten(steps: int, repeats: int) -> list[dict]:
    y = torch.diag(torch.tensor([5.0, 3.0, 1.5, 0.6, 0.2] + [0.0] * 5, dtype=F64))
    fn = lambda a: 0.5 * ((a - y) ** 2).sum()  # noqa: E731
    out = []
    for depth in (2, 3, 4):

        def make(depth=depth):
            return DeepLinear([10] * (depth + 1), sigma=0.15, generator=_gen(7), dtype=F64)

        out.append(
            compare(
                f"schatten-l2 E=1 d=10 w=10 L={depth} (+ l2)",
                make,
                EndToEnd(fn),
                lambda m: fn(m.product()),
                steps,
                repeats,
                lr=0.02,
                l2=0.3,
            )
        )
    return out


def collapse(steps: int, repeats: int) -> list[dict]:
    g = _gen(8)
    x = torch.randn(1438, 64, generator=g)
    y = torch.randint(10, (1438,), generator=g)
    dims = [64, 100, 100, 100, 10]
    closed = Supervised("cross_entropy", relu=True)
    auto = lambda m, b: cross_entropy(m(b[0]), b[1])  # noqa: E731
    out = []
    for b in (4, 32, 256):

        def make():
            return MLPEnsemble(dims, generators=[_gen(9 + e) for e in range(6)])

        out.append(
            compare(
                f"sgd-weight-decay-rank MLP E=6 64-100x3-10 f32 SGD B={b}",
                make,
                closed,
                auto,
                steps,
                repeats,
                optimizer="sgd",
                lr=0.05,
                data=(x, y),
                batch_size=b,
                batches="shared",
                generator=_gen(10),
                l2=1e-3,
            )
        )
    xr = torch.randn(64, 10, generator=g)
    yr = xr @ torch.randn(10, 10, generator=g) / 10**0.5

    def make_dln():
        return DeepLinearEnsemble([10] * 5, sigma=10**-0.5, generators=[_gen(e) for e in range(64)])

    out.append(
        compare(
            "DLN regression E=64 depth 4 width 10 N=64 f32 (bench_ensemble)",
            make_dln,
            Supervised("mse", relu=False),
            lambda m, b: mse(m(b[0]), b[1]),
            steps,
            repeats,
            lr=1e-3,
            data=(xr, yr),
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    set_threads(requested_threads())
    steps, repeats = (50, 2) if args.quick else (200, 3)
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    res = []
    for fn in (saddle_to_saddle, gamma_completion, sgd_rank_jumps, schatten, collapse):
        res += fn(steps, repeats)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": torch.get_num_threads(), "results": res}, fh, indent=2)


if __name__ == "__main__":
    main()
