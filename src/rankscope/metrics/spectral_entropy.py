"""RankMe and its variants (definitions §4). Results from different variants never compare.

Each variant is a spectral entropy of an embedding matrix Z (..., N, D) with one row per
sample; the variant's name is the label to log its output under (:func:`rankme_all`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rankscope.metrics._validate import check_matrix, check_spectrum
from rankscope.metrics.ranks import numerical_rank
from rankscope.metrics.spectra import singular_values

__all__ = ["RANKME_VARIANTS", "RankMeVariant", "rankme", "rankme_all", "rankme_from_spectrum"]


@dataclass(frozen=True)
class RankMeVariant:
    """How a RankMe variant turns a spectrum into a number.

    ``centre``: subtract the sample mean of Z first. ``power``: distribution ∝ s^power.
    ``eps``: added to each p_k without renormalizing (Σp = 1 + kε). ``output``: ``"exp"`` for
    exp(H), ``"log_dim"`` for H/log D, ``"log_rank"`` for H/log(rank) (weightwatcher rank).
    """

    centre: bool
    power: int
    eps: float
    output: str
    source: str


RANKME_VARIANTS: dict[str, RankMeVariant] = {
    "rankme": RankMeVariant(False, 1, 1e-7, "exp", "Garrido et al. 2023, calc_rankme copies"),
    "rankme_spt": RankMeVariant(False, 1, 1e-5, "exp", "stable-pretraining callbacks.RankMe"),
    "rankme_cov": RankMeVariant(True, 2, 1e-7, "exp", "reptrix get_rankme (PCA variance ratio)"),
    "rankme_normalized": RankMeVariant(False, 1, 0.0, "log_dim", "standalone rankme package"),
    "ww_entropy": RankMeVariant(False, 2, 0.0, "log_rank", "WeightWatcher entropy"),
}


def _variant(name: str) -> RankMeVariant:
    if name not in RANKME_VARIANTS:
        raise ValueError(
            f"unknown RankMe variant {name!r}; expected one of {tuple(RANKME_VARIANTS)}"
        )
    return RANKME_VARIANTS[name]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    safe = torch.where(p > 0, p, 1.0)
    return -(p * torch.log(safe)).sum(-1)


def rankme_from_spectrum(
    s: torch.Tensor,
    variant: str = "rankme",
    *,
    eps: float | None = None,
    shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """A RankMe variant of the singular values ``s`` (..., k) of Z (definitions §4).

    For ``rankme_cov`` pass the spectrum of the **centred** Z. ``eps`` overrides the
    variant's ε. ``shape`` = (N, D) of Z gives D for ``rankme_normalized`` and max(N, D) for the
    weightwatcher rank of ``ww_entropy`` (default (k, k)). 0 for the zero matrix; the
    normalized variants are 0 when D (or the rank) is ≤ 1.

    >>> float(rankme_from_spectrum(torch.ones(4), eps=0.0))
    4.0
    """
    v = _variant(variant)
    s = check_spectrum(s)
    eps = v.eps if eps is None else eps
    shape = shape or (s.shape[-1], s.shape[-1])
    w = s**v.power
    total = w.sum(-1, keepdim=True)
    p = w / torch.where(total > 0, total, 1.0) + eps
    h = _entropy(p)
    nonzero = total.squeeze(-1) > 0
    if v.output == "exp":
        return torch.where(nonzero, torch.exp(h), 0.0)
    if v.output == "log_dim":
        denom = torch.full_like(h, math.log(max(shape[-1], 1)))
    else:
        r = numerical_rank(s, "weightwatcher", shape=shape).to(h.dtype)
        denom = torch.log(r.clamp_min(1.0))
    return torch.where(nonzero & (denom > 0), h / torch.where(denom > 0, denom, 1.0), 0.0)


def rankme(
    z: torch.Tensor,
    variant: str = "rankme",
    *,
    eps: float | None = None,
    max_samples: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """RankMe variant of embeddings ``z`` (..., N, D), one row per sample (definitions §4).

    ``max_samples`` keeps the first rows only (re-implementations cap N at 25 600; shuffle
    beforehand with your own generator if the order matters). Shape (...,).
    """
    v = _variant(variant)
    z = check_matrix(z, name="embeddings z")
    if max_samples is not None:
        z = z[..., :max_samples, :]
    z = z.to(dtype)
    if v.centre:
        z = z - z.mean(-2, keepdim=True)
    return rankme_from_spectrum(
        singular_values(z, dtype=dtype), variant, eps=eps, shape=z.shape[-2:]
    )


def rankme_all(z: torch.Tensor, *, max_samples: int | None = None) -> dict[str, torch.Tensor]:
    """Every variant of :data:`RANKME_VARIANTS`, keyed by its label, from two SVDs."""
    z = check_matrix(z, name="embeddings z")
    if max_samples is not None:
        z = z[..., :max_samples, :]
    z = z.to(torch.float64)
    spectra = {False: singular_values(z), True: singular_values(z - z.mean(-2, keepdim=True))}
    return {
        name: rankme_from_spectrum(spectra[v.centre], name, shape=z.shape[-2:])
        for name, v in RANKME_VARIANTS.items()
    }
