"""Ready callbacks: write measurements into the run's :class:`~rankscope.records.RecordLog`.

Each takes the engine's :class:`~rankscope.train.state.TrainState`. For a single model it
writes to ``state.log``; for a stacked ensemble (``state.stacked``) it computes the quantity
for all members at once (batched SVD) and writes member e's values to ``state.logs[e]`` for
every active member, so member e's records equal those of an independent run. Layer tags are
``W1…WL`` for DeepLinear/MLP models (see ``named_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rankscope.metrics import nc1, numerical_rank, singular_values, stable_rank, tcv1, tcv2
from rankscope.models.linear import end_to_end
from rankscope.train.state import TrainState, named_weights

__all__ = [
    "LogCollapse",
    "LogEndToEndSpectrum",
    "LogLoss",
    "LogRanks",
    "LogWeightSpectra",
    "ensemble_weights",
]


def ensemble_weights(state: TrainState) -> list[tuple[str, torch.Tensor]]:
    """(tag, detached (E, n_l, n_{l−1})) for the stacked weight matrices of an ensemble."""
    return state.weights()


class LogLoss:
    """Logs ``loss`` (objective with penalty) and ``data_loss`` (loss_fn alone) per step."""

    def __init__(self, name: str = "loss", data_name: str = "data_loss") -> None:
        self.name, self.data_name = name, data_name

    def __call__(self, state) -> None:
        if state.stacked:
            for e in state.members():
                state.logs[e].log(self.name, float(state.losses[e]), step=state.step)
                state.logs[e].log(self.data_name, float(state.data_losses[e]), step=state.step)
            return
        state.log.log(self.name, state.loss, step=state.step)
        state.log.log(self.data_name, state.data_loss, step=state.step)


class LogWeightSpectra:
    """Logs the singular values of every weight matrix (vector ``name``, layer tag ``W{l}``).

    ``layers`` restricts to some tags (e.g. ``("W2", "W3")``). Spectra come from
    :func:`rankscope.metrics.singular_values` in float64 (definitions §0).
    """

    def __init__(self, name: str = "sv", layers: Sequence[str] | None = None) -> None:
        self.name, self.layers = name, None if layers is None else tuple(layers)

    def _keep(self, tag: str) -> bool:
        return self.layers is None or tag in self.layers

    def __call__(self, state) -> None:
        if state.stacked:
            members = state.members()
            for tag, w in ensemble_weights(state):
                if self._keep(tag) and members:
                    s = singular_values(w[members])  # (E', k)
                    for row, e in enumerate(members):
                        state.logs[e].log_vector(self.name, s[row], step=state.step, layer=tag)
            return
        subject = state.model if state.model is not None else state.params
        for tag, w in named_weights(subject):
            if self._keep(tag):
                state.log.log_vector(self.name, singular_values(w), step=state.step, layer=tag)


class LogEndToEndSpectrum:
    """Logs the singular values of the end-to-end product A = W_L⋯W_1 of a deep linear net.

    Works for :class:`~rankscope.models.DeepLinear`, a plain list of factors, and
    :class:`~rankscope.models.ensembles.DeepLinearEnsemble`. ``layer`` is the tag written
    (default ``""``).
    """

    def __init__(self, name: str = "sv_end_to_end", layer: str = "") -> None:
        self.name, self.layer = name, layer

    def __call__(self, state) -> None:
        if state.stacked:
            members = state.members()
            if not members:
                return
            with torch.no_grad():
                a = end_to_end([w[members] for _, w in ensemble_weights(state)])
            s = singular_values(a)  # (E', k)
            for row, e in enumerate(members):
                state.logs[e].log_vector(self.name, s[row], step=state.step, layer=self.layer)
            return
        subject = state.model if state.model is not None else state.params
        with torch.no_grad():
            a = end_to_end([w for _, w in named_weights(subject)])
        state.log.log_vector(self.name, singular_values(a), step=state.step, layer=self.layer)


class LogRanks:
    """Logs numerical ranks under named policies and the stable rank of every weight matrix.

    Records: ``rank_{policy}`` (e.g. ``rank_galanti``, ``rank_relative``) and
    ``stable_rank``, layer tag ``W{l}``; one batched SVD per layer for an ensemble.
    ``policies`` are (name, kwargs) pairs passed to :func:`rankscope.metrics.numerical_rank`
    (the matrix shape is supplied), e.g. ``(("galanti", {}), ("relative", {"rtol": 1e-2}))``.
    """

    def __init__(
        self,
        policies: Sequence[tuple[str, dict]] = (("galanti", {}), ("relative", {"rtol": 1e-2})),
        layers: Sequence[str] | None = None,
    ) -> None:
        self.policies = tuple((str(p), dict(kw)) for p, kw in policies)
        self.layers = None if layers is None else tuple(layers)

    def _rows(self, s: torch.Tensor, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
        out = {f"rank_{p}": numerical_rank(s, p, shape=shape, **kw) for p, kw in self.policies}
        out["stable_rank"] = stable_rank(s)
        return out

    def __call__(self, state) -> None:
        if state.stacked:
            members = state.members()
            for tag, w in ensemble_weights(state):
                if members and (self.layers is None or tag in self.layers):
                    vals = self._rows(singular_values(w[members]), tuple(w.shape[-2:]))
                    for row, e in enumerate(members):
                        for name, v in vals.items():
                            state.logs[e].log(name, v[row], step=state.step, layer=tag)
            return
        for tag, w in state.weights():
            if self.layers is None or tag in self.layers:
                vals = self._rows(singular_values(w), tuple(w.shape[-2:]))
                for name, v in vals.items():
                    state.log.log(name, v, step=state.step, layer=tag)


class LogCollapse:
    """Logs neural-collapse statistics of the hidden activations on a fixed labelled set.

    For a model with ``forward_with_hidden`` (``MLP``, ``MLPEnsemble``), at each logging step
    it records, for every hidden layer h_l (l = 1 … L−1, layer tag ``h{l}``): ``nc1``
    (pinv, definitions §14), ``nc1_quotient`` (tr Σ_W / tr Σ_B), ``tcv1`` and ``tcv2``.
    Always report TCV and the quotient next to ``nc1``: Σ_B^† is unstable near collapse.
    """

    def __init__(self, x: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
        if x.shape[0] != labels.shape[0]:
            raise ValueError(
                f"LogCollapse: {x.shape[0]} inputs but {labels.shape[0]} labels; they must match"
            )
        self.x, self.labels, self.k = x, labels.long(), int(num_classes)

    def _stats(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        h = h.detach().to(torch.float64)
        return {
            "nc1": nc1(h, self.labels, num_classes=self.k),
            "nc1_quotient": nc1(h, self.labels, variant="quotient", num_classes=self.k),
            "tcv1": tcv1(h, self.labels),
            "tcv2": tcv2(h, self.labels, num_classes=self.k),
        }

    def __call__(self, state) -> None:
        model = state.model
        if model is None or not hasattr(model, "forward_with_hidden"):
            raise TypeError("LogCollapse needs a model with forward_with_hidden (MLP, MLPEnsemble)")
        with torch.no_grad():
            _, hs, _ = model.forward_with_hidden(self.x)
        if state.stacked:
            for e in state.members():
                for l, h in enumerate(hs[1:], start=1):
                    for name, v in self._stats(h[e]).items():
                        state.logs[e].log(name, v, step=state.step, layer=f"h{l}")
            return
        for l, h in enumerate(hs[1:], start=1):
            for name, v in self._stats(h).items():
                state.log.log(name, v, step=state.step, layer=f"h{l}")
