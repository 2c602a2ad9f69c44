"""Errors raised by the training layer."""

from __future__ import annotations

import math

__all__ = ["Diverged"]


class Diverged(RuntimeError):
    """A loss (or another watched quantity) turned NaN/Inf at ``step``.

    ``rankscope.experiments.base.Diverged`` re-exports this class, so an experiment can let it
    propagate from :func:`rankscope.train.train` and the runner records the run as diverged.
    """

    def __init__(self, step: int, what: str = "loss", value: float = math.nan):
        super().__init__(f"{what} became {value} at step {step}")
        self.step = step
        self.what = what
        self.value = value

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.step, self.what, self.value))
