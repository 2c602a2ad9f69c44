"""The objective every method minimises (definitions §0, "Weight decay"):

    J_e(θ_e) = loss_fn(model[, batch])[e] + l2_e · Σ_{W ∈ penalized} ‖W_e‖_F²

The penalty is added to the loss, never passed to an optimizer as ``weight_decay``.
``l2_params="weights"`` penalizes the weight matrices (parameters with ≥ 2 dims; ≥ 3 for a
stacked ensemble, whose weights are (E, n_out, n_in) and biases (E, n)); ``"all"`` every
parameter. A spec written as (λ/2)Σ‖W‖² passes ``l2=λ/2``; torch's ``weight_decay=λ'`` is
``l2=λ'/2``.

A ``loss_fn`` may also give its own gradients: an object with
``value_and_grads(model, batch) -> (data losses (E,), [∂(Σ_e loss_e)/∂p for p in params])``
is used without autograd (a closed-form backward; see ``benchmarks/bench_closed_form.py``).
"""

from __future__ import annotations

import torch

__all__ = ["Objective"]


class Objective:
    """J (E,) and its data part (E,) on a batch, with gradients from autograd or the loss."""

    def __init__(self, subject, loss_fn, params, l2, l2_params: str, *, size: int, stacked: bool):
        self.subject, self.loss_fn, self.size, self.stacked = subject, loss_fn, size, stacked
        self.params = params
        min_ndim = 3 if stacked else 2
        self._penalized_at = [
            i for i, p in enumerate(params) if l2_params == "all" or p.ndim >= min_ndim
        ]
        self.penalized = [params[i] for i in self._penalized_at]
        if stacked:  # l2 (E,) in the parameters' dtype
            self.l2 = l2.to(dtype=params[0].dtype, device=params[0].device)
            self.has_l2 = bool(l2.any())
        else:
            self.l2 = float(l2)
            self.has_l2 = self.l2 != 0
        self.closed_form = callable(getattr(loss_fn, "value_and_grads", None))

    def _penalty(self) -> torch.Tensor:
        if self.stacked:
            return sum((p * p).flatten(1).sum(dim=1) for p in self.penalized)  # (E,)
        return sum((p * p).sum() for p in self.penalized)

    def _check(self, data_loss: torch.Tensor) -> torch.Tensor:
        if self.stacked:
            if data_loss.shape != (self.size,):
                raise ValueError(
                    f"ensemble loss_fn must return shape ({self.size},), got "
                    f"{tuple(data_loss.shape)}"
                )
            return data_loss
        if data_loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(data_loss.shape)}")
        return data_loss

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(J (E,), data loss (E,)), differentiable."""
        subject = self.subject
        data_loss = self._check(
            self.loss_fn(subject) if batch is None else self.loss_fn(subject, batch)
        )
        loss = data_loss + self.l2 * self._penalty() if self.has_l2 else data_loss
        return loss.reshape(self.size), data_loss.reshape(self.size)

    @torch.no_grad()
    def with_grads(self, batch) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(J (E,), data loss (E,), ∂(Σ_e J_e)/∂θ per parameter) from ``loss_fn.value_and_grads``.

        The penalty's gradient is added as autograd adds it, d + (l2_e·p + l2_e·p) with the
        product rounded first (``addcmul_`` fuses it and differs in the last bit), so each
        step equals the autograd step to the bit.
        """
        data_loss, grads = self.loss_fn.value_and_grads(self.subject, batch)
        data_loss = self._check(data_loss)
        if len(grads) != len(self.params):
            raise ValueError(
                f"value_and_grads gave {len(grads)} gradients for {len(self.params)} parameters"
            )
        if not self.has_l2:
            return data_loss.reshape(self.size), data_loss.reshape(self.size), list(grads)
        grads = list(grads)
        for i in self._penalized_at:
            p = self.params[i]
            l2 = self.l2.view(-1, *([1] * (p.ndim - 1))) if self.stacked else self.l2
            grads[i].add_(l2 * p, alpha=2.0)
        loss = data_loss + self.l2 * self._penalty()
        return loss.reshape(self.size), data_loss.reshape(self.size), grads
