"""Optimizers over stacked ensemble parameters (E, ...) with per-member learning rates.

Written by hand (no torch.optim) so that every member has its own learning rate and so that
frozen members (diverged or stopped) keep their parameters and their optimizer state.
The updates reproduce torch's single-network formulas, so member e follows the same
trajectory as :func:`rankscope.train.train` with ``torch.optim.SGD`` / ``torch.optim.Adam``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["BatchedAdam", "BatchedGD"]


def _view(vec: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """(E,) -> (E, 1, …, 1) broadcastable against a stacked parameter p (E, ...)."""
    return vec.view(-1, *([1] * (p.ndim - 1)))


def _masked_grad(p: torch.Tensor, active: torch.Tensor | None) -> torch.Tensor:
    g = p.grad if p.grad is not None else torch.zeros_like(p)
    if active is not None:  # frozen members: zero (their grads may hold NaN from Inf weights)
        g = torch.where(_view(active, p), g, 0.0)
    return g


class BatchedGD:
    """θ_e ← θ_e − η_e ∇_e, for every member e that is active."""

    def __init__(self, params: list[torch.Tensor], lr: torch.Tensor) -> None:
        self.params, self.lr = params, lr
        self._lr = [_view(lr, p).to(dtype=p.dtype, device=p.device) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        """``active`` (E,) bool, or None when every member is active (fast path)."""
        for p, lr in zip(self.params, self._lr):
            mask = None if active is None else active.to(p.device)
            p.addcmul_(lr, _masked_grad(p, mask), value=-1.0)


class BatchedAdam:
    """Adam (Kingma & Ba) per member, with torch.optim.Adam's exact formula:

    m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − (η/(1−β1^t))·m / (√v/√(1−β2^t) + ε)

    The step count t is kept per member, so a frozen member's bias correction also freezes.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        lr: torch.Tensor,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1) or not eps >= 0:
            raise ValueError(
                f"Adam needs 0 <= betas < 1 and eps >= 0, got betas={betas}, eps={eps}"
            )
        self.params, self.lr, self.b1, self.b2, self.eps = params, lr, b1, b2, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros(lr.shape[0], dtype=torch.float64)

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        if active is None:
            self.t += 1
        else:
            self.t += active.to(self.t.dtype)
        t = self.t.clamp_min(1)
        # per member: step size η/(1−β1^t) and √(1−β2^t), as torch computes them (float64)
        step_size = self.lr.to(torch.float64) / (1 - self.b1**t)
        bc2_sqrt = torch.sqrt(1 - self.b2**t)
        for p, m, v in zip(self.params, self.m, self.v):
            act = None if active is None else active.to(p.device)
            g = _masked_grad(p, act)
            if act is None:
                m.lerp_(g, 1 - self.b1)
                v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            else:
                mask = _view(act, p)
                m.copy_(torch.where(mask, torch.lerp(m, g, 1 - self.b1), m))
                v.copy_(torch.where(mask, v * self.b2 + (1 - self.b2) * g * g, v))
            like = {"dtype": p.dtype, "device": p.device}
            denom = (v.sqrt() / _view(bc2_sqrt, p).to(**like)).add_(self.eps)
            size = _view(step_size, p).to(**like)
            if act is not None:
                size = size * _view(act, p).to(p.dtype)
            p.addcdiv_(m * size, denom, value=-1.0)


def check_lr_vector(lr, n: int, what: str = "lr") -> torch.Tensor:
    """A float or n floats -> float64 tensor (n,), all > 0 (or >= 0 for ``l2``)."""
    vec = torch.as_tensor(lr, dtype=torch.float64).flatten()
    if vec.numel() == 1:
        vec = vec.expand(n).clone()
    if vec.numel() != n:
        raise ValueError(
            f"{what} must be one float or {n} floats (one per member), got {vec.numel()}"
        )
    ok = (vec > 0) if what == "lr" else (vec >= 0)
    if not bool(ok.all()) or not all(math.isfinite(x) for x in vec.tolist()):
        bound = "> 0" if what == "lr" else ">= 0"
        raise ValueError(f"every {what} must be finite and {bound}, got {vec.tolist()}")
    return vec
