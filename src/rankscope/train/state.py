"""What the engine hands out: the state callbacks see, and the result of a run.

Both have one type for a single model (E = 1) and a stacked ensemble (E members). Per-member
quantities are (E,) tensors / length-E lists; for a plain model (not stacked) the result also
has today's scalar attributes (``status``, ``final_loss``, ``history`` of 1-D arrays, ``log``,
``diverged_step``) and the state has ``loss``, ``data_loss``, ``log``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rankscope.records import RecordLog

__all__ = ["TrainResult", "TrainState", "named_weights"]


def named_weights(
    model_or_params: nn.Module | Sequence[torch.Tensor], *, stacked: bool = False
) -> list[tuple[str, torch.Tensor]]:
    """Tags and detached values of the weight matrices (parameters with ≥ 2 dims, ≥ 3 when
    ``stacked``: (E, n_out, n_in)).

    Models holding a ``weights`` list (DeepLinear, MLP and their ensembles) are tagged W1…WL as
    in the papers; other modules use their parameter names; a plain list uses W1, W2, … in order.
    """
    min_ndim = 3 if stacked else 2
    if isinstance(model_or_params, nn.Module):
        ws = getattr(model_or_params, "weights", None)
        if isinstance(ws, nn.ParameterList):
            return [(f"W{i + 1}", w.detach()) for i, w in enumerate(ws)]
        params = model_or_params.named_parameters()
        return [(n, p.detach()) for n, p in params if p.ndim >= min_ndim]
    mats = [p for p in model_or_params if p.ndim >= min_ndim]
    return [(f"W{i + 1}", p.detach()) for i, p in enumerate(mats)]


@dataclass
class TrainState:
    """What a callback sees at a logging step (parameters are those after ``step`` updates).

    ``losses`` (E,) float64: objective J_e (data loss + penalty) on this step's batch, NaN for
    frozen members; ``data_losses`` (E,) the loss_fn part; ``active`` (E,) bool marks members
    still training; ``logs[e]`` is member e's record log (write only for active members,
    :meth:`members`). ``stacked``: the model is an ensemble whose parameters carry the member
    dimension first. ``model`` is the module, or None when a list of tensors was trained.
    """

    step: int
    losses: torch.Tensor
    data_losses: torch.Tensor
    active: torch.Tensor
    model: nn.Module | None
    params: list[torch.Tensor]
    optimizer: Any
    logs: list[RecordLog]
    layer_names: list[str] = field(default_factory=list)  # tags of the weight matrices
    stacked: bool = False

    @property
    def size(self) -> int:
        """E, the number of members."""
        return int(self.active.shape[0])

    def members(self) -> list[int]:
        """Indices of the active members."""
        return torch.nonzero(self.active).flatten().tolist()

    def _single(self, what: str) -> None:
        if self.size != 1:
            raise AttributeError(
                f"TrainState.{what} is for a single member; this run has {self.size}: use "
                f"state.{what}s[e] / state.logs[e]"
            )

    @property
    def loss(self) -> float:
        """J of the only member (E = 1)."""
        self._single("loss")
        return float(self.losses[0])

    @property
    def data_loss(self) -> float:
        """loss_fn of the only member (E = 1)."""
        self._single("data_loss")
        return float(self.data_losses[0])

    @property
    def log(self) -> RecordLog:
        """The record log of the only member (E = 1)."""
        self._single("log")
        return self.logs[0]

    def weights(self) -> list[tuple[str, torch.Tensor]]:
        """(tag, detached matrix) for every weight: (n_out, n_in), or (E, n_out, n_in) when
        ``stacked`` (see :func:`named_weights`)."""
        subject = self.model if self.model is not None else self.params
        return named_weights(subject, stacked=self.stacked)


@dataclass
class TrainResult:
    """Outcome of :func:`~rankscope.train.train`.

    Per member e: ``statuses[e]`` is ``"completed"``, ``"stopped"`` (a callback or ``stop``
    asked, at ``stopped_steps[e]``) or ``"diverged"`` (NaN/Inf objective at
    ``diverged_steps[e]``); ``final_losses[e]`` is its last finite objective. ``steps`` counts
    the steps this call ran (the last one the loop reached); reported steps are
    ``step_offset`` + those. ``member_history``: ``step`` (T,), ``loss`` and ``data_loss``
    (T, E) at the logging steps (NaN once a member is frozen). ``flow`` holds the exact
    trajectory when ``optimizer="flow"``.

    Views: for a stacked ensemble ``status``, ``diverged_step``, ``stopped_step`` are the
    lists and ``history`` is ``member_history``; for a plain model they are member 0's
    scalars and 1-D arrays, with ``final_loss`` and ``log``. :meth:`member` gives member e as
    a plain result.
    """

    statuses: list[str]
    diverged_steps: list[int | None]
    stopped_steps: list[int | None]
    steps: int
    final_losses: np.ndarray
    member_history: dict[str, np.ndarray]
    logs: list[RecordLog]
    stacked: bool = False
    wall_time: float = 0.0
    step_offset: int = 0
    last_losses: np.ndarray | None = None  # (E,) last objective seen, NaN/Inf if it diverged
    flow: Any = None

    @property
    def size(self) -> int:
        return len(self.statuses)

    def _one(self, values):
        return values if self.stacked else values[0]

    @property
    def status(self):
        return self._one(self.statuses)

    @property
    def diverged_step(self):
        return self._one(self.diverged_steps)

    @property
    def stopped_step(self):
        return self._one(self.stopped_steps)

    @property
    def history(self) -> dict[str, np.ndarray]:
        if self.stacked:
            return self.member_history
        h = self.member_history
        return {"step": h["step"], "loss": h["loss"][:, 0], "data_loss": h["data_loss"][:, 0]}

    def _single(self, what: str) -> None:
        if self.size != 1:
            raise AttributeError(
                f"TrainResult.{what} is for a single member; this run has {self.size}: use "
                f"result.member(e).{what}"
            )

    @property
    def final_loss(self) -> float:
        """The last objective of the only member (its NaN/Inf value when it diverged)."""
        self._single("final_loss")
        last = self.last_losses if self.last_losses is not None else self.final_losses
        return float(last[0])

    @property
    def log(self) -> RecordLog:
        self._single("log")
        return self.logs[0]

    def member(self, e: int) -> TrainResult:
        """Member e as a plain (E = 1) result: its rows of the history, its log and status."""
        keep = ~np.isnan(self.member_history["loss"][:, e])
        hist = {
            "step": self.member_history["step"][keep],
            "loss": self.member_history["loss"][keep, e : e + 1],
            "data_loss": self.member_history["data_loss"][keep, e : e + 1],
        }
        end = self.diverged_steps[e] if self.diverged_steps[e] is not None else None
        end = self.stopped_steps[e] if end is None else end
        last = None if self.last_losses is None else self.last_losses[e : e + 1]
        return TrainResult(
            statuses=[self.statuses[e]],
            diverged_steps=[self.diverged_steps[e]],
            stopped_steps=[self.stopped_steps[e]],
            steps=self.steps if end is None else end - self.step_offset,
            final_losses=self.final_losses[e : e + 1],
            member_history=hist,
            logs=[self.logs[e]],
            wall_time=self.wall_time,
            step_offset=self.step_offset,
            last_losses=last,
            flow=self.flow,
        )
