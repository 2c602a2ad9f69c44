"""rankscope.train: one training engine, callbacks, schedules.

- :func:`train` — the one loop: GD / SGD / Adam / L-BFGS / exact gradient flow ("flow") /
  any torch optimizer, on one model (E = 1) or a stacked ensemble of E members
  (:class:`DeepLinearEnsemble`, :class:`MLPEnsemble`, from :mod:`rankscope.models`) with
  per-member lr / L2 / seed / batches and one active mask; callbacks at logging steps;
- :class:`TrainState` (what callbacks see), :class:`TrainResult`;
- callbacks :class:`LogLoss`, :class:`LogWeightSpectra`, :class:`LogEndToEndSpectrum`,
  :class:`LogRanks`, :class:`LogCollapse`;
- :func:`log_steps` schedules; :func:`prefer_ensemble` decides ensemble vs loop per shape;
- :class:`Diverged`, raised on a NaN/Inf loss; :class:`GroupRMSprop`;
- :func:`gradient_flow` (front of ``train(..., optimizer="flow")`` over a time span) and
  :func:`train_ensemble` (old keyword names), kept until callers move.
"""

from rankscope.models.ensembles import DeepLinearEnsemble, MLPEnsemble
from rankscope.train.batch_plan import ensemble_speedup, prefer_ensemble, step_flops
from rankscope.train.batches import BatchSampler
from rankscope.train.callbacks import (
    LogCollapse,
    LogEndToEndSpectrum,
    LogLoss,
    LogRanks,
    LogWeightSpectra,
)
from rankscope.train.ensemble import EnsembleResult, EnsembleState, train_ensemble
from rankscope.train.errors import Diverged
from rankscope.train.flow import FlowSolution, gradient_flow
from rankscope.train.group_rmsprop import GroupRMSprop
from rankscope.train.loop import OPTIMIZERS, train
from rankscope.train.losses import SupervisedLoss, cross_entropy, half_sse, mse
from rankscope.train.schedule import log_steps
from rankscope.train.state import TrainResult, TrainState, named_weights

__all__ = [
    "OPTIMIZERS",
    "BatchSampler",
    "DeepLinearEnsemble",
    "Diverged",
    "EnsembleResult",
    "EnsembleState",
    "FlowSolution",
    "GroupRMSprop",
    "LogCollapse",
    "LogEndToEndSpectrum",
    "LogLoss",
    "LogRanks",
    "LogWeightSpectra",
    "MLPEnsemble",
    "SupervisedLoss",
    "TrainResult",
    "TrainState",
    "cross_entropy",
    "ensemble_speedup",
    "gradient_flow",
    "half_sse",
    "log_steps",
    "mse",
    "named_weights",
    "prefer_ensemble",
    "step_flops",
    "train",
    "train_ensemble",
]
