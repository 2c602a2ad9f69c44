"""Evaluation of a compressed model against its original, in the same process.

- classifier: accuracy before and after on (x, y);
- embedding model: sentence embeddings by mean pooling of the last hidden states over the
  attention mask; the mean cosine between original and compressed embeddings of each
  sentence, and the nearest-neighbour agreement (the fraction of sentences whose nearest other
  sentence by cosine is the same under both models);
- every model: CPU latency of one forward pass before and after, timed alternately (a, b, a,
  b, …) after a warm-up, the median of each; the ratio after/before is what to read.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rankscope.compress.calibrate import Batch

__all__ = [
    "accuracy",
    "compare_latency",
    "embedding_agreement",
    "mean_pooled",
    "sentence_embeddings",
]


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512) -> float:
    """Fraction of rows of ``x`` whose argmax logit equals ``y``."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need as many labels as inputs (> 0): {x.shape[0]} inputs, {y.shape[0]}")
    model.eval()
    hits = 0
    for i in range(0, x.shape[0], batch_size):
        hits += int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
    return hits / x.shape[0]


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, d) hidden states, (B, T) mask -> (B, d) mean over the real tokens."""
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


@torch.no_grad()
def sentence_embeddings(model: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
    """(N, d) mean-pooled embeddings of the sentences in ``batches`` (in batch order)."""
    model.eval()
    out = []
    for b in batches:
        res = model(*b.args, **b.kwargs)
        hidden = res.last_hidden_state if hasattr(res, "last_hidden_state") else res[0]
        out.append(mean_pooled(hidden, b.mask).to(torch.float64))
    return torch.cat(out)


def embedding_agreement(before: torch.Tensor, after: torch.Tensor) -> dict[str, float]:
    """Mean cosine of paired rows and nearest-neighbour agreement of two (N, d) embeddings."""
    if before.shape != after.shape or before.ndim != 2 or before.shape[0] < 2:
        raise ValueError(
            f"need two (N, d) embeddings with N >= 2 of one shape, got {tuple(before.shape)} "
            f"and {tuple(after.shape)}"
        )
    a = torch.nn.functional.normalize(before.to(torch.float64), dim=1)
    b = torch.nn.functional.normalize(after.to(torch.float64), dim=1)
    cos = (a * b).sum(1)
    eye = torch.eye(a.shape[0], dtype=torch.bool, device=a.device)
    nn_a = (a @ a.T).masked_fill(eye, -2.0).argmax(1)
    nn_b = (b @ b.T).masked_fill(eye, -2.0).argmax(1)
    return {
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "nn_agreement": float((nn_a == nn_b).to(torch.float64).mean()),
    }


@torch.no_grad()
def compare_latency(
    before: nn.Module, after: nn.Module, batch: Batch, *, repeats: int = 7, warmup: int = 2
) -> dict[str, Any]:
    """Median seconds of one forward pass of each model on ``batch``, timed alternately."""
    times: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(warmup + repeats):
        for key, model in (("before", before), ("after", after)):
            t0 = time.perf_counter()
            model(*batch.args, **batch.kwargs)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[key].append(dt)
    t_b, t_a = statistics.median(times["before"]), statistics.median(times["after"])
    return {"before_s": t_b, "after_s": t_a, "ratio": t_a / t_b, "repeats": repeats}
