"""Streaming representation statistics and the ranks computed from them (definitions §5).

A layer's outputs arrive in batches of shape (B, d) (one row per sample). The
:class:`CovarianceAccumulator` keeps the sufficient statistics in float64 so memory does not
grow with the dataset, and ``merge`` combines accumulators from different workers.
"""

from __future__ import annotations

import math

import torch

from rankscope.metrics._validate import check_matrix
from rankscope.metrics.ranks import (
    effective_rank,
    numerical_rank,
    participation_ratio,
    stable_rank,
    variance_dimension,
)

__all__ = [
    "CONV_MODES",
    "CovarianceAccumulator",
    "conv_samples",
    "representation_metrics",
    "representation_rank",
]

CONV_MODES = ("channelwise", "flatten")
# Policies whose tolerance is eps-based: on the covariance route they act on λ (see below).
_EPS_POLICIES = ("torch", "numpy", "gram", "weightwatcher", "feng")


class CovarianceAccumulator:
    """Running (n, mean, centred scatter) of rows x ∈ R^d in float64, with ``merge``.

    Updates use Chan et al.'s pairwise formula, so the centred covariance keeps full float64
    precision even when the mean is large; Σx = n·mean and Σxxᵀ = scatter + n·mean meanᵀ are
    exposed as ``sum`` and ``sum_outer``. ``dim`` is inferred from the first batch if omitted.
    """

    def __init__(self, dim: int | None = None, *, device: torch.device | str | None = None):
        self.n = 0
        self.dim = dim
        self._device = device
        self._mean: torch.Tensor | None = None  # (d,)
        self._scatter: torch.Tensor | None = None  # (d, d) Σ (x - mean)(x - mean)ᵀ

    def _init(self, d: int, device: torch.device) -> None:
        if self.dim is not None and d != self.dim:
            raise ValueError(f"batch has {d} features, this accumulator holds dim={self.dim}")
        self.dim = d
        if self._mean is None:
            dev = self._device or device
            self._mean = torch.zeros(d, dtype=torch.float64, device=dev)
            self._scatter = torch.zeros(d, d, dtype=torch.float64, device=dev)

    def _combine(self, n_b: int, mean_b: torch.Tensor, scatter_b: torch.Tensor) -> None:
        total = self.n + n_b
        delta = mean_b - self._mean
        self._scatter += scatter_b + torch.outer(delta, delta) * (self.n * n_b / total)
        self._mean += delta * (n_b / total)
        self.n = total

    def update(self, batch: torch.Tensor) -> CovarianceAccumulator:
        """Add the rows of ``batch`` (B, d). Returns self."""
        batch = check_matrix(batch, name="batch")
        if batch.ndim != 2:
            raise ValueError(f"batch must have shape (B, d), got {tuple(batch.shape)}")
        self._init(batch.shape[1], batch.device)
        if batch.shape[0] == 0:
            return self
        x = batch.detach().to(device=self._mean.device, dtype=torch.float64)
        mean_b = x.mean(0)
        xc = x - mean_b
        self._combine(x.shape[0], mean_b, xc.T @ xc)
        return self

    def merge(self, other: CovarianceAccumulator) -> CovarianceAccumulator:
        """Add another accumulator's statistics into this one (in place). Returns self."""
        if not isinstance(other, CovarianceAccumulator):
            raise TypeError(f"can only merge a CovarianceAccumulator, got {type(other).__name__}")
        if other.n == 0:
            return self
        self._init(other.dim, other._mean.device)
        self._combine(
            other.n, other._mean.to(self._mean.device), other._scatter.to(self._mean.device)
        )
        return self

    def _need_data(self) -> None:
        if self.n == 0:
            raise ValueError("the accumulator is empty: call update() with at least one row first")

    @property
    def mean(self) -> torch.Tensor:
        """(d,) float64 sample mean."""
        self._need_data()
        return self._mean.clone()

    @property
    def sum(self) -> torch.Tensor:
        """(d,) Σx."""
        return self.mean * self.n

    @property
    def sum_outer(self) -> torch.Tensor:
        """(d, d) Σxxᵀ."""
        self._need_data()
        return self._scatter + self.n * torch.outer(self._mean, self._mean)

    def covariance(self, centre: bool = True) -> torch.Tensor:
        """(d, d) C = H_cᵀH_c/N (``centre=True``, divides by N, not N−1) or Σxxᵀ/N."""
        self._need_data()
        return (self._scatter if centre else self.sum_outer) / self.n

    def spectrum(self, centre: bool = True) -> torch.Tensor:
        """Eigenvalues λ of :meth:`covariance`, descending, clamped at 0. λ_i = s_i²/N."""
        lam = torch.linalg.eigvalsh(self.covariance(centre)).flip(-1)
        return lam.clamp_min(0.0)

    def singular_values(self, centre: bool = True) -> torch.Tensor:
        """s_i = sqrt(N·λ_i): the singular values of the (centred) N×d data matrix.

        The covariance route squares the condition number, so s_i below ~sqrt(d·eps)·s_1 are
        not resolved (exact zeros can come out near 1e-8·s_1).
        """
        return torch.sqrt(self.spectrum(centre) * self.n)


def representation_rank(
    acc: CovarianceAccumulator,
    policy: str = "torch",
    *,
    centre: bool = True,
    rtol: float | None = None,
    atol: float | None = None,
) -> torch.Tensor:
    """Numerical rank of the (centred) data matrix from a covariance accumulator (§1, §5).

    Which spectrum the tolerance is on:
    - eps-based policies (``torch``, ``numpy``, ``gram``, ``weightwatcher``, ``feng``) act on the
      eigenvalues λ of the d×d covariance, i.e. ``matrix_rank(C)``: λ_i > d·eps·λ_1, the same
      as s_i > sqrt(d·eps)·s_1. (An eps-level tolerance on s cannot be honoured, because λ is
      only known to eps·λ_1.) ``atol`` is then in units of λ.
    - every other policy (``relative``, ``absolute``, ``galanti``, ...) acts on the singular
      values s = sqrt(N·λ) of the N×d data matrix, as in definitions §1 (``relative`` τ on s
      is τ² on λ). ``atol`` is then in units of s.
    """
    if not isinstance(acc, CovarianceAccumulator):
        raise TypeError(
            f"representation_rank takes a CovarianceAccumulator, got {type(acc).__name__}; "
            "for a data matrix H (N, d) use CovarianceAccumulator().update(H)"
        )
    lam = acc.spectrum(centre)
    d = lam.shape[-1]
    if policy in _EPS_POLICIES:
        return numerical_rank(lam, policy, shape=(d, d), rtol=rtol, atol=atol)
    s = torch.sqrt(lam * acc.n)
    return numerical_rank(s, policy, shape=(acc.n, d), rtol=rtol, atol=atol)


def representation_metrics(
    acc: CovarianceAccumulator,
    *,
    centre: bool = True,
    policy: str = "torch",
    rtol: float | None = None,
    atol: float | None = None,
    threshold: float = 0.99,
) -> dict[str, float]:
    """Rank notions of a layer's representation, with the provenance to store beside them.

    Keys: ``numerical_rank`` (see :func:`representation_rank`), ``stable_rank`` (tr C/λ_max),
    ``effective_rank`` (of s ∝ sqrt λ), ``participation_ratio`` ((Σλ)²/Σλ²),
    ``variance_dimension`` (delve idim at ``threshold``), ``saturation`` (idim/d),
    ``detectable_rank`` (min(N, d)), ``n_samples``, ``centre``.
    """
    s = acc.singular_values(centre)
    idim = int(variance_dimension(s, threshold))
    return {
        "numerical_rank": int(
            representation_rank(acc, policy, centre=centre, rtol=rtol, atol=atol)
        ),
        "stable_rank": float(stable_rank(s)),
        "effective_rank": float(effective_rank(s)),
        "participation_ratio": float(participation_ratio(s)),
        "variance_dimension": idim,
        "saturation": idim / acc.dim,
        "detectable_rank": min(acc.n, acc.dim),
        "n_samples": acc.n,
        "centre": centre,
    }


def conv_samples(z: torch.Tensor, conv_mode: str = "channelwise") -> torch.Tensor:
    """Reshape conv activations (B, C, *spatial) into a data matrix (definitions §5).

    ``channelwise``: every spatial position is a sample, (B·prod(spatial), C).
    ``flatten``: one sample per input, (B, C·prod(spatial)). (``frequency`` lives in
    :func:`rankscope.metrics.frequency_channel_covariance`.)
    """
    if conv_mode not in CONV_MODES:
        raise ValueError(f"unknown conv_mode {conv_mode!r}; expected one of {CONV_MODES}")
    if not isinstance(z, torch.Tensor) or z.ndim < 3:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"conv activations must have shape (B, C, *spatial), got {got}")
    b, c = z.shape[:2]
    if conv_mode == "flatten":
        return z.reshape(b, c * math.prod(z.shape[2:]))
    return z.movedim(1, -1).reshape(-1, c)
