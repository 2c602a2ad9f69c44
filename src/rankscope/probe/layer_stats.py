"""Streaming sufficient statistics of one layer's outputs, and the metrics they give.

Per layer the probe keeps a :class:`rankscope.metrics.CovarianceAccumulator` (N, the mean
and the centred scatter in float64, Chan et al.'s pairwise update) and, with labels, the
per-class counts n_c and sums Σ_{i∈c}(x_i − c) (c: the first batch's mean, for
conditioning). Memory is O(d² + K·d), independent of N. The class statistics are kept here
rather than in :class:`rankscope.metrics.ClassStatsAccumulator` because a stream of batches
does not announce its number of classes, and that accumulator needs it up front.

Metrics (definitions §5, §14), with H_c the centred (N, d) data:

- representation spectrum: s_i = sqrt(N·λ_i(C)), the singular values of H_c, from the
  accumulator; eigenvalues at or below d·eps(float64)·λ_1 (eigh's rounding level) are set to
  0, so s_i/s_1 below about sqrt(d)·1.5e-8 reads as an exact zero;
- ``rep_rank_torch``: s_i > max(N, d)·eps(float32)·s_1, i.e. ``torch.linalg.matrix_rank`` of
  the float32 activation matrix H_c (the covariance route resolves s_i only down to about
  1e-8·s_1, far below this threshold). Note: ``rankscope.metrics.representation_rank``
  with ``'torch'`` instead thresholds the covariance's eigenvalues at d·eps64·λ_1;
- ``rep_rank_rel1e-2`` (s_i > 1e-2·s_1), ``rep_stable_rank`` (= tr C / λ_max(C)),
  ``rep_effective_rank`` (Roy–Vetterli on s);
- with labels: Σ_W = (1/N)Σ_i(h_i−μ_c)(h_i−μ_c)ᵀ, Σ_B = (1/K)Σ_c(μ_c−μ_G)(μ_c−μ_G)ᵀ (μ_G the
  sample mean); ``nc1`` = tr(Σ_W Σ_B^†)/K (pinv variant, Σ_B inverted on eigenvalues above
  d·eps·λ_max), ``nc1_quotient`` = tr Σ_W / tr Σ_B, ``tcv2`` = sqrt(tr Σ_W).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from rankscope.metrics import (
    CovarianceAccumulator,
    effective_rank,
    numerical_rank,
    stable_rank,
)

__all__ = ["LayerStats"]

_F64 = torch.float64


class LayerStats:
    """Running float64 sums of a stream of (rows, d) batches, optionally with class labels."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.cov = CovarianceAccumulator(dim)
        self.shift: torch.Tensor | None = None  # (d,) reference point of the class sums
        self.class_index: dict[int, int] = {}
        self.class_count = torch.zeros(0, dtype=_F64)  # (K,)
        self.class_sum = torch.zeros(0, dim, dtype=_F64)  # (K, d) Σ_{i∈c}(x_i − shift)
        self.unlabelled = 0  # rows seen without a usable label

    @property
    def n(self) -> int:
        return self.cov.n

    def update(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Add a batch ``x`` (rows, d); ``y`` (rows,) integer class ids or None."""
        x = x.detach().to("cpu", _F64)
        self.cov.update(x)
        if y is None:
            self.unlabelled += x.shape[0]
            return
        if self.shift is None:
            self.shift = x.mean(0)
        uniq, inverse = torch.unique(y.detach().cpu().reshape(-1), return_inverse=True)
        for lab in uniq.tolist():
            self.class_index.setdefault(int(lab), len(self.class_index))
        k = len(self.class_index)
        if k > self.class_count.numel():
            grow = k - self.class_count.numel()
            self.class_count = torch.cat([self.class_count, torch.zeros(grow, dtype=_F64)])
            self.class_sum = torch.cat([self.class_sum, torch.zeros(grow, self.dim, dtype=_F64)])
        table = torch.tensor([self.class_index[int(v)] for v in uniq.tolist()], dtype=torch.long)
        idx = table[inverse]  # (rows,) class slot of each row
        self.class_count.index_add_(0, idx, torch.ones(idx.numel(), dtype=_F64))
        self.class_sum.index_add_(0, idx, x - self.shift)

    def spectrum(self) -> torch.Tensor:
        """Singular values of the centred data H_c (N, d), descending, (d,) float64."""
        if self.n == 0:
            return torch.zeros(self.dim, dtype=_F64)
        s = self.cov.singular_values(centre=True)
        floor = math.sqrt(self.dim * torch.finfo(_F64).eps) * s[:1]  # eigh's rounding level
        return torch.where(s > floor, s, 0.0)

    def metrics(self, s: torch.Tensor) -> dict[str, Any]:
        """Representation ranks from the spectrum ``s`` of this layer (module docstring)."""
        shape = (self.n, self.dim)
        out: dict[str, Any] = {
            "samples": self.n,
            "features": self.dim,
            "max_rank": max(min(self.n - 1, self.dim), 0),
        }
        if self.n < 2 or float(s[0]) == 0.0:
            zero = 0 if self.n >= 2 else math.nan
            out.update({f"rep_{c}": zero for c in ("rank_torch", "rank_rel1e-2")})
            out.update(rep_stable_rank=zero, rep_effective_rank=zero)
            return out
        out["rep_rank_torch"] = int(
            numerical_rank(s, "torch", shape=shape, eps_dtype=torch.float32)
        )
        out["rep_rank_rel1e-2"] = int(numerical_rank(s, "relative", rtol=1e-2))
        out["rep_stable_rank"] = float(stable_rank(s))
        out["rep_effective_rank"] = float(effective_rank(s))
        return out

    def collapse(self) -> dict[str, Any]:
        """NC1 (pinv, quotient) and TCV₂ from the class sums; NaN with fewer than 2 classes."""
        k = len(self.class_index)
        labelled = float(self.class_count.sum()) if k else 0.0
        out: dict[str, Any] = {"n_classes": k, "nc1": math.nan, "nc1_quotient": math.nan}
        out["tcv2"] = math.nan
        if k < 2 or self.unlabelled or labelled != self.n:
            return out
        n = self.n
        mu = self.cov.mean  # (d,)
        mu_c = self.class_sum / self.class_count[:, None] + self.shift  # (K, d)
        between = mu_c - mu  # (K, d)
        scatter = self.cov.covariance(centre=True) * n  # Σ_i (x_i − μ)(x_i − μ)ᵀ
        sigma_w = (scatter - (self.class_count[:, None] * between).T @ between) / n
        sigma_b = between.T @ between / k
        lam, vec = torch.linalg.eigh((sigma_b + sigma_b.T) / 2)
        keep = lam > self.dim * torch.finfo(_F64).eps * lam.max().clamp_min(0.0)
        v = vec[:, keep]
        proj = (v.T @ sigma_w @ v).diagonal()  # v_jᵀ Σ_W v_j
        tr_w = float(sigma_w.trace())
        tr_b = float(sigma_b.trace())
        out["nc1"] = float((proj / lam[keep]).sum()) / k
        out["nc1_quotient"] = tr_w / tr_b if tr_b > 0 else math.nan
        out["tcv2"] = math.sqrt(max(tr_w, 0.0))
        return out
