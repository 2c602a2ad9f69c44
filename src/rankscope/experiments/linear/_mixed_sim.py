"""Simulation core of ``mixed-dynamics``: GD on d×d statistics and the self-consistent dynamics.

Notation (papers/linear.md § mixed-dynamics, notebook ``aranguri/phase-diagram``):
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

__all__ = [
    "Point",
    "Problem",
    "SimSettings",
    "early_stop_index",
    "factor_gd_step",
    "first_crossing",
    "gram_gd_step",
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
        s = singular_values(self.target)
        k = int((s > s[0] * 1e-6).sum())
        return {
            "d": int(self.target.shape[0]),
            "stable_rank": float(stable_rank(s)),
            "op_norm": float(s[0]),
            "singular_values": tuple(float(x) for x in s[: k + 1]),
            "observed_singular_values": tuple(
                float(x) for x in singular_values(self.observed)[: k + 3]
            ),
        }


def make_problem(d: int, k: int, *, generator: torch.Generator, dtype: torch.dtype) -> Problem:
    cd = k**-0.25 * torch.randn(2, d, k, generator=generator, dtype=torch.float64)
    target = cd[0] @ cd[1].T  # (d, d), rank k
    noise = torch.randn(d, d, generator=generator, dtype=torch.float64)
    op = float(torch.linalg.matrix_norm(target, ord=2))
    return Problem(target.to(dtype), (target + noise).to(dtype), op)


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


def gram_gd_step(a, p, q, y, eta, update: str = "sequential"):
    """One GD step of W₁, W₂ written in (A, P, Q) = (W₂W₁, W₂W₂ᵀ, W₁ᵀW₁); batched (..., d, d).

    With G = A − Y. ``sequential`` (the notebook): W₁' = W₁ − ηW₂ᵀG, W₂' = W₂ − ηG W₁'ᵀ, so
    A₁ = A − ηPG, Q' = Q − η(AᵀG + GᵀA) + η²GᵀPG, A' = A₁ − ηGQ',
    P' = P − η(GA₁ᵀ + A₁Gᵀ) + η²GQ'Gᵀ. ``simultaneous``: A' = A − ηPG − ηGQ + η²GAᵀG,
    P' = P − η(GAᵀ + AGᵀ) + η²GQGᵀ, Q' as above. [derived; exact]
    """
    g = a - y
    gt = g.mT
    if update == "sequential":
        a1 = a - eta * (p @ g)
        q1 = q - eta * (a.mT @ g + gt @ a) + eta**2 * (gt @ p @ g)
        a2 = a1 - eta * (g @ q1)
        p1 = p - eta * (g @ a1.mT + a1 @ gt) + eta**2 * (g @ q1 @ gt)
        return a2, p1, q1
    if update == "simultaneous":
        a2 = a - eta * (p @ g + g @ q) + eta**2 * (g @ a.mT @ g)
        p1 = p - eta * (g @ a.mT + a @ gt) + eta**2 * (g @ q @ gt)
        q1 = q - eta * (a.mT @ g + gt @ a) + eta**2 * (gt @ p @ g)
        return a2, p1, q1
    raise ValueError(f"update must be 'sequential' or 'simultaneous', got {update!r}")


def factor_gd_step(w1, w2, y, eta, update: str = "sequential"):
    """One explicit GD step on W₁ (w, d), W₂ (d, w) for ½‖W₂W₁ − Y‖_F² (the notebook's loop)."""
    g = w2 @ w1 - y
    w1_new = w1 - eta * (w2.T @ g)
    if update == "sequential":
        return w1_new, w2 - eta * (g @ w1_new.T)
    if update == "simultaneous":
        return w1_new, w2 - eta * (g @ w1.T)
    raise ValueError(f"update must be 'sequential' or 'simultaneous', got {update!r}")


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
    order, how many top singular values to keep, η halvings on divergence, batch size."""

    n_iters: int
    gd_impl: str = "gram"
    gd_update: str = "sequential"
    n_keep: int = 12
    max_eta_halvings: int = 3
    batch_points: int = 36
    max_wd: float = 2e7


def _init_states(points, problem, st: SimSettings, rng, generator):
    d, dtype = problem.target.shape[0], problem.target.dtype
    states = []
    for pt in points:
        if st.gd_impl == "gram":
            init = sample_gram_init(d, pt.w, pt.sigma2, rng)
            states.append(tuple(torch.from_numpy(x).to(dtype) for x in init))
        elif st.gd_impl == "factors":
            if pt.w * d > st.max_wd:
                raise ValueError(
                    f"gd_impl='factors' needs w·d <= max_wd={st.max_wd:g}; point "
                    f"({pt.gamma_sigma2}, {pt.gamma_w}) has w·d = {pt.w * d:g}; use gd_impl='gram'"
                )
            s = math.sqrt(pt.sigma2)
            w1 = s * torch.randn(pt.w, d, generator=generator, dtype=torch.float64)
            w2 = s * torch.randn(d, pt.w, generator=generator, dtype=torch.float64)
            states.append((w1.to(dtype), w2.to(dtype)))
        else:
            raise ValueError(f"gd_impl must be 'gram' or 'factors', got {st.gd_impl!r}")
    return states


class _GD:
    """The GD state of a batch of points: stacked (A, P, Q), or a list of factor pairs."""

    def __init__(self, states, st: SimSettings):
        self.st = st
        if st.gd_impl == "gram":
            self.state = tuple(torch.stack([s[i] for s in states]) for i in range(3))
        else:
            self.state = list(states)

    def product(self) -> torch.Tensor:  # (n, d, d)
        if self.st.gd_impl == "gram":
            return self.state[0]
        return torch.stack([w2 @ w1 for w1, w2 in self.state])

    def step(self, y, eta) -> None:
        if self.st.gd_impl == "gram":
            self.state = gram_gd_step(*self.state, y, eta, self.st.gd_update)
        else:
            self.state = [
                factor_gd_step(w1, w2, y, float(e), self.st.gd_update)
                for (w1, w2), e in zip(self.state, eta.flatten())
            ]

    def zero(self, bad: torch.Tensor) -> None:
        """Zero the diverged members so the batch stays finite (they are recomputed later)."""
        if self.st.gd_impl == "gram":
            self.state = tuple(x.masked_fill(bad.view(-1, 1, 1), 0.0) for x in self.state)
        else:
            self.state = [
                (w1 * 0, w2 * 0) if b else (w1, w2) for (w1, w2), b in zip(self.state, bad.tolist())
            ]


def _run_batch(states, points, problem, st: SimSettings, eta_scale):
    """Simulate GD and SC side by side for ``st.n_iters`` steps; per-point numpy trajectories."""
    d, y, target = problem.target.shape[0], problem.observed, problem.target
    dt, norm, t_max = y.dtype, torch.linalg.matrix_norm, st.n_iters
    eta = torch.tensor([p.eta * s for p, s in zip(points, eta_scale)], dtype=dt).view(-1, 1, 1)
    c = torch.tensor([p.sigma2_w for p in points], dtype=dt).view(-1, 1, 1)
    gd = _GD(states, st)
    b = gd.product().clone()
    n, y_norm = len(points), float(norm(y))
    names = ("train", "test", "sc_test", "gap", "gap_y", "srank", "rank")
    out = {k: np.zeros((n, t_max + 1)) for k in names}
    keep = min(st.n_keep, d)
    out["sv"] = np.zeros((n, t_max + 1, keep))
    out["sc_sv"] = np.zeros((n, t_max + 1, keep))
    diverged = np.zeros(n, dtype=bool)
    big = math.sqrt(torch.finfo(dt).max) / (4 * d)  # beyond it BBᵀ overflows: call it diverged
    for t in range(t_max + 1):
        a = gd.product()
        ok = (a.abs().flatten(1).amax(1) < big) & (b.abs().flatten(1).amax(1) < big)  # NaN: False
        diverged |= ~ok.numpy()
        if not ok.all():
            gd.zero(~ok)
            a, b = gd.product(), b.masked_fill(~ok.view(-1, 1, 1), 0.0)
        s = gram_spectrum(a)  # (n, d)
        out["train"][:, t] = (norm(a - y) ** 2 / d**2).numpy()
        out["test"][:, t] = (norm(a - target) ** 2 / d**2).numpy()
        out["sc_test"][:, t] = (norm(b - target) ** 2 / d**2).numpy()
        gap = norm(a - b)
        out["gap"][:, t] = (gap / norm(a).clamp_min(torch.finfo(dt).tiny)).numpy()
        out["gap_y"][:, t] = (gap / y_norm).numpy()
        out["srank"][:, t] = stable_rank(s).numpy()
        out["rank"][:, t] = numerical_rank(s, "mixed_dynamics").numpy()
        out["sv"][:, t] = s[:, :keep].numpy()
        if t < t_max:
            gd.step(y, eta)
            b, s_b = sc_step(b, y, eta, c)
            out["sc_sv"][:, t] = s_b[:, :keep].numpy()
    out["sc_sv"][:, t_max] = gram_spectrum(b)[:, :keep].numpy()
    return [{k: v[i] for k, v in out.items()} | {"diverged": bool(diverged[i])} for i in range(n)]


def simulate(
    points, problem, st: SimSettings, *, rng: np.random.Generator, generator: torch.Generator
) -> list[dict]:
    """GD and the discretized SC dynamics for every point (batched); η is halved on divergence.

    Returns one dict per point of numpy trajectories (index = iteration 0..n_iters): ``train``,
    ``test``, ``sc_test``, ``gap`` (‖A_GD − A_SC‖_F/‖A_GD‖_F), ``gap_y`` (÷‖Y‖_F), ``srank``,
    ``rank`` (s_i > s₁/5), ``sv``/``sc_sv`` (top singular values), plus ``eta``,
    ``eta_halvings`` and ``diverged`` (still diverged after the last halving).
    """
    states = _init_states(points, problem, st, rng, generator)
    scale = np.ones(len(points))
    results: list[dict] = [{} for _ in points]
    todo = list(range(len(points)))
    for halving in range(st.max_eta_halvings + 1):
        for start in range(0, len(todo), st.batch_points):
            idx = todo[start : start + st.batch_points]
            trajs = _run_batch(
                [states[i] for i in idx], [points[i] for i in idx], problem, st, scale[idx]
            )
            for i, tr in zip(idx, trajs):
                results[i] = tr | {"eta": points[i].eta * scale[i], "eta_halvings": halving}
        todo = [i for i in todo if results[i]["diverged"]]
        if not todo:
            break
        scale[todo] /= 2
    return results
