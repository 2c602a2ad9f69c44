"""Rank allocation from measured spectra under a parameter budget.

The budget F is the kept fraction of the parameters (weights and biases) of the compressible
layers: Σ_l params_after_l ≤ F · Σ_l params_before_l. A layer (m, n) factorised at rank r
holds r(m + n) weights (+ its bias); a layer is factorised only when r < mn/(m + n), otherwise
it stays dense (``None`` below).

- ``uniform``: every layer keeps the same fraction F of its own parameters (SVD-LLM, ASVD):
  r_l = ⌊(F·(mn + b) − b)/(m + n)⌋, at least 1.
- ``global``: one budget for the model. Starting from rank 1 everywhere, singular directions
  are added greedily by error removed per parameter, σ_{l,i}² / (‖σ_l‖² (m + n)): the greedy
  minimises the total relative (whitened) truncation error Σ_l Σ_{i>r_l} σ_{l,i}²/‖σ_l‖²
  (for whitened spectra, the fraction of each layer's output energy on the calibration set
  that is lost). Because σ² decreases along each layer, taking the best ratios first is the
  exact optimum of the relaxed (fractional) problem. When a layer reaches its largest saving
  rank, its next step is "keep it dense", costing mn − r(m + n) and removing the rest of its
  error.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["ALLOCATIONS", "LayerBudget", "allocate", "max_saving_rank"]

ALLOCATIONS = ("uniform", "global")


@dataclass(frozen=True)
class LayerBudget:
    """What allocation needs to know about one layer."""

    name: str
    m: int
    n: int
    bias: int  # bias parameters (kept as they are)
    spectrum: torch.Tensor  # (min(m, n),) descending
    weight: float = 1.0  # importance of this layer's relative error (sensitivity)

    @property
    def dense(self) -> int:
        return self.m * self.n + self.bias

    def cost(self, rank: int | None) -> int:
        return self.dense if rank is None else rank * (self.m + self.n) + self.bias


def max_saving_rank(m: int, n: int) -> int:
    """Largest r with r(m + n) < mn (0 if none).

    >>> max_saving_rank(384, 384), max_saving_rank(2, 2)
    (191, 0)
    """
    return max(math.ceil(m * n / (m + n)) - 1, 0)


def _uniform(layers: Sequence[LayerBudget], budget: float) -> list[int | None]:
    out: list[int | None] = []
    for lay in layers:
        if budget >= 1.0:
            out.append(None)
            continue
        r = int((budget * lay.dense - lay.bias) // (lay.m + lay.n))
        r = max(min(r, max_saving_rank(lay.m, lay.n)), 1)
        out.append(r if max_saving_rank(lay.m, lay.n) >= 1 else None)
    return out


def _global(layers: Sequence[LayerBudget], budget: float) -> list[int | None]:
    total = sum(lay.dense for lay in layers)
    allowed = budget * total
    ranks: list[int | None] = []
    energy, heap = [], []
    for li, lay in enumerate(layers):
        e = (lay.spectrum.to(torch.float64) ** 2).tolist()
        tot = sum(e)
        scale = lay.weight / tot if tot > 0 else 0.0
        energy.append([v * scale for v in e])
        if max_saving_rank(lay.m, lay.n) < 1:
            ranks.append(None)
            continue
        ranks.append(1)
        _push(heap, li, lay, 1, energy[li])
    used = sum(lay.cost(r) for lay, r in zip(layers, ranks, strict=True))
    if budget >= 1.0:
        return [None] * len(layers)
    while heap:
        _, li, step_cost, target = heapq.heappop(heap)
        lay = layers[li]
        if used + step_cost > allowed:
            continue  # does not fit; a cheaper step of another layer may still fit
        used += step_cost
        ranks[li] = target
        if target is not None:
            _push(heap, li, lay, target, energy[li])
    return ranks


def _push(heap, li: int, lay: LayerBudget, rank: int, energy: list[float]) -> None:
    """Queue layer ``li``'s next step from ``rank``: one more direction, or going dense."""
    top = max_saving_rank(lay.m, lay.n)
    if rank < top:
        gain, cost, target = energy[rank], lay.m + lay.n, rank + 1
    else:
        gain, cost, target = sum(energy[rank:]), lay.dense - lay.cost(rank), None
    if cost <= 0:
        return
    heapq.heappush(heap, (-gain / cost, li, cost, target))


def allocate(layers: Sequence[LayerBudget], budget: float, how: str) -> list[int | None]:
    """Rank per layer (None: keep dense) under ``budget`` by ``how`` in :data:`ALLOCATIONS`."""
    if how not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {how!r}; expected one of {ALLOCATIONS}")
    return _uniform(layers, budget) if how == "uniform" else _global(layers, budget)
