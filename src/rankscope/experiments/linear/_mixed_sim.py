"""Simulation core of ``mixed-dynamics``: GD on d×d statistics and the self-consistent dynamics.

Notation (docs/results.md § mixed-dynamics, notebook ``aranguri/phase-diagram``):
A = W₂W₁, W₁ ∈ R^{w×d}, W₂ ∈ R^{d×w}, entries N(0, σ²); Y = A* + E; the gradient used by the
notebooks is ∇C = A − Y (the 1/d² normalization is only in the reported losses
L = ‖A − Y‖_F²/d², L_test = ‖A − A*‖_F²/d²).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from rankscope.metrics import numerical_rank, singular_values, stable_rank
from rankscope.models.gram import FactorState, GramState
from rankscope.train import train
from rankscope.train.gram_gd import FactorGD, GramGD

__all__ = [
    "Point",
    "Problem",
    "SimSettings",
    "early_stop_index",
    "first_crossing",
    "gram_spectrum",
    "make_problem",
    "sample_gram_init",
    "sc_step",
    "shifted_psd_sqrt",
    "simulate",
]


@dataclass(frozen=True)
class Problem:
    """Target A* = C Dᵀ (C, D = K^{-1/4}·randn(d, K)) and observation Y = A* + E, E ~ N(0, 1)."""

    target: torch.Tensor  # (d, d)
    observed: torch.Tensor  # (d, d)
    target_op: float

    def describe(self) -> dict:
        s = singular_values(self.target.cpu())
        k = int((s > s[0] * 1e-6).sum())
        return {
            "d": int(self.target.shape[0]),
            "stable_rank": float(stable_rank(s)),
            "op_norm": float(s[0]),
            "singular_values": tuple(float(x) for x in s[: k + 1]),
            "observed_singular_values": tuple(
                float(x) for x in singular_values(self.observed.cpu())[: k + 3]
            ),
        }


def make_problem(
    d: int, k: int, *, generator: torch.Generator, dtype: torch.dtype, device=None
) -> Problem:
    """Drawn on the CPU from ``generator`` (the same problem on every device), then moved to
    ``device`` (None: the CPU) in ``dtype``."""
    cd = k**-0.25 * torch.randn(2, d, k, generator=generator, dtype=torch.float64)
    target = cd[0] @ cd[1].T  # (d, d), rank k
    noise = torch.randn(d, d, generator=generator, dtype=torch.float64)
    op = float(torch.linalg.matrix_norm(target, ord=2))
    to = {"dtype": dtype, "device": device}
    return Problem(target.to(**to), (target + noise).to(**to), op)


@dataclass(frozen=True)
class Point:
    """One (γ_σ², γ_w) point: σ² = d^γσ², w = ⌊d^γw⌋, the notebook's η and its phase region.

    Regions (official plotting code): lazy/active line γσ²+γw = 1 (active below), red line
    2γσ²+γw = 0 (the theory needs 2γσ²+γw < 0). ``line_distance`` is the signed Euclidean
    distance (γσ²+γw−1)/√2 to the lazy/active line.
    """

    gamma_sigma2: float
    gamma_w: float
    d: int
    sigma2: float
    w: int
    eta: float
    region: str
    below_red: bool
    line_distance: float

    @classmethod
    def make(cls, gs: float, gw: float, d: int, target_op: float, eta_divisor: float) -> Point:
        sigma2, w_real = float(d) ** gs, float(d) ** gw
        lazy = gs + gw > 1
        eta = 1 / (eta_divisor * w_real * sigma2) if lazy else 1 / (eta_divisor * target_op)
        return cls(
            gamma_sigma2=float(gs),
            gamma_w=float(gw),
            d=d,
            sigma2=sigma2,
            w=int(w_real),
            eta=eta,
            region="lazy" if lazy else "active",
            below_red=2 * gs + gw < 0,
            line_distance=(gs + gw - 1) / math.sqrt(2),
        )

    @property
    def sigma2_w(self) -> float:
        return self.sigma2 * self.w

    def as_dict(self) -> dict:
        return {**asdict(self), "sigma2_w": self.sigma2_w}


def sample_gram_init(d: int, w: int, sigma2: float, rng: np.random.Generator):
    """(A₀, P₀, Q₀) = (W₂W₁, W₂W₂ᵀ, W₁ᵀW₁) at an N(0, σ²) init, in float64 numpy (d, d) each.

    [[P, A], [Aᵀ, Q]]/σ² = M Mᵀ with M = [Z₂; Z₁ᵀ] ∈ R^{2d×w} Gaussian, i.e. Wishart(w, I_{2d});
    Bartlett: M Mᵀ ~ L Lᵀ with L lower triangular, L_ii = √χ²(w − i), L_ij ~ N(0, 1) (i > j).
    For w < 2d the Gaussian M is drawn explicitly.
    """
    p = 2 * d
    if w < p:
        m = rng.standard_normal((p, w))
        gram = m @ m.T
    else:
        low = np.tril(rng.standard_normal((p, p)), -1)
        low[np.diag_indices(p)] = np.sqrt(rng.chisquare(w - np.arange(p)))
        gram = low @ low.T
    gram *= sigma2
    return gram[:d, d:].copy(), gram[:d, :d].copy(), gram[d:, d:].copy()


def shifted_psd_sqrt(m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(M + c²I)^{1/2} for symmetric PSD M (..., d, d) by one eigendecomposition; c: (..., 1, 1)."""
    evals, vecs = torch.linalg.eigh(m)
    root = torch.sqrt(evals.clamp_min(0) + c.squeeze(-1) ** 2)  # (..., d)
    return (vecs * root.unsqueeze(-2)) @ vecs.mT


def sc_step(b, y, eta, c):
    """One Euler step of the self-consistent dynamics (paper eq. (1)), batched (..., d, d):

    B' = B − η[(BBᵀ + c²I)^{1/2}(B − Y) + (B − Y)(BᵀB + c²I)^{1/2}],  c = σ²w (..., 1, 1).

    One eigendecomposition BBᵀ = U diag(λ) Uᵀ serves both roots: the left one is
    U diag(√(λ+c²)) Uᵀ and, by the push-through identity f(BᵀB) = cI + Bᵀ h(BBᵀ) B with
    h(λ) = (√(λ+c²) − c)/λ = 1/(√(λ+c²) + c), the right one needs no second decomposition.
    Returns (B', singular values of B descending (..., d)).
    """
    g = b - y
    lam, u = torch.linalg.eigh(b @ b.mT)
    lam = lam.clamp_min(0)
    c2 = c.squeeze(-1) ** 2  # (..., 1)
    root = torch.sqrt(lam + c2)
    left = (u * root.unsqueeze(-2)) @ u.mT
    h = (u * (1 / (root + c.squeeze(-1))).unsqueeze(-2)) @ u.mT
    right_g = c * g + ((g @ b.mT) @ h) @ b  # G·(BᵀB + c²I)^{1/2}
    return b - eta * (left @ g + right_g), torch.sqrt(lam).flip(-1)


def gram_spectrum(a: torch.Tensor) -> torch.Tensor:
    """Singular values of A (..., d, d), descending, as √eig(AᵀA) (2.5× cheaper than an SVD here;
    accurate to about √eps·s₁ in absolute terms, plenty for stable ranks and the top values)."""
    return torch.sqrt(torch.linalg.eigvalsh(a.mT @ a).clamp_min(0)).flip(-1)


def early_stop_index(train: np.ndarray, test: np.ndarray) -> int:
    """The notebook's stopping iteration: train < 1e-3; test rose 3 logs in a row (i > 3);
    or |Δtrain| < 2e-4 after a drop > 1e-2. The last index when none fires."""
    for i in range(len(train)):
        if train[i] < 1e-3:
            return i
        if i > 3:
            if test[i - 2] < test[i - 1] < test[i]:
                return i
            if abs(train[i] - train[i - 1]) < 2e-4 and train[0] - train[i] > 1e-2:
                return i
    return len(train) - 1


def first_crossing(traj: np.ndarray, fraction: float) -> np.ndarray:
    """Per column of traj (T+1, m): first iteration with value ≥ fraction × the final value."""
    reached = traj >= fraction * traj[-1:]
    return np.argmax(reached, axis=0)


@dataclass(frozen=True)
class SimSettings:
    """How :func:`simulate` runs: ``n_iters`` GD/SC steps, the GD implementation and update
    order, how many top singular values to keep, η halvings on divergence, batch size.

    ``twin_update``: when set and different from ``gd_update``, every point also runs a twin GD
    from the same init with that update order (same η), whose only output is its gap to the
    self-consistent dynamics (``twin_gap``); None: no twin (``twin_gap`` is the main gap)."""

    n_iters: int
    gd_impl: str = "gram"
    gd_update: str = "sequential"
    twin_update: str | None = None
    n_keep: int = 12
    max_eta_halvings: int = 3
    batch_points: int = 36
    max_wd: float = 2e7


def _has_twin(st: SimSettings) -> bool:
    return st.twin_update is not None and st.twin_update != st.gd_update


def _init_states(points, problem, st: SimSettings, rng, generator):
    """Initial GD states, drawn on the CPU (numpy ``rng`` / torch ``generator``), then moved to
    the problem's device."""
    d, dtype, dev = problem.target.shape[0], problem.target.dtype, problem.target.device
    states = []
    for pt in points:
        if st.gd_impl == "gram":
            init = sample_gram_init(d, pt.w, pt.sigma2, rng)
            states.append(tuple(torch.from_numpy(x).to(dtype=dtype, device=dev) for x in init))
        elif st.gd_impl == "factors":
            if pt.w * d > st.max_wd:
                raise ValueError(
                    f"gd_impl='factors' needs w·d <= max_wd={st.max_wd:g}; point "
                    f"({pt.gamma_sigma2}, {pt.gamma_w}) has w·d = {pt.w * d:g}; use gd_impl='gram'"
                )
            s = math.sqrt(pt.sigma2)
            w1 = s * torch.randn(pt.w, d, generator=generator, dtype=torch.float64)
            w2 = s * torch.randn(d, pt.w, generator=generator, dtype=torch.float64)
            states.append((w1.to(dtype=dtype, device=dev), w2.to(dtype=dtype, device=dev)))
        else:
            raise ValueError(f"gd_impl must be 'gram' or 'factors', got {st.gd_impl!r}")
    return states


def _state(states, st: SimSettings, y: torch.Tensor, eta: torch.Tensor):
    """The stacked GD state of a batch of points and its optimizer factory for the engine; with
    a twin (:func:`_has_twin`) the n points are followed by their n twins (same init and η)."""
    update = st.gd_update
    if _has_twin(st):
        states, eta = list(states) * 2, torch.cat([eta, eta])
        update = (st.gd_update,) * (len(states) // 2) + (st.twin_update,) * (len(states) // 2)
    if st.gd_impl == "gram":
        model = GramState(*(torch.stack([s[i] for s in states]) for i in range(3)))
        return model, lambda params: GramGD(params, eta=eta, update=update)
    if len({s[0].shape for s in states}) != 1:
        raise ValueError("gd_impl='factors' batches points of one width only")
    model = FactorState(torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states]))
    return model, lambda params: FactorGD(params, y=y, eta=eta, update=update)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


class _Trajectories:
    """Engine callback at every iteration: the GD metrics of the batch, then one Euler step of
    the self-consistent dynamics B (side by side with GD). A member whose iterate leaves the
    float range is zeroed (GD state and B) and marked diverged, so the batch stays finite.
    With a twin (the last n members of the model) only its gap to B is recorded (``twin_gap``);
    a twin is diverged when it, or its point, is."""

    def __init__(self, points, problem, st: SimSettings, eta, b) -> None:
        d, dt = problem.target.shape[0], problem.observed.dtype
        self.y, self.target, self.t_max, self.eta, self.b = (
            problem.observed,
            problem.target,
            st.n_iters,
            eta,
            b,
        )
        dev = problem.observed.device
        self.c = torch.tensor([p.sigma2_w for p in points], dtype=dt, device=dev).view(-1, 1, 1)
        n, self.d, self.dt, self.twin = len(points), d, dt, _has_twin(st)
        self.n = n
        self.y_norm = float(torch.linalg.matrix_norm(self.y))
        names = ("train", "test", "sc_test", "gap", "gap_y", "twin_gap", "srank", "rank")
        self.out = {k: np.zeros((n, self.t_max + 1)) for k in names}
        self.keep = min(st.n_keep, d)
        self.out["sv"] = np.zeros((n, self.t_max + 1, self.keep))
        self.out["sc_sv"] = np.zeros((n, self.t_max + 1, self.keep))
        self.diverged = np.zeros(n, dtype=bool)
        self.twin_diverged = np.zeros(n, dtype=bool)
        self.big = math.sqrt(torch.finfo(dt).max) / (4 * d)  # beyond it BBᵀ overflows

    @torch.no_grad()
    def __call__(self, state) -> None:
        t, model, out, norm = state.step, state.model, self.out, torch.linalg.matrix_norm
        a_all, b, n = model.product(), self.b, self.n
        finite = (a_all.abs().flatten(1).amax(1) < self.big) & state.active.to(a_all.device)
        ok = finite[:n] & (b.abs().flatten(1).amax(1) < self.big)  # NaN compares False
        ok_all = torch.cat([ok, finite[n:] & ok]) if self.twin else ok  # a frozen member too
        self.diverged |= ~_np(ok)
        if self.twin:
            self.twin_diverged |= ~_np(ok_all[n:])
        if not ok_all.all():
            for prm in model.parameters():  # .data: the step's graph is already built
                prm.data.masked_fill_(~ok_all.view(-1, 1, 1), 0.0)
            a_all, b = model.product(), b.masked_fill(~ok.view(-1, 1, 1), 0.0)
        a, tiny = a_all[:n], torch.finfo(self.dt).tiny
        s = gram_spectrum(a)  # (n, d)
        d2 = self.d**2
        out["train"][:, t] = _np(norm(a - self.y) ** 2 / d2)
        out["test"][:, t] = _np(norm(a - self.target) ** 2 / d2)
        out["sc_test"][:, t] = _np(norm(b - self.target) ** 2 / d2)
        gap = norm(a - b)
        out["gap"][:, t] = _np(gap / norm(a).clamp_min(tiny))
        out["gap_y"][:, t] = _np(gap / self.y_norm)
        if self.twin:
            a_tw = a_all[n:]
            out["twin_gap"][:, t] = _np(norm(a_tw - b) / norm(a_tw).clamp_min(tiny))
        else:
            out["twin_gap"][:, t] = out["gap"][:, t]
        out["srank"][:, t] = _np(stable_rank(s))
        out["rank"][:, t] = _np(numerical_rank(s, "mixed_dynamics"))
        out["sv"][:, t] = _np(s[:, : self.keep])
        if t < self.t_max:
            b, s_b = sc_step(b, self.y, self.eta, self.c)
            out["sc_sv"][:, t] = _np(s_b[:, : self.keep])
        else:
            out["sc_sv"][:, t] = _np(gram_spectrum(b)[:, : self.keep])
        self.b = b


def _run_batch(states, points, problem, st: SimSettings, eta_scale):
    """GD (through the engine) and SC side by side for ``st.n_iters`` steps; per-point numpy
    trajectories."""
    dt, dev = problem.observed.dtype, problem.observed.device
    eta = [p.eta * s for p, s in zip(points, eta_scale)]
    eta = torch.tensor(eta, dtype=dt, device=dev).view(-1, 1, 1)
    model, optimizer = _state(states, st, problem.observed, eta)
    with torch.no_grad():
        b = model.product()[: len(points)].clone()
    traj = _Trajectories(points, problem, st, eta, b)
    y = problem.observed

    def loss_fn(m) -> torch.Tensor:  # C = ½‖A − Y‖² per point; ∂C/∂A = A − Y
        return 0.5 * (m.product() - y).square().sum((-2, -1))

    train(model, loss_fn, optimizer=optimizer, steps=st.n_iters, log_at=1, callbacks=[traj],
          on_diverge="stop")  # fmt: skip
    out, n = traj.out, len(points)
    return [
        {k: v[i] for k, v in out.items()}
        | {"diverged": bool(traj.diverged[i]), "twin_diverged": bool(traj.twin_diverged[i])}
        for i in range(n)
    ]


def simulate(
    points, problem, st: SimSettings, *, rng: np.random.Generator, generator: torch.Generator
) -> list[dict]:
    """GD and the discretized SC dynamics for every point (batched); η is halved on divergence.

    Returns one dict per point of numpy trajectories (index = iteration 0..n_iters): ``train``,
    ``test``, ``sc_test``, ``gap`` (‖A_GD − A_SC‖_F/‖A_GD‖_F), ``gap_y`` (÷‖Y‖_F), ``srank``,
    ``rank`` (s_i > s₁/5), ``sv``/``sc_sv`` (top singular values), ``twin_gap`` (the twin's
    gap, see :class:`SimSettings`), plus ``eta``, ``eta_halvings``, ``diverged`` (still
    diverged after the last halving) and ``twin_diverged``. A point whose run or twin diverged
    is rerun at half the η. Everything runs on the problem's device (:func:`make_problem`).
    """
    states = _init_states(points, problem, st, rng, generator)
    scale = np.ones(len(points))
    results: list[dict] = [{} for _ in points]
    todo = list(range(len(points)))
    batch = st.batch_points if st.gd_impl == "gram" else 1  # factors: one width per batch
    for halving in range(st.max_eta_halvings + 1):
        for start in range(0, len(todo), batch):
            idx = todo[start : start + batch]
            trajs = _run_batch(
                [states[i] for i in idx], [points[i] for i in idx], problem, st, scale[idx]
            )
            for i, tr in zip(idx, trajs):
                results[i] = tr | {"eta": points[i].eta * scale[i], "eta_halvings": halving}
        todo = [i for i in todo if results[i]["diverged"] or results[i]["twin_diverged"]]
        if not todo:
            break
        scale[todo] /= 2
    return results
