"""Stationarity of a trained model: the gradient norm of the training objective.

Checks that rely on a critical point (balancedness, min-norm identities, the Hamiltonian,
criticality after pruning) report ‖∇J‖ for the same objective the engine minimizes,
J = loss_fn(model) + l2·Σ_{penalized}‖W‖² (see :func:`rankscope.train.train`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["gradient_norm"]


def gradient_norm(
    model: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    *,
    l2: float = 0.0,
    l2_params: str = "weights",
) -> float:
    """‖∇_θ J‖_2 over the parameters that require grad (``.grad`` fields untouched).

    ``l2_params`` as in :func:`rankscope.train.train`: ``"weights"`` (≥ 2-D parameters) or
    ``"all"``.
    """
    if l2_params not in ("weights", "all"):
        raise ValueError(f"l2_params must be 'weights' or 'all', got {l2_params!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no parameters requiring grad")
    with torch.enable_grad():
        obj = loss_fn(model)
        if l2:
            pen = [p for p in params if p.ndim >= 2] if l2_params == "weights" else params
            obj = obj + l2 * sum((p * p).sum() for p in pen)
        grads = torch.autograd.grad(obj, params, allow_unused=True)
    sq = sum(float((g.double() ** 2).sum()) for g in grads if g is not None)
    return sq**0.5
