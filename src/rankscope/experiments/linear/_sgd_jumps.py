"""Batched GD / SGD(batch 1) on L2-regularized deep linear matrix completion (``sgd-rank-jumps``).

Loss (papers/linear.md § sgd-rank-jumps): L_λ(θ) = (1/|I|)·Σ_{(i,j)∈I}(A_θ,ij − A*_ij)² + λ‖θ‖²
(``loss_norm="sum"`` drops the 1/|I|). Full-batch GD uses ∂/∂A = (2/|I|)·P_I(A − A*); SGD with
batch size 1 draws one observed entry (i, j) uniformly per step and uses the unbiased estimate
(A_ij − A*_ij)² + λ‖θ‖², i.e. ∂/∂A = 2(A_ij − A*_ij)·e_i e_jᵀ. Members of a batch (leading
dimension E) may differ in λ, η and in GD vs SGD; a step is ~3L batched matmuls (``gd_step``).

Rank changes are read through :func:`hysteresis_filter` (a change counts once it persists for
``persist`` consecutive logs; definitions: numerical-policy defaults, "rank-change detection").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rankscope.experiments.linear._dln import factor_gradients, gd_step, prefix_products
from rankscope.metrics import numerical_rank, singular_values

__all__ = [
    "Completion",
    "StageLog",
    "gd_until_stationary",
    "hysteresis_filter",
    "never_increases_after_drop",
    "rank_of",
    "train_schedule",
]


@dataclass(frozen=True)
class Completion:
    """Target (d, d), observed mask (d, d) bool. ``loss_norm``: ``mean`` is the spec's
    (1/|I|)·Σ_I; ``sum`` drops the 1/|I| (an alternative reading of the proposal's λ and η)."""

    target: torch.Tensor
    mask: torch.Tensor
    loss_norm: str = "mean"

    @property
    def weight(self) -> float:
        """c in C(A) = c·Σ_I (A − A*)²."""
        if self.loss_norm == "mean":
            return 1.0 / float(self.mask.sum())
        if self.loss_norm == "sum":
            return 1.0
        raise ValueError(f"loss_norm must be 'mean' or 'sum', got {self.loss_norm!r}")

    @property
    def observed(self) -> torch.Tensor:
        return self.mask.flatten().nonzero().flatten()

    def residual(self, a: torch.Tensor) -> torch.Tensor:
        return a - self.target  # (E, d, d)

    def train_loss(self, a: torch.Tensor) -> torch.Tensor:
        """c·Σ_I (A − A*)², shape (E,)."""
        r = self.residual(a) * self.mask
        return r.square().sum((-2, -1)) * self.weight

    def unobserved_rmse(self, a: torch.Tensor) -> torch.Tensor:
        """RMSE of A − A* over the unobserved entries, shape (E,)."""
        r = self.residual(a)[..., ~self.mask]  # (E, n_unobserved)
        return r.square().mean(-1).sqrt()


def hysteresis_filter(seq: Sequence[int], persist: int = 3) -> list[int]:
    """Causal hysteresis: the state moves to a new value once that value has been read for
    ``persist`` consecutive logs; shorter excursions (flicker near a threshold) are ignored.

    >>> hysteresis_filter([5, 5, 4, 5, 4, 4, 4, 4], persist=3)
    [5, 5, 5, 5, 5, 5, 4, 4]
    """
    if persist < 1:
        raise ValueError(f"persist must be >= 1, got {persist}")
    if len(seq) == 0:
        return []
    state, cand, run, out = int(seq[0]), int(seq[0]), 0, []
    for v in seq:
        v = int(v)
        if v == state:
            cand, run = state, 0
        elif v == cand:
            run += 1
        else:
            cand, run = v, 1
        if cand != state and run >= persist:
            state, run = cand, 0
        out.append(state)
    return out


def never_increases_after_drop(filtered: Sequence[int]) -> bool:
    """True when a (filtered) rank sequence has no increase after its first decrease."""
    dropped = False
    for prev, cur in itertools.pairwise(filtered):
        if cur < prev:
            dropped = True
        elif cur > prev and dropped:
            return False
    return True


def _grad_norm(ws, grads, lam) -> torch.Tensor:
    """‖∇L_λ‖ over all factors, per member (E,)."""
    total = sum((g + 2 * lam * w).square().sum((-2, -1)) for w, g in zip(ws, grads))
    return total.sqrt()


def gd_until_stationary(
    ws: list[torch.Tensor],
    prob: Completion,
    *,
    lam,
    lr: float,
    tol: float,
    max_steps: int,
    check_every: int = 100,
) -> tuple[int, torch.Tensor]:
    """In place: full-batch GD on L_λ until ‖∇L_λ‖_F < ``tol`` for every member (or
    ``max_steps``). ``lam``: float or (E, 1, 1). Returns (steps, final gradient norms (E,))."""
    norms = torch.full((ws[0].shape[0],), math.inf, dtype=ws[0].dtype)
    for step in range(max_steps + 1):
        pre = prefix_products(ws)
        g_a = 2 * prob.weight * prob.residual(pre[-1]) * prob.mask
        if step % check_every == 0 or step == max_steps:
            norms = _grad_norm(ws, factor_gradients(ws, g_a, pre), lam)
            if not torch.isfinite(norms).all():
                return step, norms
            if bool((norms < tol).all()) or step == max_steps:
                return step, norms
        gd_step(ws, g_a, lr, l2=lam, prefixes=pre)
    return max_steps, norms  # pragma: no cover - the loop always returns


@dataclass
class StageLog:
    """Per-member logs of one schedule: ``ranks[tau]`` (E, n_logs) ints, ``loss``, ``rmse``
    (E, n_logs), ``steps`` (n_logs,), ``final_sv`` (E, d), ``diverged`` (E,) bool."""

    steps: list[int]
    ranks: dict[float, torch.Tensor]
    loss: torch.Tensor
    rmse: torch.Tensor
    final_sv: torch.Tensor
    diverged: torch.Tensor


def rank_of(s: torch.Tensor, tau: float, atol: float) -> torch.Tensor:
    """#{i: s_i > max(τ·s_1, atol)}: relative rank with an absolute floor, so that a network
    collapsed to ~0 (s ~ 1e-150 in float64) has rank 0 rather than its relative rank."""
    return numerical_rank(s, "torch", rtol=tau, atol=atol)


def _measure(a, prob: Completion, taus, alive, atol):
    a = torch.where(alive.view(-1, 1, 1), a, torch.zeros_like(a))  # keep the SVD finite
    s = singular_values(a, dtype=None)
    ranks = {t: rank_of(s, t, atol) for t in taus}
    return s, ranks, prob.train_loss(a), prob.unobserved_rmse(a)


def train_schedule(
    ws: list[torch.Tensor],
    prob: Completion,
    *,
    sgd: torch.Tensor,
    lambdas: Sequence[torch.Tensor],
    lrs: Sequence[torch.Tensor],
    steps: Sequence[int],
    log_every: int,
    taus: Sequence[float],
    generator: torch.Generator,
    atol: float = 1e-8,
) -> StageLog:
    """In place: run the phases of a λ/η schedule on E members; ``sgd`` (E,) bool marks the
    batch-size-1 SGD members, the others take full-batch GD steps. ``lambdas[p]``/``lrs[p]``:
    (E,) per phase. Members whose iterate turns non-finite are marked diverged and frozen."""
    obs, d = prob.observed, prob.target.shape[-1]
    sgd_w = 2 * prob.weight * len(obs)  # unbiased: |I|·c·(A_ij − A*_ij)² for one entry
    gd_w = (prob.mask * prob.weight).expand(sgd.shape[0], d, d).clone()
    gd_w[sgd] = 0.0
    rows = sgd.nonzero().flatten()
    alive = torch.ones(sgd.shape[0], dtype=torch.bool)
    logs: dict = {"steps": [], "s": [], "loss": [], "rmse": [], "ranks": {t: [] for t in taus}}
    t_global = 0
    for lam, lr, n in zip(lambdas, lrs, steps):
        lam3, lr3 = lam.view(-1, 1, 1), lr.view(-1, 1, 1)
        draws = obs[torch.randint(len(obs), (n, len(rows)), generator=generator)]  # (n, E_sgd)
        for k in range(n):
            pre = prefix_products(ws)
            r = prob.residual(pre[-1])
            if t_global % log_every == 0:
                alive &= torch.isfinite(pre[-1]).flatten(1).all(1)
                _log(logs, t_global, *_measure(pre[-1], prob, taus, alive, atol))
            g_a = 2 * r * gd_w
            if len(rows):
                i, j = draws[k] // d, draws[k] % d
                g_a[rows, i, j] = sgd_w * r[rows, i, j]
            g_a = torch.where(alive.view(-1, 1, 1), g_a, torch.zeros_like(g_a))
            gd_step(ws, g_a, lr3 * alive.view(-1, 1, 1), l2=lam3, prefixes=pre)
            t_global += 1
    a = prefix_products(ws)[-1]
    alive &= torch.isfinite(a).flatten(1).all(1)
    s, ranks, loss, rmse = _measure(a, prob, taus, alive, atol)
    _log(logs, t_global, s, ranks, loss, rmse)
    return StageLog(
        steps=logs["steps"],
        ranks={t: torch.stack(v, 1) for t, v in logs["ranks"].items()},
        loss=torch.stack(logs["loss"], 1),
        rmse=torch.stack(logs["rmse"], 1),
        final_sv=s,
        diverged=~alive,
    )


def _log(logs, step, s, ranks, loss, rmse) -> None:
    logs["steps"].append(step)
    logs["loss"].append(loss)
    logs["rmse"].append(rmse)
    for t, r in ranks.items():
        logs["ranks"][t].append(r)
