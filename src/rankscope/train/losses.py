"""Losses that reduce the sample dimension and keep leading (ensemble) dimensions.

Each takes predictions (..., B, k) and targets, and returns a tensor of shape (...): a scalar
for one network, (E,) for an ensemble. The same function therefore serves
:func:`rankscope.train.train` for both. ``weights`` (..., B)
replaces the mean over B by a weighted sum (used for padded per-member batches).
"""

from __future__ import annotations

import torch

__all__ = ["SupervisedLoss", "cross_entropy", "half_sse", "mse"]


def _reduce(per_sample: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean(dim=-1)
    return (per_sample * weights).sum(dim=-1)


def mse(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None):
    """(1/B)·Σ_b ‖pred_b − target_b‖²: pred (..., B, k), target broadcastable -> (...).

    Measured on CPU: summing over B·k at once is 3× faster than reducing a short last dim
    (k = 10) first, and r·r back-propagates faster than r.square() (whose backward calls pow).
    """
    if pred.shape[-1:] != target.shape[-1:] or pred.ndim < 2:
        raise ValueError(f"mse: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    r = pred - target
    sq = r * r  # (..., B, k)
    if weights is None:
        return sq.flatten(-2).sum(dim=-1) / pred.shape[-2]
    return _reduce(sq.sum(dim=-1), weights)


def half_sse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½‖pred − target‖_F² over the last two dims: (..., m, n) -> (...) (linear.md's C(A))."""
    r = pred - target
    return 0.5 * (r * r).sum(dim=(-2, -1))


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean softmax cross-entropy: logits (..., B, K), int labels (B,) or (..., B) -> (...)."""
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"cross_entropy: labels must be integer class ids, got {labels.dtype}")
    labels = labels.to(torch.int64).expand(logits.shape[:-1]).unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, labels).squeeze(-1)  # (..., B)
    return _reduce(nll, weights)


class SupervisedLoss:
    """``loss(model, (x, y)) = name(model(x), y)``: a named ``loss_fn`` for
    :func:`rankscope.train.train`, the same as ``lambda m, b: mse(m(b[0]), b[1])``.

    ``name``: ``"mse"`` (:func:`mse`) or ``"cross_entropy"`` (:func:`cross_entropy`). (Its
    hand-derived backward was removed in issue 8: under 2× over autograd on the experiments'
    shapes, ``benchmarks/bench_closed_form.py``.)
    """

    NAMES = ("mse", "cross_entropy")

    def __init__(self, name: str) -> None:
        if name not in self.NAMES:
            raise ValueError(f"unknown supervised loss {name!r}; expected one of {self.NAMES}")
        self.name = name
        self.fn = mse if name == "mse" else cross_entropy

    def __repr__(self) -> str:
        return f"SupervisedLoss({self.name!r})"

    def __call__(self, model, batch) -> torch.Tensor:
        x, y = batch[0], batch[1]
        return self.fn(model(x), y)
