"""rankscope.compress: measure the spectra, choose ranks, factorise, evaluate.

>>> import torch
>>> from torch import nn
>>> from rankscope.compress import compress
>>> model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
>>> out = compress(model, 0.5, method="svd")
>>> [row["rank"] for row in out.layers], round(out.manifest["kept_fraction"], 3)
([15, 4], 0.476)

- :func:`compress` / :class:`Compressed` (``.save(DIR)``) and :func:`load`;
- factorised layers :class:`LowRankLinear`, :class:`LowRankConv`;
- :func:`select_layers` (type + glob name patterns), :func:`allocate` (uniform / global);
- evaluation: :func:`accuracy`, :func:`sentence_embeddings`, :func:`embedding_agreement`,
  :func:`compare_latency`; offline text: :func:`sentences`, :func:`text_batches`.
"""

from rankscope.compress import hf
from rankscope.compress.allocate import ALLOCATIONS, LayerBudget, allocate, max_saving_rank
from rankscope.compress.api import (
    LAYER_TYPES,
    MANIFEST,
    METHODS,
    Compressed,
    compress,
    load,
    load_sequential,
    save_sequential,
    select_layers,
)
from rankscope.compress.calibrate import Batch, InputMoments, collect_moments
from rankscope.compress.evaluate import (
    accuracy,
    compare_latency,
    embedding_agreement,
    mean_pooled,
    sentence_embeddings,
)
from rankscope.compress.factorize import truncate, whitener
from rankscope.compress.layers import LowRankConv, LowRankLinear, breakeven_rank
from rankscope.compress.text import read_lines, sentences, text_batches

__all__ = [
    "ALLOCATIONS",
    "LAYER_TYPES",
    "MANIFEST",
    "METHODS",
    "Batch",
    "Compressed",
    "InputMoments",
    "LayerBudget",
    "LowRankConv",
    "LowRankLinear",
    "accuracy",
    "allocate",
    "breakeven_rank",
    "collect_moments",
    "compare_latency",
    "compress",
    "embedding_agreement",
    "hf",
    "load",
    "load_sequential",
    "max_saving_rank",
    "mean_pooled",
    "read_lines",
    "save_sequential",
    "select_layers",
    "sentence_embeddings",
    "sentences",
    "text_batches",
    "truncate",
    "whitener",
]
