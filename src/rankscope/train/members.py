"""Per-member bookkeeping of a run: the active mask, divergence and stop steps, the history.

The only place where a NaN/Inf objective is noticed (:meth:`Members.observe`) and where stop
requests (callbacks, ``stop``) freeze members (:meth:`Members.request_stop`), for a single
model (E = 1) and an ensemble alike.
"""

from __future__ import annotations

import numpy as np
import torch

from rankscope.records import RecordLog
from rankscope.train.state import TrainResult, TrainState

__all__ = ["Members"]


class Members:
    """E members, all active at first; frozen ones keep their parameters and step."""

    def __init__(self, size: int, steps: int) -> None:
        self.size, self.steps = size, steps
        self.active = torch.ones(size, dtype=torch.bool)
        self.n_active, self.all_active = size, True
        self.diverged: list[int | None] = [None] * size
        self.stopped: list[int | None] = [None] * size
        self.last: torch.Tensor | None = None  # last finite objective per member
        self.seen: torch.Tensor | None = None  # last objective per member, NaN/Inf included
        self.hist: dict[str, list] = {"step": [], "loss": [], "data_loss": []}

    def _freeze(self, mask: torch.Tensor, step: int, into: list) -> None:
        for e in torch.nonzero(mask & self.active).flatten().tolist():
            into[e] = step
        self.active &= ~mask
        self.n_active = int(self.active.sum())
        self.all_active = self.n_active == self.size

    def observe(self, step: int, losses: torch.Tensor) -> None:
        """Freeze members whose objective is NaN/Inf; one host sync when all are finite."""
        losses = losses.detach()
        if self.last is None:
            self.last = torch.full_like(losses, torch.nan)
            self.seen = self.last.clone()
        keep = self.active.to(losses.device)
        self.seen = losses if self.all_active else torch.where(keep, losses, self.seen)
        if not self.all_active or not bool(torch.isfinite(losses).all()):
            self._freeze(~torch.isfinite(losses).cpu(), step, self.diverged)
            keep = self.active.to(losses.device)
        self.last = losses if self.all_active else torch.where(keep, losses, self.last)

    @property
    def n_diverged(self) -> int:
        return sum(d is not None for d in self.diverged)

    def first_divergence(self) -> tuple[int, int, float]:
        """(member, step, value) of the earliest divergence."""
        e = min((d, e) for e, d in enumerate(self.diverged) if d is not None)[1]
        return e, self.diverged[e], float(self.seen[e])

    def mask(self) -> torch.Tensor | None:
        """The active mask, or None when every member is active (the fast path)."""
        return None if self.all_active else self.active

    def stop_value(self, stacked: bool):
        """What ``stop(step, loss)`` gets: the (E,) objectives, or a float for one model."""
        last = torch.full((self.size,), torch.nan) if self.last is None else self.last
        return last if stacked else float(last[0])

    def masked(self, t: torch.Tensor) -> torch.Tensor:
        """(E,) float64 on the CPU, NaN for frozen members."""
        return torch.where(self.active, t.detach().to(torch.float64).cpu(), torch.nan)

    def record(self, state: TrainState) -> None:
        self.hist["step"].append(state.step)
        self.hist["loss"].append(state.losses.numpy())
        self.hist["data_loss"].append(state.data_losses.numpy())

    def request_stop(self, step: int, req) -> None:
        """Freeze the members a request names: ``True`` (all), or a bool tensor (E,) (a 0-d
        one for E = 1); ``None``/``False`` ask nothing."""
        if req is None or req is False:
            return
        if req is True or (isinstance(req, np.bool_ | bool) and bool(req)):
            mask = torch.ones(self.size, dtype=torch.bool)
        else:
            mask = torch.as_tensor(req).cpu()
            if mask.ndim == 0 and self.size == 1:
                mask = mask.reshape(1)
        if mask.shape != (self.size,) or mask.dtype != torch.bool:
            raise ValueError(
                f"a stop request must be True or a bool tensor ({self.size},), got {req!r}"
            )
        if bool(mask.any()):
            self._freeze(mask, step, self.stopped)

    def result(self, step: int, logs: list[RecordLog], **extra) -> TrainResult:
        """The run's :class:`TrainResult`; a stop at the last step does not count as one."""
        status = [
            "diverged"
            if d is not None
            else "stopped"
            if s is not None and s < self.steps
            else "completed"
            for d, s in zip(self.diverged, self.stopped)
        ]
        stopped = [s if s is not None and s < self.steps else None for s in self.stopped]
        h = self.hist
        t = len(h["step"])
        nan = np.full(self.size, np.nan)
        return TrainResult(
            statuses=status,
            diverged_steps=list(self.diverged),
            stopped_steps=stopped,
            steps=step,
            final_losses=nan if self.last is None else _numpy(self.last),
            member_history={
                "step": np.asarray(h["step"], dtype=np.int64),
                "loss": np.asarray(h["loss"], dtype=np.float64).reshape(t, self.size),
                "data_loss": np.asarray(h["data_loss"], dtype=np.float64).reshape(t, self.size),
            },
            logs=logs,
            last_losses=nan if self.seen is None else _numpy(self.seen),
            **extra,
        )


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).cpu().numpy()
