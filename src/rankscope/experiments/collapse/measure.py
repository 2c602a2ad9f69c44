"""Per-layer measurements shared by the collapse family, as typed (frozen) dataclasses.

Ranks (definitions §1): the thresholds named in docs/results.md, as generic policies or as the
paper presets of :data:`rankscope.metrics.RANK_PRESETS`. Collapse statistics of
representations (definitions §14): NC1 (pinv, svd, quotient), TCV_1, TCV_2, CDNV, with the
sample global mean. A quantity that has no meaning for the data (class means that coincide,
a zero matrix) is ``math.nan`` and its reason is written under ``undefined``: a network
collapsed to a constant predictor is measured, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from rankscope.experiments.collapse.bounds import LayerBound, network_bounds
from rankscope.experiments.collapse.data import check_labels
from rankscope.metrics import (
    cdnv,
    class_stats,
    distance_to_rank,
    nc1,
    numerical_rank,
    singular_values,
    stable_rank,
    tcv1,
    tcv2,
)

__all__ = [
    "RANKS",
    "CollapseStats",
    "LayerMeasure",
    "collapse_stats",
    "constant_predictor",
    "measure_network",
    "spectrum_ranks",
]

# label -> (policy or paper preset, its tolerances): the ranks every layer reports
RANKS: dict[str, tuple[str, dict[str, float]]] = {
    "torch": ("torch", {}),
    "rel_1e-1": ("relative", {"rtol": 1e-1}),
    "rel_1e-2": ("relative", {"rtol": 1e-2}),
    "rel_1e-3": ("relative", {"rtol": 1e-3}),
    "galanti": ("galanti", {}),
}
_TINY = 1e-300


@dataclass(frozen=True)
class CollapseStats:
    """Within-class variability of one representation (training set, sample global mean)."""

    tcv1: float
    tcv2: float
    nc1_pinv: float
    nc1_svd: float
    nc1_quotient: float
    cdnv: float
    undefined: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerMeasure:
    """One weight matrix W_l: ranks, tail, the NRC bound and the collapse of H_{l−1}."""

    layer: str
    shape: tuple[int, int]
    ranks: dict[str, int]
    stable_rank: float
    rel_tail: float  # d_K^F(W)/‖W‖_F
    bound: LayerBound
    tightness: float  # s_{K+1}/bound_op, only near a critical point
    nc_prev: CollapseStats
    undefined: dict[str, str] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        """Both non-stationary inequalities (:attr:`LayerBound.holds`)."""
        return self.bound.holds

    @property
    def relative_residual(self) -> float:
        """‖R_l‖₂/s_1(W_l) (:attr:`LayerBound.relative_residual`)."""
        return self.bound.relative_residual


def spectrum_ranks(s: torch.Tensor, shape: tuple[int, int], eps_dtype: torch.dtype) -> dict:
    """Numerical rank of one spectrum under every entry of :data:`RANKS`."""
    return {
        name: int(numerical_rank(s, pol, shape=shape, eps_dtype=eps_dtype, **tol))
        for name, (pol, tol) in RANKS.items()
    }


def collapse_stats(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> CollapseStats:
    """NC1 (pinv/svd/quotient), TCV_1, TCV_2, CDNV of features h (N, d) with labels y (N,).

    NC1 and CDNV divide by the spread of the class means; when those coincide (a collapsed,
    constant representation) they are NaN with the reason under ``undefined``.
    """
    st = class_stats(h, y, num_classes=num_classes)
    out: dict = {"tcv1": float(tcv1(h, y)), "tcv2": float(tcv2(st))}
    undefined: dict[str, str] = {}
    between = float(torch.trace(st.between_covariance("sample")))
    scale = float(torch.trace(st.within_covariance())) + between
    if between <= 1e-24 * max(scale, _TINY) or between == 0.0:
        why = f"class means coincide (tr Σ_B = {between:.3g})"
        for key in ("nc1_pinv", "nc1_svd", "nc1_quotient", "cdnv"):
            out[key] = math.nan
            undefined[key] = why
        return CollapseStats(**out, undefined=undefined)
    for variant in ("pinv", "svd", "quotient"):
        out[f"nc1_{variant}"] = float(nc1(st, variant=variant))
    means = st.class_means()
    gaps = torch.cdist(means, means) + torch.eye(
        means.shape[0], dtype=means.dtype, device=means.device
    )
    if bool((gaps <= 0).any()):
        out["cdnv"] = math.nan
        undefined["cdnv"] = "two class means coincide"
    else:
        out["cdnv"] = float(cdnv(st))
    return CollapseStats(**out, undefined=undefined)


def constant_predictor(logits: torch.Tensor, rtol: float = 1e-8) -> bool:
    """True when every sample gets (numerically) the same output (N, K)."""
    spread = float((logits - logits.mean(0)).abs().max())
    return spread <= rtol * (1.0 + float(logits.abs().max()))


def _layer_entry(
    tag: str, w: torch.Tensor, b: LayerBound, nc: CollapseStats, k: int
) -> LayerMeasure:
    s = singular_values(w.detach())
    undefined: dict[str, str] = {}
    rel_tail = float(distance_to_rank(s, k, norm="relative"))
    if b.fro == 0.0:
        rel_tail = math.nan
        undefined["rel_tail"] = "W is the zero matrix"
    if not math.isfinite(b.relative_residual):
        undefined["relative_residual"] = "W is the zero matrix (s_1 = 0)"
    # bound tightness is only meaningful near a critical point (docs/results.md pitfall)
    if b.relative_residual < 0.05 and b.bound_op > 0:
        tightness = b.s_k1 / b.bound_op
    else:
        tightness = math.nan
        undefined["tightness"] = "not near a critical point (‖R‖₂/s_1 >= 0.05)"
    return LayerMeasure(
        layer=tag,
        shape=(int(w.shape[0]), int(w.shape[1])),
        ranks=spectrum_ranks(s, tuple(w.shape), w.dtype),
        stable_rank=float(stable_rank(s)),
        rel_tail=rel_tail,
        bound=b,
        tightness=tightness,
        nc_prev=nc,
        undefined=undefined,
    )


def measure_network(
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lam: float,
    num_classes: int,
) -> tuple[list[LayerMeasure], bool]:
    """Per-layer measurements (ranks, tail, bound, NC of H_{l−1}) and whether the network is
    a constant predictor.

    Layer l is paired with the collapse statistics of the embeddings H_{l−1} that feed it
    (docs/results.md usage notes), so ``layers[0].nc_prev`` describes the inputs.
    """
    check_labels(x, y, num_classes)
    ws = [w.detach().to(torch.float64) for w in weights]
    x = x.to(torch.float64)
    bounds, h_prev = network_bounds(ws, x, y, lam=lam, num_classes=num_classes)
    layers = [
        _layer_entry(f"W{i + 1}", w, b, collapse_stats(h, y, num_classes), num_classes)
        for i, (w, b, h) in enumerate(zip(ws, bounds, h_prev))
    ]
    logits = h_prev[-1] @ ws[-1].T  # (N, K): H_{L−1} feeds the last layer, no bias
    return layers, constant_predictor(logits)
