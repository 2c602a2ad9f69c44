"""Training protocols of the collapse family, on top of :mod:`rankscope.train`.

Penalty conventions (definitions §0): docs/results.md writes J = (1/N)Σℓ + (λ/2)Σ‖W‖², so the NRC
protocols pass ``l2 = λ/2``; Galanti et al. write loss + λ‖W‖² (decay factor 1 − 2μλ), so the
SGD grid passes ``l2 = λ`` (torch's ``weight_decay = 2λ``). The penalty is added to the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from rankscope.models import MLPEnsemble
from rankscope.train import cross_entropy, train
from rankscope.train.errors import Diverged

__all__ = ["ce_loss", "fit_adam_then_gd", "fit_lbfgs", "mlp_dims"]


def mlp_dims(d_in: int, widths: Sequence[int], num_classes: int) -> list[int]:
    """[d_in, *widths, K]."""
    return [int(d_in), *(int(w) for w in widths), int(num_classes)]


def ce_loss(net, batch) -> torch.Tensor:
    """Mean cross-entropy of a network (scalar) or an ensemble ((E,)) on (x, y)."""
    x, y = batch
    return cross_entropy(net(x), y)


def fit_lbfgs(
    net,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    l2: float,
    rounds: int,
    iters: int,
    history: int = 20,
    log_at: Sequence[int] = (),
    callback: Callable[[int, object], None] | None = None,
    tag: str = "",
) -> dict:
    """Full-batch L-BFGS (strong Wolfe, float64): ``rounds`` restarts of ``iters`` iterations.

    Each round is one ``train`` call of ``iters // 20`` L-BFGS steps of 20 iterations with a
    fresh history of ``history`` pairs (docs/results.md NRC-1b: 3×400; a history of 20 instead of
    torch's 100 was measured 2.5× faster per iteration on the mixtures, reaching the same
    objective). ``callback(global_iteration, net)`` runs at the
    iterations in ``log_at``. Raises :class:`Diverged` on a NaN/Inf objective.
    """
    per_step = 20
    steps = max(1, iters // per_step)
    wanted = set(log_at)
    final = float("nan")
    for r in range(rounds):
        offset = r * steps * per_step
        # step 0 is always logged: train()'s L-BFGS path reads a loss only at logging steps
        local = sorted(
            {0} | {(i - offset) // per_step for i in wanted if offset <= i <= offset + iters}
        )

        def cb(state, offset=offset) -> None:
            it = offset + state.step * per_step
            if callback is not None and it in wanted:
                callback(it, net)

        res = train(
            net,
            ce_loss,
            optimizer="lbfgs",
            lr=1.0,
            steps=steps,
            data=(x, y),
            l2=l2,
            log_at=[s for s in local if s <= steps],
            callbacks=[cb],
            optimizer_options={"max_iter": per_step, "history_size": history},
            on_diverge="stop",
        )
        if res.status == "diverged":
            raise Diverged(offset + (res.diverged_step or 0) * per_step, f"L-BFGS loss ({tag})")
        final = res.final_loss
    return {"objective": float(final), "iterations": rounds * steps * per_step}


def fit_adam_then_gd(
    ens: MLPEnsemble,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    l2: torch.Tensor,
    adam_steps: int,
    adam_lr: float,
    gd_steps: int,
    gd_lr: float,
    log_at: Sequence[int] = (),
    callback: Callable[[int, MLPEnsemble, torch.Tensor], None] | None = None,
) -> dict:
    """docs/results.md NRC-1: full-batch Adam, then full-batch SGD, every member at once.

    ``l2`` (E,) per member. ``callback(step, ens, active)`` runs at the global steps in
    ``log_at`` (Adam steps first, then GD steps offset by ``adam_steps``).
    """
    status = ["completed"] * ens.size
    phases = (("adam", adam_lr, adam_steps, 0), ("gd", gd_lr, gd_steps, adam_steps))
    for opt, lr, steps, offset in phases:
        if steps == 0:
            continue
        local = sorted({s - offset for s in log_at if offset <= s <= offset + steps})
        if offset > 0:
            local = [s for s in local if s > 0]  # step 0 of phase 2 = last step of phase 1

        def cb(state, offset=offset) -> None:
            if callback is not None:
                callback(offset + state.step, ens, state.active)

        res = train(
            ens,
            ce_loss,
            optimizer=opt,
            lr=lr,
            steps=steps,
            data=(x, y),
            l2=l2,
            log_at=local or None,
            callbacks=[cb] if local else (),
            on_diverge="stop",  # a diverged member is frozen, the others go on
        )
        status = [a if a != "completed" else b for a, b in zip(status, res.statuses)]
    return {"status": status}
