"""Adapters from any nn.Module or checkpoint to named tensors, and per-layer analysis.

- :mod:`~rankscope.probe.checkpoint`: safe loading (safetensors, ``torch.load(weights_only=True)``).
- :mod:`~rankscope.probe.weights`: every ≥2-D weight as a named matrix with its kind.
- :mod:`~rankscope.probe.weight_metrics`: per-layer metrics from one spectrum.
- :mod:`~rankscope.probe.hooks`, :mod:`~rankscope.probe.layer_stats`: streaming
  representation and collapse statistics from forward hooks.
- :mod:`~rankscope.probe.analyze`: :func:`analyze`, returning an :class:`Analysis`.
"""

from rankscope.probe.analysis import Analysis
from rankscope.probe.analyze import analyze
from rankscope.probe.checkpoint import (
    Checkpoint,
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_tensor_file,
)
from rankscope.probe.data import iter_batches
from rankscope.probe.hooks import RepresentationProbe
from rankscope.probe.weight_metrics import SpectrumSettings
from rankscope.probe.weights import KINDS, SkippedTensor, WeightMatrix, weight_matrices

__all__ = [
    "KINDS",
    "Analysis",
    "Checkpoint",
    "CheckpointError",
    "RepresentationProbe",
    "SkippedTensor",
    "SpectrumSettings",
    "UnsafeCheckpointError",
    "WeightMatrix",
    "analyze",
    "iter_batches",
    "load_checkpoint",
    "load_tensor_file",
    "weight_matrices",
]
