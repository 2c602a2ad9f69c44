"""Batched GD / SGD(batch 1) on L2-regularized deep linear matrix completion (``sgd-rank-jumps``).

Loss (docs/results.md § sgd-rank-jumps): L_λ(θ) = (1/|I|)·Σ_{(i,j)∈I}(A_θ,ij − A*_ij)² + λ‖θ‖²
(``loss_norm="sum"`` drops the 1/|I|). Full-batch GD uses ∂/∂A = (2/|I|)·P_I(A − A*); SGD with
batch size 1 draws one observed entry (i, j) uniformly per step and uses the unbiased estimate
(A_ij − A*_ij)² + λ‖θ‖², i.e. ∂/∂A = 2(A_ij − A*_ij)·e_i e_jᵀ. Members of a batch (leading
dimension E) may differ in λ, η and in GD vs SGD; every step goes through
:func:`rankscope.train.train` (autograd) on a stacked :class:`DeepLinearEnsemble`.

Stage 0 is "stuck" (:func:`stuck_at`) once the band-filtered rank (:func:`band_filter`) has
not changed over a window of logs: the plateaus of GD at small λ still drift slowly
(‖∇L_λ‖ ~ 3e-3), so a gradient-norm test never fires there (docs/claims-changelog.md,
sgd-rank-jumps, issue 9).

Rank changes are read through :func:`hysteresis_filter` (a change counts once it persists for
``persist`` consecutive logs; definitions: numerical-policy defaults, "rank-change detection").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rankscope.metrics import numerical_rank, singular_values
from rankscope.models import DeepLinear, DeepLinearEnsemble, end_to_end
from rankscope.train import train

__all__ = [
    "Completion",
    "StageLog",
    "band_filter",
    "gd_until_stationary",
    "gd_until_stuck",
    "grad_norms",
    "hysteresis_filter",
    "never_increases_after_drop",
    "rank_of",
    "stuck_at",
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


def band_filter(
    hi: Sequence[int], lo: Sequence[int], persist: int = 3, init: int | None = None
) -> list[int]:
    """Rank read with a threshold band and hysteresis. ``hi[k]`` counts s_i > τ_hi·s_1 and
    ``lo[k]`` counts s_i > τ_lo·s_1 at log k (τ_lo < τ_hi, so lo ≥ hi). From the state r
    (``init``, else lo[0]) the proposal at log k is lo[k] if lo[k] < r (a singular value fell
    below τ_lo·s_1: a drop), else hi[k] if hi[k] > r (one climbed back above τ_hi·s_1: a
    rise), else r; a proposal replaces the state once it has been made for ``persist``
    consecutive logs. Singular values moving inside [τ_lo, τ_hi]·s_1 change nothing.

    >>> band_filter(hi=[17, 16, 17, 16, 16, 16, 16], lo=[19, 19, 18, 18, 18, 18, 18], persist=3)
    [19, 19, 19, 19, 18, 18, 18]
    """
    if persist < 1:
        raise ValueError(f"persist must be >= 1, got {persist}")
    if len(hi) != len(lo):
        raise ValueError(f"hi and lo need the same length, got {len(hi)} and {len(lo)}")
    if len(hi) == 0:
        return []
    state = int(lo[0]) if init is None else int(init)
    cand, run, out = state, 0, []
    for h, l in zip(hi, lo):
        h, l = int(h), int(l)
        if h > l:
            raise ValueError(f"hi must not exceed lo (τ_lo < τ_hi), got hi={h} > lo={l}")
        prop = l if l < state else h if h > state else state
        if prop == state:
            cand, run = state, 0
        elif prop == cand:
            run += 1
        else:
            cand, run = prop, 1
        if cand != state and run >= persist:
            state, run = cand, 0
        out.append(state)
    return out


def stuck_at(filtered: Sequence[int], window: int) -> int | None:
    """The first log index k at which a filtered rank sequence has held one value over the
    last ``window`` logs (filtered[k − window + 1 .. k] all equal); None if it never has.

    >>> stuck_at([15, 15, 17, 17, 17, 16, 17], window=3)
    4
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    run = 0
    for k, v in enumerate(filtered):
        run = run + 1 if k and v == filtered[k - 1] else 1
        if run >= window:
            return k
    return None


def _loss_fn(prob: Completion):
    """Full-batch c·Σ_I (A − A*)² per member (E,) of a stacked DLN."""

    def loss(model: DeepLinearEnsemble) -> torch.Tensor:
        return prob.weight * ((model.product() - prob.target) * prob.mask).square().sum((-2, -1))

    return loss


def _ensemble(ws: Sequence[torch.Tensor]) -> DeepLinearEnsemble:
    """A stacked DLN holding copies of the factors ws[ℓ] (E, n_ℓ, n_{ℓ−1})."""
    n = ws[0].shape[0]
    return DeepLinearEnsemble.from_members(
        [DeepLinear.from_weights([w[e] for w in ws]) for e in range(n)]
    )


def _write_back(ws: Sequence[torch.Tensor], model: DeepLinearEnsemble) -> None:
    with torch.no_grad():
        for w, p in zip(ws, model.weights):
            w.copy_(p)


def _per_member(value, n: int) -> torch.Tensor:
    """A float or an (E, 1, 1) / (E,) tensor as (E,) float64."""
    if isinstance(value, torch.Tensor):
        return value.reshape(-1).to(torch.float64).expand(n).clone()
    return torch.full((n,), float(value), dtype=torch.float64)


def grad_norms(model: DeepLinearEnsemble, prob: Completion, lam: torch.Tensor) -> torch.Tensor:
    """‖∇L_λ‖ over all factors, per member (E,), by autograd at the current parameters."""
    with torch.enable_grad():
        ws = [w.detach().requires_grad_(True) for w in model.weights]
        a = end_to_end(ws)
        loss = prob.weight * ((a - prob.target) * prob.mask).square().sum((-2, -1))
        loss = loss + lam * sum(w.square().sum((-2, -1)) for w in ws)
        grads = torch.autograd.grad(loss.sum(), ws)
    return sum(g.square().sum((-2, -1)) for g in grads).sqrt()


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
    """In place: full-batch GD on L_λ (through the engine) until ‖∇L_λ‖_F < ``tol`` for every
    member, checked every ``check_every`` steps (or ``max_steps``). ``lam``: float or (E, 1, 1).
    Returns (steps, final gradient norms (E,)); the norms are NaN when a member diverged."""
    n = ws[0].shape[0]
    lam_e = _per_member(lam, n)
    model = _ensemble(ws)
    seen = {"step": 0, "norms": torch.full((n,), math.inf, dtype=ws[0].dtype)}

    def check(state) -> bool:
        if not bool(state.active.all()):  # a member diverged: stop, as a non-finite norm
            seen["norms"] = torch.full((n,), math.nan, dtype=ws[0].dtype)
            return True
        norms = grad_norms(state.model, prob, lam_e)
        seen["step"], seen["norms"] = state.step, norms
        return bool((norms < tol).all()) or not bool(torch.isfinite(norms).all())

    log_at = set(range(0, max_steps + 1, check_every)) | {max_steps}
    res = train(
        model, _loss_fn(prob), optimizer="gd", lr=lr, l2=lam_e, steps=max_steps,
        log_at=log_at, callbacks=[check], on_diverge="stop",
    )  # fmt: skip
    if any(st == "diverged" for st in res.statuses):
        seen["norms"] = torch.full((n,), math.nan, dtype=ws[0].dtype)
        seen["step"] = max(d for d in res.diverged_steps if d is not None)
    _write_back(ws, model)
    return seen["step"], seen["norms"]


def gd_until_stuck(
    ws: list[torch.Tensor],
    prob: Completion,
    *,
    lam: float,
    lr: float,
    taus: tuple[float, float],
    atol: float,
    log_every: int,
    persist: int,
    window: int,
    max_steps: int,
) -> tuple[int, dict[float, list[int]], list[int], bool]:
    """In place, one member (E = 1): full-batch GD on L_λ through the engine, logging the ranks
    s_i > max(τ·s_1, atol) of A for (τ_hi, τ_lo) = ``taus`` every ``log_every`` steps, until
    the :func:`band_filter` rank has held one value over ``window`` logs (:func:`stuck_at`)
    or ``max_steps``. Returns (steps, raw rank logs per τ, band-filtered ranks, stuck); a
    diverged run raises :class:`~rankscope.experiments.base.Diverged` (the engine's default)."""
    if ws[0].shape[0] != 1:
        raise ValueError(f"gd_until_stuck trains one member, got E = {ws[0].shape[0]}")
    model = _ensemble(ws)
    ranks: dict[float, list[int]] = {t: [] for t in taus}
    seen: dict = {"step": 0, "filtered": [], "stuck": False}

    def check(state) -> bool:
        s = singular_values(end_to_end([w.detach() for w in state.model.weights]), dtype=None)
        for t in taus:
            ranks[t].append(int(rank_of(s, t, atol)[0]))
        seen["step"] = state.step
        seen["filtered"] = band_filter(ranks[taus[0]], ranks[taus[1]], persist)
        seen["stuck"] = stuck_at(seen["filtered"], window) is not None
        return seen["stuck"]

    log_at = set(range(0, max_steps + 1, log_every)) | {max_steps}
    train(
        model, _loss_fn(prob), optimizer="gd", lr=lr, l2=lam, steps=max_steps,
        log_at=log_at, callbacks=[check],
    )  # fmt: skip
    _write_back(ws, model)
    return seen["step"], ranks, seen["filtered"], seen["stuck"]


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
    """In place: run the phases of a λ/η schedule on E members through the engine; ``sgd``
    (E,) bool marks the batch-size-1 SGD members, the others take full-batch GD steps.
    ``lambdas[p]``/``lrs[p]``: (E,) per phase. A member whose objective turns non-finite is
    frozen by the engine and marked diverged; its factors are zeroed between phases (A = 0
    stays 0: it is a critical point of L_λ), so later phases leave it at 0.

    SGD member e draws one observed entry (i, j) per step (one draw of ``generator`` per phase
    for all SGD members) and minimises |I|·c·(A_ij − A*_ij)² + λ‖θ‖², the unbiased estimate of
    L_λ; the step's loss weights W (E, d, d) encode both kinds: ∇ = 2 W ⊙ (A − A*)."""
    obs, d, n = prob.observed, prob.target.shape[-1], sgd.shape[0]
    sgd_half = prob.weight * len(obs)  # |I|·c: the weight of the drawn entry
    gd_w = (prob.mask * prob.weight).expand(n, d, d).clone()
    gd_w[sgd.to(gd_w.device)] = 0.0
    rows = sgd.nonzero().flatten().to(gd_w.device)
    model = _ensemble(ws)
    dead = torch.zeros(n, dtype=torch.bool)
    logs: dict = {"steps": [], "s": [], "loss": [], "rmse": [], "ranks": {t: [] for t in taus}}
    last: dict = {}
    t_global = 0
    for phase, (lam, lr, n_steps) in enumerate(zip(lambdas, lrs, steps)):
        draws = obs[
            torch.randint(len(obs), (n_steps, len(rows)), generator=generator).to(obs.device)
        ]
        calls = [0]

        def loss_fn(net: DeepLinearEnsemble, draws=draws, calls=calls, n_steps=n_steps):
            weights, k = gd_w, calls[0]
            calls[0] += 1
            if len(rows) and k < n_steps:
                weights = gd_w.clone()
                weights[rows, draws[k] // d, draws[k] % d] = sgd_half
            return (weights * (net.product() - prob.target).square()).sum((-2, -1))

        def measure(state, dead=dead) -> None:
            a = end_to_end([w.detach() for w in state.model.weights])
            finite = torch.isfinite(a).flatten(1).all(1).cpu()
            alive = (~dead & state.active.cpu() & finite).to(a.device)
            s, ranks, loss, rmse = _measure(a, prob, taus, alive, atol)
            _log(logs, state.step, s, ranks, loss, rmse)
            last.update(s=s, alive=alive.cpu())

        final = phase == len(steps) - 1
        log_at = {k for k in range(n_steps + final) if (t_global + k) % log_every == 0}
        log_at |= {n_steps} if final else set()
        res = train(
            model, loss_fn, optimizer="gd", lr=lr, l2=lam, steps=n_steps, log_at=log_at,
            callbacks=[measure], on_diverge="stop", step_offset=t_global,
        )  # fmt: skip
        dead |= torch.tensor([st == "diverged" for st in res.statuses])
        with torch.no_grad():
            a = model.product()
            dead |= ~torch.isfinite(a).flatten(1).all(1).cpu()
            for w in model.weights:
                w[dead.to(w.device)] = 0.0
        t_global += n_steps
    _write_back(ws, model)
    return StageLog(
        steps=logs["steps"],
        ranks={t: torch.stack(v, 1) for t, v in logs["ranks"].items()},
        loss=torch.stack(logs["loss"], 1),
        rmse=torch.stack(logs["rmse"], 1),
        final_sv=last["s"],
        diverged=dead | ~last["alive"],
    )


def _log(logs, step, s, ranks, loss, rmse) -> None:
    logs["steps"].append(step)
    logs["loss"].append(loss)
    logs["rmse"].append(rmse)
    for t, r in ranks.items():
        logs["ranks"][t].append(r)
