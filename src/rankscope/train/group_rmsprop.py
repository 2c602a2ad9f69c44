"""GroupRMSprop: one adaptive learning rate shared by every parameter (global RMSprop).

From ``GroupRMSprop`` in ``noamrazin/imp_reg_in_tf`` (``common/train/optim/group_rsmprop.py``),
in the form of docs/results.md:

    v ← α·v + (1 − α)·‖g‖²,     ‖g‖² summed over all parameters of all groups
    θ ← θ − lr·g / (√v̂ + ε),     v̂ = v / (1 − α^t) when ``bias_correction`` (the official code)

The direction is the plain gradient, so the gradient-flow path is kept and only time is
reparametrized. Defaults: lr 1e-2, α 0.99, ε 1e-8 (docs/results.md; the official default is
1e-6), bias correction on. Each group keeps its own lr; the second moment is global.
``members=M``: every parameter has a leading ensemble dimension M and each member keeps its own
second moment (M independent GroupRMSprop runs in one step).
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer

__all__ = ["GroupRMSprop"]


class GroupRMSprop(Optimizer):
    """Global-adaptive RMSprop; ``adjusted_lr`` (lr / (√v̂ + ε) of the first group) is exposed.

    >>> p = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    >>> opt = GroupRMSprop([p], lr=0.1, eps=0.0)
    >>> p.grad = torch.tensor([3.0, 4.0]); opt.step()
    >>> p.data  # v̂ = ‖g‖² = 25 at t = 1, so the step is 0.1·g/5
    tensor([2.9400, 3.9200])
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        *,
        bias_correction: bool = True,
        members: int | None = None,
    ):
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if members is not None and members < 1:
            raise ValueError(f"members must be >= 1 or None, got {members}")
        defaults = {"lr": lr, "alpha": alpha, "eps": eps, "bias_correction": bias_correction}
        super().__init__(params, defaults)
        self.members = members
        self.square_avg = torch.zeros(members or 1, dtype=torch.float64)
        self.steps = 0
        self.adjusted_lr = float("nan")

    def _sq_norm(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """‖g‖² over every parameter, per ensemble member when ``members`` is set: (M,) or (1,)."""
        m = self.members or 1
        if self.members is not None and any(g.shape[:1] != (m,) for g in grads):
            raise ValueError(f"with members={m} every parameter needs a leading dimension {m}")
        return sum(g.detach().double().pow(2).reshape(m, -1).sum(1).cpu() for g in grads)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return loss
        if any(gr.is_sparse for gr in grads):
            raise RuntimeError("GroupRMSprop does not support sparse gradients")
        alpha = self.param_groups[0]["alpha"]
        self.steps += 1
        self.square_avg = alpha * self.square_avg + (1.0 - alpha) * self._sq_norm(grads)
        v_hat = self.square_avg
        if self.param_groups[0]["bias_correction"]:
            v_hat = v_hat / (1.0 - alpha**self.steps)
        for i, group in enumerate(self.param_groups):
            scale = group["lr"] / (v_hat.sqrt() + group["eps"])  # (M,) or (1,)
            if i == 0:
                self.adjusted_lr = float(scale[0]) if self.members is None else scale.clone()
            for p in group["params"]:
                if p.grad is None:
                    continue
                if self.members is None:
                    p.add_(p.grad, alpha=-float(scale[0]))
                else:
                    shaped = scale.to(p.device, p.dtype).reshape(-1, *[1] * (p.ndim - 1))
                    p.sub_(shaped * p.grad)
        return loss

    def state_dict(self):
        out = super().state_dict()
        out["global"] = {"square_avg": self.square_avg.tolist(), "steps": self.steps}
        return out

    def load_state_dict(self, state_dict):
        state_dict = dict(state_dict)
        glob = state_dict.pop("global", {"square_avg": [0.0], "steps": 0})
        super().load_state_dict(state_dict)
        self.square_avg = torch.tensor(glob["square_avg"], dtype=torch.float64).reshape(-1)
        self.steps = int(glob["steps"])
