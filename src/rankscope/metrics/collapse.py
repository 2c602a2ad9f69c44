"""Neural-collapse statistics, streaming over labelled batches (definitions §14).

Features arrive as H (N, d) with one row per sample (the formulas' H is its transpose) and
integer labels in [0, K). :class:`ClassStatsAccumulator` keeps per-class counts and means, the
per-class scatter traces and the pooled within-class scatter in float64 (Chan et al.'s
pairwise update), so every statistic below except TCV_1 and NC4 comes from one pass; those two
need each sample's distance to its class mean and take a second pass over the batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rankscope.metrics._validate import as_tensor, check_matrix

__all__ = ["GLOBAL_MEANS", "NC1_VARIANTS", "ClassStatsAccumulator", "check_labelled"]

NC1_VARIANTS = ("pinv", "svd", "quotient")
GLOBAL_MEANS = ("sample", "class_balanced")


def check_labelled(h, labels, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate features (N, d) and integer labels (N,) in [0, num_classes)."""
    h = check_matrix(h, name="features h", min_dim=0)
    if h.ndim != 2:
        raise ValueError(f"features h must have shape (N, d), got {tuple(h.shape)}")
    labels = as_tensor(labels, name="labels")
    if labels.ndim != 1 or labels.shape[0] != h.shape[0]:
        raise ValueError(
            f"labels must have shape (N,) = ({h.shape[0]},) to match h {tuple(h.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    labels = labels.to(device=h.device, dtype=torch.int64)
    if labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            bound = "" if num_classes is None else f" for num_classes={num_classes}"
            raise ValueError(f"labels must lie in [0, K){bound}; got values in [{lo}, {hi}]")
    return h, labels


class ClassStatsAccumulator:
    """Per-class (n_c, μ_c, Σ_{i∈c}‖h_i − μ_c‖²) and the pooled within-class scatter, float64.

    ``update(h (B, d), labels (B,))`` adds a batch; ``merge(other)`` adds another accumulator.
    Statistics use the classes seen so far (K = classes with n_c > 0; at least 2 needed).
    """

    def __init__(self, num_classes: int, dim: int | None = None):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        self.dim = dim
        self.counts: torch.Tensor | None = None  # (K,) int64
        self._means: torch.Tensor | None = None  # (K, d)
        self._traces: torch.Tensor | None = None  # (K,) Σ_{i∈c} ‖h_i − μ_c‖²
        self._scatter: torch.Tensor | None = None  # (d, d) Σ_i (h_i − μ_c(i))(h_i − μ_c(i))ᵀ

    def _init(self, d: int, device: torch.device) -> None:
        if self.dim is not None and d != self.dim:
            raise ValueError(f"features have d={d}, this accumulator holds dim={self.dim}")
        self.dim = d
        if self.counts is None:
            k, f64 = self.num_classes, torch.float64
            self.counts = torch.zeros(k, dtype=torch.int64, device=device)
            self._means = torch.zeros(k, d, dtype=f64, device=device)
            self._traces = torch.zeros(k, dtype=f64, device=device)
            self._scatter = torch.zeros(d, d, dtype=f64, device=device)

    def _combine(self, n_b, means_b, traces_b, scatter_b) -> None:
        n_a = self.counts.to(torch.float64)
        total = n_a + n_b
        w = torch.where(total > 0, n_a * n_b / total.clamp_min(1), 0.0)  # (K,)
        delta = means_b - self._means  # (K, d)
        self._scatter += scatter_b + delta.T @ (delta * w[:, None])
        self._traces += traces_b + w * (delta**2).sum(1)
        self._means += delta * torch.where(total > 0, n_b / total.clamp_min(1), 0.0)[:, None]
        self.counts += n_b.to(torch.int64)

    def update(self, h, labels) -> ClassStatsAccumulator:
        """Add a labelled batch: h (B, d), labels (B,) ints in [0, num_classes). Returns self."""
        h, labels = check_labelled(h, labels, self.num_classes)
        self._init(h.shape[1], h.device)
        if h.shape[0] == 0:
            return self
        x = h.detach().to(device=self.counts.device, dtype=torch.float64)
        labels = labels.to(self.counts.device)
        n_b = torch.bincount(labels, minlength=self.num_classes).to(torch.float64)
        sums = torch.zeros_like(self._means).index_add_(0, labels, x)
        means_b = sums / n_b.clamp_min(1)[:, None]
        xc = x - means_b[labels]
        traces_b = torch.zeros_like(self._traces).index_add_(0, labels, (xc**2).sum(1))
        self._combine(n_b, means_b, traces_b, xc.T @ xc)
        return self

    def merge(self, other: ClassStatsAccumulator) -> ClassStatsAccumulator:
        """Add another accumulator's statistics (same num_classes) in place. Returns self."""
        if not isinstance(other, ClassStatsAccumulator) or other.num_classes != self.num_classes:
            raise ValueError(
                f"can only merge a ClassStatsAccumulator with num_classes={self.num_classes}, "
                f"got {other!r}"
            )
        if other.counts is None:
            return self
        self._init(other.dim, other.counts.device)
        self._combine(other.counts.to(torch.float64), other._means, other._traces, other._scatter)
        return self

    def _present(self) -> torch.Tensor:
        if self.counts is None:
            raise ValueError("the accumulator is empty: call update() first")
        present = self.counts > 0
        if int(present.sum()) < 2:
            raise ValueError(
                f"collapse statistics need at least 2 classes with samples, got counts "
                f"{self.counts.tolist()}"
            )
        return present

    @property
    def n(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def class_means(self) -> torch.Tensor:
        """(K_seen, d) means μ_c of the classes seen, in label order."""
        return self._means[self._present()].clone()

    def class_variances(self) -> torch.Tensor:
        """(K_seen,) Var_c = (1/n_c)·Σ_{i∈c}‖h_i − μ_c‖²."""
        present = self._present()
        return self._traces[present] / self.counts[present].to(torch.float64)

    def global_mean(self, global_mean: str = "sample") -> torch.Tensor:
        """μ_G: the sample mean (``sample``) or the mean of the class means (``class_balanced``)."""
        if global_mean not in GLOBAL_MEANS:
            raise ValueError(f"unknown global_mean {global_mean!r}; expected one of {GLOBAL_MEANS}")
        present = self._present()
        means = self._means[present]
        if global_mean == "class_balanced":
            return means.mean(0)
        w = self.counts[present].to(torch.float64)
        return (w[:, None] * means).sum(0) / w.sum()

    def within_covariance(self) -> torch.Tensor:
        """(d, d) Σ_W = (1/N)(H − M)(H − M)ᵀ."""
        self._present()
        return self._scatter / self.n

    def between_covariance(self, global_mean: str = "sample") -> torch.Tensor:
        """(d, d) Σ_B = (1/K)·Σ_c (μ_c − μ_G)(μ_c − μ_G)ᵀ."""
        centred = self.class_means() - self.global_mean(global_mean)
        return centred.T @ centred / centred.shape[0]

    def second_pass(self, batches: Iterable) -> tuple[torch.Tensor, int]:
        """(Σ_i ‖h_i − μ_{c(i)}‖, N) over an iterable of (h, labels) batches (for TCV_1)."""
        self._present()
        total, count = torch.zeros((), dtype=torch.float64, device=self.counts.device), 0
        for h, labels in batches:
            h, labels = check_labelled(h, labels, self.num_classes)
            labels = labels.to(total.device)
            if labels.numel() and not bool((self.counts[labels] > 0).all()):
                unseen = sorted(set(labels[self.counts[labels] == 0].tolist()))
                raise ValueError(f"second pass has labels {unseen} never seen in the first pass")
            x = h.detach().to(device=total.device, dtype=torch.float64)
            total += torch.linalg.vector_norm(x - self._means[labels], dim=1).sum()
            count += h.shape[0]
        return total, count
