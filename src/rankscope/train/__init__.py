"""rankscope.train: one training loop, vectorized ensembles, callbacks, schedules.

- :func:`train` — GD / SGD / Adam / L-BFGS on one model, callbacks at logging steps;
- :func:`train_ensemble` — E same-shaped networks (:class:`DeepLinearEnsemble`,
  :class:`MLPEnsemble`) as one batched computation, per-member lr / L2 / seed / init;
- callbacks :class:`LogLoss`, :class:`LogWeightSpectra`, :class:`LogEndToEndSpectrum`;
- :func:`log_steps` schedules; :func:`prefer_ensemble` decides ensemble vs loop per shape;
- :class:`Diverged`, raised on a NaN/Inf loss.
"""

from rankscope.train.batch_plan import ensemble_speedup, prefer_ensemble, step_flops
from rankscope.train.batches import BatchSampler
from rankscope.train.callbacks import (
    LogCollapse,
    LogEndToEndSpectrum,
    LogLoss,
    LogRanks,
    LogWeightSpectra,
)
from rankscope.train.ensemble import (
    DeepLinearEnsemble,
    EnsembleResult,
    EnsembleState,
    MLPEnsemble,
    train_ensemble,
)
from rankscope.train.errors import Diverged
from rankscope.train.flow import FlowSolution, gradient_flow
from rankscope.train.group_rmsprop import GroupRMSprop
from rankscope.train.loop import OPTIMIZERS, TrainResult, TrainState, named_weights, train
from rankscope.train.losses import SupervisedLoss, cross_entropy, half_sse, mse
from rankscope.train.schedule import log_steps
from rankscope.train.stationarity import gradient_norm

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
    "gradient_norm",
    "half_sse",
    "log_steps",
    "mse",
    "named_weights",
    "prefer_ensemble",
    "step_flops",
    "train",
    "train_ensemble",
]
