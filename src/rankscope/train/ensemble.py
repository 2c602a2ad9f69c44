"""``train_ensemble``: kept until callers move to :func:`rankscope.train.train`.

It is :func:`~rankscope.train.train` with the old keyword names (``generators=`` for
``generator=``, ``logs=`` for ``log=``) and the old divergence default (a diverging member is
frozen, ``on_diverge="stop"``). ``EnsembleState`` / ``EnsembleResult`` are the engine's
:class:`TrainState` / :class:`TrainResult`.
"""

from __future__ import annotations

from rankscope.train.loop import train
from rankscope.train.state import TrainResult, TrainState

__all__ = ["EnsembleResult", "EnsembleState", "train_ensemble"]

EnsembleState = TrainState
EnsembleResult = TrainResult


def train_ensemble(ensemble, loss_fn, *, generators=None, logs=None, on_diverge="stop", **kw):
    """Kept until callers move: ``train(ensemble, loss_fn, generator=generators, log=logs,
    on_diverge="stop", **kw)``."""
    return train(ensemble, loss_fn, generator=generators, log=logs, on_diverge=on_diverge, **kw)
