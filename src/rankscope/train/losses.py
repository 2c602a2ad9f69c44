"""Losses that reduce the sample dimension and keep leading (ensemble) dimensions.

Each takes predictions (..., B, k) and targets, and returns a tensor of shape (...): a scalar
for one network, (E,) for an ensemble. The same function therefore serves
:func:`rankscope.train.train` for both. ``weights`` (..., B)
replaces the mean over B by a weighted sum (used for padded per-member batches).
"""

from __future__ import annotations

import functools

import numpy as np
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
    """½‖pred − target‖_F² over the last two dims: (..., m, n) -> (...) (docs/results.md's C(A))."""
    r = pred - target
    return 0.5 * (r * r).sum(dim=(-2, -1))


def cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean softmax cross-entropy: logits (..., B, K), int labels (B,) or (..., B) -> (...)."""
    return _cross_entropy(logits, labels, weights)[0]


def _cross_entropy(logits, labels, weights=None):
    """(loss (...), log-softmax (..., B, K), labels (..., B, 1) int64)."""
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"cross_entropy: labels must be integer class ids, got {labels.dtype}")
    labels = labels.to(torch.int64).expand(logits.shape[:-1]).unsqueeze(-1)
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, labels).squeeze(-1)  # (..., B)
    return _reduce(nll, weights), logp, labels


@functools.lru_cache(maxsize=64)
def _reciprocal(b: int, dtype: torch.dtype) -> float:
    """fl(1/b) in ``dtype``, as a Python float (exact: float32 values are doubles)."""
    if dtype == torch.float64:
        return 1.0 / b
    if dtype == torch.float32:
        return float(np.float32(1.0) / np.float32(b))
    return float(torch.ones((), dtype=dtype) / b)


class SupervisedLoss:
    """``loss(model, (x, y)) = name(model(x), y)``, with its gradient in closed form.

    A ``loss_fn`` for :func:`rankscope.train.train` like any
    ``lambda m, b: mse(m(b[0]), b[1])``; in addition, :meth:`value_and_grad` gives the output
    gradient without autograd, which lets the engine take an autograd-free step on a stacked
    :class:`~rankscope.models.DeepLinearEnsemble` or ReLU
    :class:`~rankscope.models.MLPEnsemble` (``model.loss_and_grads``: the gradient flows back
    through ``bmm`` chains by hand), through the engine's hook :meth:`value_and_grads`. The
    steps equal the autograd path's to the bit; ``benchmarks/bench_closed_form.py`` measures
    ~2× on sgd-weight-decay-rank's B = 4 ensembles and 1.8× on bench_ensemble's DLN shape
    (docs/decisions.md). Other models train by autograd.
    ``name``: ``"mse"`` (:func:`mse`) or ``"cross_entropy"`` (:func:`cross_entropy`).
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

    def has_closed_form(self, model) -> bool:
        """Whether ``model`` back-propagates this loss by hand (``loss_and_grads``)."""
        supports = getattr(model, "supports_closed_form", None)
        return callable(supports) and bool(supports(self.name))

    def value_and_grads(self, model, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The engine's hook: (losses (E,), ∂(Σ_e loss_e)/∂p for every parameter)."""
        return model.loss_and_grads(self.value_and_grad, batch)

    @torch.no_grad()
    def value_and_grad(
        self, out: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss (...), ∂(Σ loss)/∂out (..., B, k)) for out (..., B, k); ``out`` is reused.

        The operations are those autograd performs on :func:`mse` / :func:`cross_entropy`,
        in the same order and with the same kernels, so the gradient equals that of
        ``loss.sum().backward()`` to the bit (float32 Adam amplifies a last-bit difference
        in near-zero gradients to ~1e-4 within 30 steps, so this matters).
        """
        b = out.shape[-2]
        c = _reciprocal(b, out.dtype)  # 1/B rounded in out's dtype, as autograd rounds it
        if self.name == "mse":  # ∂/∂out (1/B)Σ r² = c·r + c·r = fl(2c·r) (doubling is exact)
            if out.shape[-1:] != target.shape[-1:]:
                mse(out, target)  # raises the error that names both shapes
            r = out.sub_(target)  # (..., B, k): the ops of mse(), in place
            loss = (r * r).flatten(-2).sum(dim=-1) / b
            return loss, r.mul_(2 * c)
        # cross-entropy: ∂/∂logp is −c at the labels, then softmax's backward,
        # (softmax − onehot)·c, with the kernel autograd uses (its exp, so the same bits)
        loss, logp, labels = _cross_entropy(out, target)
        minus_c = torch.full((1,) * logp.ndim, -c, dtype=logp.dtype, device=logp.device)
        g_logp = torch.zeros_like(logp).scatter_add_(-1, labels, minus_c.expand(labels.shape))
        return loss, torch.ops.aten._log_softmax_backward_data(g_logp, logp, -1, logp.dtype)
