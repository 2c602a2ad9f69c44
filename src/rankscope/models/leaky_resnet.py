"""Leaky ResNets, discretized (Jacot & Kaiser, arXiv 2405.17573; docs/results.md `leaky-resnet`).

Continuous model ∂_pα_p = −L̃·α_p + W_pσ̃(α_p), p ∈ [0, 1], with σ̃(z) = ([z]_+, 1) (the last
column of W_p is the bias). Discretized with steps ρ_ℓ > 0, Σρ_ℓ = 1:

    α_ℓ = (1 − ρ_ℓL̃)·α_{ℓ−1} + ρ_ℓ·W_ℓσ̃(α_{ℓ−1}),   ℓ = 1..L,

and objective C(α_L(X)) + (λ/(2L̃))·Σ_ℓ ρ_ℓ‖W_ℓ‖_F², C the mean squared error
(1/N)Σ_i‖f*(x_i) − f(x_i)‖². ρ_ℓL̃ < 1 is required (ρ_ℓL̃ ≥ 1 flips the sign of the leak).
Optional input map U (w × d_in) and output map V (d_out × w), learned or fixed; by default
they are not regularized (the paper does not say). The λ convention is a recorded parameter:
``lambda_over_Ltilde`` reads the given value as λ/L̃ (so λ = value·L̃, the docs/results.md CPU
default), ``lambda`` reads it as λ itself (see docs/decisions.md).

Row layout: representations are (N, w), so W_ℓσ̃(α) is σ̃(α) @ W_ℓᵀ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "LAMBDA_CONVENTIONS",
    "MAP_KINDS",
    "STEP_SCHEMES",
    "LeakyResNet",
    "adaptive_steps",
    "check_steps",
    "step_sizes",
]

STEP_SCHEMES = ("equidistant", "irregular", "adaptive")
LAMBDA_CONVENTIONS = ("lambda_over_Ltilde", "lambda")
MAP_KINDS = ("learned", "fixed", "identity")


def check_steps(rho: torch.Tensor, leak: float) -> torch.Tensor:
    """Validate steps: 1-D, all > 0, Σρ_ℓ = 1 (to 1e-9) and every ρ_ℓ·L̃ < 1; returns ρ."""
    rho = torch.as_tensor(rho, dtype=torch.float64)
    if rho.ndim != 1 or rho.numel() == 0 or not bool(torch.isfinite(rho).all()):
        raise ValueError(f"steps ρ must be a finite 1-D tensor, got {rho!r}")
    if bool((rho <= 0).any()):
        raise ValueError(f"steps ρ must all be > 0, got min {float(rho.min())}")
    if abs(float(rho.sum()) - 1.0) > 1e-9:
        raise ValueError(f"steps ρ must sum to 1, got {float(rho.sum())!r}")
    worst = int(torch.argmax(rho))
    if float(rho[worst]) * leak >= 1:
        raise ValueError(
            f"ρ_ℓ·L̃ must be < 1 for every layer (ρ_ℓ·L̃ >= 1 flips the sign of the leak term); "
            f"layer {worst + 1} has ρ = {float(rho[worst]):.4g}, L̃ = {leak:g}, "
            f"ρ·L̃ = {float(rho[worst]) * leak:.4g}. Use more layers (L > L̃ for equidistant "
            f"steps) or a smaller L̃"
        )
    return rho


def step_sizes(scheme: str, depth: int, leak: float, *, irregularity: float = 0.5) -> torch.Tensor:
    """ρ (L,) for ``equidistant`` (1/L), ``irregular`` ((1/L)(1 + a(1/4 − |ℓ/L − 1/2|)),
    a = ``irregularity`` ∈ [0, 1), renormalized to sum 1: the printed formula sums to 1 only
    up to O(1/L)) or ``adaptive`` (starts equidistant; see :func:`adaptive_steps`).
    Raises when some ρ_ℓL̃ ≥ 1."""
    if scheme not in STEP_SCHEMES:
        raise ValueError(f"unknown step scheme {scheme!r}; expected one of {STEP_SCHEMES}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth L must be an int >= 1, got {depth!r}")
    if not 0 <= irregularity < 1:
        raise ValueError(f"irregularity a must lie in [0, 1), got {irregularity!r}")
    rho = torch.full((depth,), 1.0 / depth, dtype=torch.float64)
    if scheme == "irregular":
        ell = torch.arange(1, depth + 1, dtype=torch.float64)
        rho = rho * (1 + irregularity * (0.25 - (ell / depth - 0.5).abs()))
        rho = rho / rho.sum()
    return check_steps(rho, leak)


def adaptive_steps(
    reps: Sequence[torch.Tensor], rho: torch.Tensor, leak: float, *, mix: float = 1.0
) -> torch.Tensor:
    """One adaptive update (2405.17573): c_ℓ = ‖A_ℓ − A_{ℓ−1}‖/(ρ_ℓ‖A_ℓ‖), target
    ρ*_ℓ = c_ℓ⁻¹/Σ_i c_i⁻¹ (equal relative change per layer), ρ ← (1 − mix)ρ + mix·ρ*.

    ``reps`` = [A_0, …, A_L]. The result is checked (ρ_ℓL̃ < 1 after every update): a
    violating update raises instead of silently flipping the leak.
    """
    if not 0 < mix <= 1:
        raise ValueError(f"mix must lie in (0, 1], got {mix!r}")
    rho = torch.as_tensor(rho, dtype=torch.float64)
    if len(reps) != rho.numel() + 1:
        raise ValueError(f"need L + 1 = {rho.numel() + 1} representations, got {len(reps)}")
    c = []
    for l in range(1, len(reps)):
        diff = float(torch.linalg.vector_norm((reps[l] - reps[l - 1]).double()))
        size = float(torch.linalg.vector_norm(reps[l].double()))
        c.append(max(diff / (float(rho[l - 1]) * max(size, 1e-300)), 1e-300))
    inv = 1.0 / torch.tensor(c, dtype=torch.float64)
    target = inv / inv.sum()
    new = (1 - mix) * rho + mix * target
    return check_steps(new / new.sum(), leak)


def _map(kind: str, n_out: int, n_in: int, generator, dtype, what: str):
    if kind not in MAP_KINDS:
        raise ValueError(f"unknown {what} map {kind!r}; expected one of {MAP_KINDS}")
    if kind == "identity":
        if n_out != n_in:
            raise ValueError(f"an identity {what} map needs equal sizes, got {n_out} and {n_in}")
        return torch.eye(n_out, dtype=dtype)
    return torch.randn((n_out, n_in), generator=generator, dtype=dtype) / math.sqrt(n_in)


class LeakyResNet(nn.Module):
    """Discretized leaky ResNet d_in → (U) → w → … → w → (V) → d_out (module docstring).

    ``leak`` is L̃; ``steps`` a scheme of :data:`STEP_SCHEMES` or explicit ρ. ``lam`` with
    ``lambda_convention`` gives λ (:attr:`lam_eff`). W_ℓ (w, w+1) start as
    N(0, 2(gain·L̃)²/(w+1)) so that ‖W_ℓσ̃(α)‖ ≈ L̃‖α‖ balances the leak at init. Maps:
    ``learned`` (parameters), ``fixed`` (random buffers), ``identity``.

    With learned maps and ``regularize_maps=False`` (the default) the penalized objective
    has no minimizer that uses a bias: U → cU, V → V/c and the bias column of every W_ℓ → c·b
    leave the output unchanged and scale the bias cost by c², so training drifts toward
    c → 0. Pass ``regularize_maps=True`` (as the ``leaky-resnet`` experiment does,
    docs/decisions.md 52) or fixed maps to fit a critical point.

    >>> g = torch.Generator().manual_seed(0)
    >>> net = LeakyResNet(3, 2, width=5, depth=4, leak=2.0, generator=g)
    >>> out, reps = net.forward_with_reps(torch.ones(6, 3, dtype=torch.float64))
    >>> out.shape, len(reps), reps[0].shape
    (torch.Size([6, 2]), 5, torch.Size([6, 5]))
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        *,
        width: int,
        depth: int,
        leak: float,
        steps: str | Sequence[float] | torch.Tensor = "equidistant",
        irregularity: float = 0.5,
        input_map: str = "learned",
        output_map: str = "learned",
        regularize_maps: bool = False,
        lam: float = 1e-3,
        lambda_convention: str = "lambda_over_Ltilde",
        init_gain: float = 1.0,
        generator: torch.Generator | None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if not (isinstance(leak, int | float) and 0 < leak < math.inf):
            raise ValueError(f"leak L̃ must be a finite number > 0, got {leak!r}")
        if lambda_convention not in LAMBDA_CONVENTIONS:
            raise ValueError(
                f"unknown lambda_convention {lambda_convention!r}; expected one of "
                f"{LAMBDA_CONVENTIONS}"
            )
        if not (isinstance(lam, int | float) and 0 <= lam < math.inf):
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        for name, v in (("d_in", d_in), ("d_out", d_out), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        self.leak, self.width = float(leak), width
        self.lam, self.lambda_convention = float(lam), lambda_convention
        self.regularize_maps = bool(regularize_maps)
        self.scheme = steps if isinstance(steps, str) else "explicit"
        if isinstance(steps, str):
            rho = step_sizes(steps, depth, self.leak, irregularity=irregularity)
        else:
            rho = check_steps(torch.as_tensor(steps, dtype=torch.float64), self.leak)
            if rho.numel() != depth:
                raise ValueError(f"got {rho.numel()} steps for depth {depth}")
        self.register_buffer("rho", rho.to(dtype))
        std = math.sqrt(2.0 / (width + 1)) * init_gain * self.leak
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn((width, width + 1), generator=generator, dtype=dtype) * std)
            for _ in range(depth)
        )
        u = _map(input_map, width, d_in, generator, dtype, "input")
        v = _map(output_map, d_out, width, generator, dtype, "output")
        self.input_kind, self.output_kind = input_map, output_map
        if input_map == "learned":
            self.u = nn.Parameter(u)
        else:
            self.register_buffer("u", u)
        if output_map == "learned":
            self.v = nn.Parameter(v)
        else:
            self.register_buffer("v", v)

    @property
    def depth(self) -> int:
        return len(self.weights)

    @property
    def lam_eff(self) -> float:
        """λ under the recorded convention (``lambda_over_Ltilde``: λ = lam·L̃)."""
        return self.lam * self.leak if self.lambda_convention == "lambda_over_Ltilde" else self.lam

    def set_steps(self, rho: torch.Tensor) -> None:
        """Replace ρ (validated: positive, Σ = 1, ρ_ℓL̃ < 1)."""
        rho = check_steps(torch.as_tensor(rho, dtype=torch.float64), self.leak)
        if rho.numel() != self.depth:
            raise ValueError(f"got {rho.numel()} steps for depth {self.depth}")
        # a new tensor, not an in-place copy: a graph built with the old ρ stays valid
        self.rho = rho.to(dtype=self.rho.dtype, device=self.rho.device)

    @property
    def p(self) -> torch.Tensor:
        """p_ℓ = ρ_1 + … + ρ_ℓ for ℓ = 0..L (p_0 = 0), float64."""
        r = self.rho.detach().double()
        return torch.cat([r.new_zeros(1), torch.cumsum(r, 0)])

    def forward_with_reps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(f(x), [A_0, …, A_L]) with A_ℓ = α_{p_ℓ}(x) of shape (N, w), graphs kept."""
        return self.propagate(x @ self.u.mT)

    def propagate(self, a: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(f, [A_0, …, A_L]) from a given A_0 (N, w): the residual layers and the output map."""
        reps = [a]
        ones = torch.ones_like(a[:, :1])
        for l, w in enumerate(self.weights):
            r = self.rho[l]
            a = (1 - r * self.leak) * a + r * (torch.cat([torch.relu(a), ones], 1) @ w.mT)
            reps.append(a)
        return a @ self.v.mT, reps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_reps(x)[0]

    def penalty(self) -> torch.Tensor:
        """(λ/(2L̃))·Σ_ℓ ρ_ℓ‖W_ℓ‖_F² (+ (λ/(2L̃))(‖U‖² + ‖V‖²) when ``regularize_maps``)."""
        coef = self.lam_eff / (2 * self.leak)
        total = sum(self.rho[l] * (w * w).sum() for l, w in enumerate(self.weights))
        if self.regularize_maps:
            for m in (self.u, self.v):
                if isinstance(m, nn.Parameter):
                    total = total + (m * m).sum()
        return coef * total

    @staticmethod
    def data_cost(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """C = (1/N)·Σ_i ‖y_i − f(x_i)‖² (2405.17573)."""
        return ((out - y) ** 2).sum() / out.shape[0]

    def objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """C(f(X)) + penalty: the loss to hand to :func:`rankscope.train.train` (l2=0)."""
        return self.data_cost(self(x), y) + self.penalty()

    def backward_variables(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """([A_0 … A_L], [B_0 … B_L]) with B_ℓ = −(1/λ)·∂C/∂A_ℓ by autograd of the data
        loss only (definitions §13); detached. Parameter ``.grad`` fields are untouched."""
        if self.lam_eff <= 0:
            raise ValueError("B = −(1/λ)∂C/∂A needs λ > 0")
        with torch.enable_grad():
            a0 = (x @ self.u.mT).detach().requires_grad_(True)
            out, reps = self.propagate(a0)
            grads = torch.autograd.grad(self.data_cost(out, y), reps)
        bs = [-g.detach() / self.lam_eff for g in grads]
        return [a.detach() for a in reps], bs
