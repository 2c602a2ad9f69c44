"""Declared metadata of every scalar metric: range, scale behaviour, differentiability, input.

``METRICS[name]`` is a :class:`MetricInfo`; parametrized metrics are registered at a fixed
parameter (e.g. ``schatten_norm_p0.5``). One property-test suite runs over all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from rankscope.metrics import coi, neural_collapse, norms, ranks
from rankscope.metrics.expansion import depth_expansion, linear_representation_cost
from rankscope.metrics.representations import CovarianceAccumulator, representation_rank
from rankscope.metrics.spectra import singular_values
from rankscope.metrics.spectral_entropy import rankme, rankme_from_spectrum

__all__ = ["INPUT_KINDS", "INVARIANCES", "METRICS", "MetricInfo"]

INPUT_KINDS = ("spectrum", "samples", "matrix", "labelled")
INVARIANCES = ("orthogonal", "feature_orthogonal", "permutation")
Bound = Callable[[tuple[int, int]], float]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric promises. ``fn``'s calling convention depends on ``input_kind``:

    - ``spectrum``: ``fn(s, shape)``, s (..., k) singular values of an (m, n) matrix;
    - ``samples``: ``fn(z)``, z (..., N, d) one row per sample (centred inside if needed);
    - ``matrix``: ``fn(a)``, a (..., N, w) (e.g. a representation for the cost of identity);
    - ``labelled``: ``fn(h, labels)``, h (N, d), labels (N,).

    ``lower``/``upper`` bound the value on nonzero inputs as functions of the trailing shape
    (m, n) or (N, d); ``zero_value`` is the value on an all-zero input (None: not defined).
    ``scale``: ``invariant`` (f(cx) = f(x), c > 0), ``homogeneous`` (f(cx) = c^degree f(x)) or
    ``none``. ``invariance``: the transforms leaving it unchanged — ``orthogonal``
    (x -> UxV), ``feature_orthogonal`` (z -> PzQ, P a sample permutation, Q orthogonal) or
    ``permutation`` (row and column permutations). ``batched``: accepts leading batch dims.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    input_kind: str
    lower: Bound
    upper: Bound
    scale: str = "invariant"
    degree: float = 0.0
    differentiable: bool = True
    zero_value: float | None = 0.0
    invariance: str = "orthogonal"
    batched: bool = True
    section: str = ""

    def __post_init__(self):
        if self.input_kind not in INPUT_KINDS or self.invariance not in INVARIANCES:
            raise ValueError(f"bad MetricInfo {self.name}: {self.input_kind}, {self.invariance}")
        if self.scale not in ("invariant", "homogeneous", "none"):
            raise ValueError(f"bad MetricInfo {self.name}: scale {self.scale!r}")

    def evaluate(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the metric to a matrix/data tensor (the SVD is taken here for spectrum kind)."""
        if self.input_kind == "spectrum":
            return self.fn(singular_values(x), tuple(x.shape[-2:]))
        if self.input_kind == "labelled":
            return self.fn(x, labels)
        return self.fn(x)


def _min(shape: tuple[int, int]) -> float:
    return float(min(shape))


def _const(v: float) -> Bound:
    return lambda shape: v


def _rankme_bounds(eps: float) -> tuple[Bound, Bound]:
    """Exact range of exp(H(p)) with p = s/Σs + ε over k = min(m, n) values."""

    def lower(shape):  # all mass on one value (k = 1 is the tightest case)
        return math.exp(-(1 + eps) * math.log1p(eps))

    def upper(shape):  # uniform, by concavity
        q = 1 / min(shape) + eps
        return math.exp(-min(shape) * q * math.log(q))

    return lower, upper


def _spectral(name, fn, lower, upper, **kw) -> MetricInfo:
    return MetricInfo(name, fn, "spectrum", lower, upper, section=kw.pop("section", ""), **kw)


def _cov(fn) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda z: fn(CovarianceAccumulator().update(z))


_INF, _ZERO, _ONE = _const(math.inf), _const(0.0), _const(1.0)
_NOGRAD = {"batched": False, "differentiable": False, "invariance": "feature_orthogonal"}
_REP = {"input_kind": "samples", **_NOGRAD, "section": "§5"}
_LAB = {"input_kind": "labelled", **_NOGRAD, "section": "§14", "zero_value": None}
_rm_lo, _rm_hi = _rankme_bounds(1e-7)
_spt_lo, _spt_hi = _rankme_bounds(1e-5)
_cov_hi = lambda shape: _rm_hi(shape)  # noqa: E731


_S = _spectral
_ENTRIES = (
    _S(
        "numerical_rank",
        lambda v, sh: ranks.numerical_rank(v, shape=sh),
        _ONE,
        _min,
        differentiable=False,
        section="§1",
    ),
    _S("stable_rank", lambda v, sh: ranks.stable_rank(v), _ONE, _min, section="§2"),
    _S("effective_rank", lambda v, sh: ranks.effective_rank(v), _ONE, _min, section="§3"),
    _S(
        "participation_ratio",
        lambda v, sh: ranks.participation_ratio(v),
        _ONE,
        _min,
        section="§5",
    ),
    _S(
        "variance_dimension",
        lambda v, sh: ranks.variance_dimension(v),
        _ONE,
        _min,
        differentiable=False,
        section="§5",
    ),
    _S(
        "nuclear_norm",
        lambda v, sh: norms.nuclear_norm(v),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=1.0,
        section="§6",
    ),
    _S(
        "frobenius_norm",
        lambda v, sh: norms.frobenius_norm(v),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=1.0,
        section="§6",
    ),
    _S(
        "operator_norm",
        lambda v, sh: norms.operator_norm(v),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=1.0,
        section="§6",
    ),
    _S(
        "schatten_norm_p0.5",
        lambda v, sh: norms.schatten_norm(v, 0.5, shape=sh),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=1.0,
        section="§6",
    ),
    _S(
        "schatten_power_p0.5",
        lambda v, sh: norms.schatten_power(v, 0.5, shape=sh),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=0.5,
        section="§6",
    ),
    _S(
        "smoothed_schatten_power_p0.5",
        lambda v, sh: norms.smoothed_schatten_power(v, 0.5),
        _ZERO,
        _INF,
        scale="none",
        zero_value=None,
        section="§6",
    ),
    _S(
        "linear_representation_cost_L3",
        lambda v, sh: linear_representation_cost(v, 3, shape=sh),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=2 / 3,
        section="§9",
    ),
    _S(
        "depth_expansion_r1",
        lambda v, sh: depth_expansion(v, shape=sh).r1,
        _const(-math.inf),
        _INF,
        scale="none",
        section="§9",
    ),
    _S(
        "depth_expansion_r2",
        lambda v, sh: depth_expansion(v, shape=sh).r2,
        _ZERO,
        _INF,
        scale="none",
        section="§9",
    ),
    _S(
        "log_pdet",
        lambda v, sh: norms.log_pdet(v, shape=sh),
        _const(-math.inf),
        _INF,
        scale="none",
        section="§8",
    ),
    _S(
        "distance_to_rank_fro_k1",
        lambda v, sh: norms.distance_to_rank(v, 1),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=1.0,
        section="§7",
    ),
    _S(
        "distance_to_rank_op_k1",
        lambda v, sh: norms.distance_to_rank(v, 1, norm="op"),
        _ZERO,
        _INF,
        scale="homogeneous",
        degree=1.0,
        section="§7",
    ),
    _S(
        "distance_to_rank_relative_k1",
        lambda v, sh: norms.distance_to_rank(v, 1, norm="relative"),
        _ZERO,
        _ONE,
        section="§7",
    ),
    _S(
        "rankme",
        lambda v, sh: rankme_from_spectrum(v, shape=sh),
        _rm_lo,
        _rm_hi,
        section="§4",
    ),
    _S(
        "rankme_spt",
        lambda v, sh: rankme_from_spectrum(v, "rankme_spt", shape=sh),
        _spt_lo,
        _spt_hi,
        section="§4",
    ),
    _S(
        "rankme_normalized",
        lambda v, sh: rankme_from_spectrum(v, "rankme_normalized", shape=sh),
        _ZERO,
        _ONE,
        section="§4",
    ),
    _S(
        "ww_entropy",
        lambda v, sh: rankme_from_spectrum(v, "ww_entropy", shape=sh),
        _ZERO,
        _ONE,
        section="§4",
    ),
    MetricInfo(
        "rankme_cov",
        lambda z: rankme(z, "rankme_cov"),
        "samples",
        _rm_lo,
        _cov_hi,
        invariance="feature_orthogonal",
        section="§4",
    ),
    MetricInfo(
        "cost_of_identity",
        lambda a: coi.cost_of_identity(a, bias_row=False),
        "matrix",
        _ZERO,
        _INF,
        invariance="permutation",
        section="§12",
    ),
    MetricInfo("representation_rank", _cov(representation_rank), lower=_ONE, upper=_min, **_REP),
    MetricInfo(
        "representation_stable_rank",
        _cov(lambda a: ranks.stable_rank(a.singular_values())),
        lower=_ONE,
        upper=_min,
        **_REP,
    ),
    MetricInfo(
        "representation_effective_rank",
        _cov(lambda a: ranks.effective_rank(a.singular_values())),
        lower=_ONE,
        upper=_min,
        **_REP,
    ),
    MetricInfo("nc1_pinv", neural_collapse.nc1, lower=_ZERO, upper=_INF, **_LAB),
    MetricInfo(
        "nc1_svd",
        lambda h, y: neural_collapse.nc1(h, y, variant="svd"),
        lower=_ZERO,
        upper=_INF,
        **_LAB,
    ),
    MetricInfo(
        "nc1_quotient",
        lambda h, y: neural_collapse.nc1(h, y, variant="quotient"),
        lower=_ZERO,
        upper=_INF,
        **_LAB,
    ),
    MetricInfo(
        "tcv1",
        neural_collapse.tcv1,
        lower=_ZERO,
        upper=_INF,
        scale="homogeneous",
        degree=1.0,
        **_LAB,
    ),
    MetricInfo(
        "tcv2",
        neural_collapse.tcv2,
        lower=_ZERO,
        upper=_INF,
        scale="homogeneous",
        degree=1.0,
        **_LAB,
    ),
    MetricInfo("cdnv", neural_collapse.cdnv, lower=_ZERO, upper=_INF, **_LAB),
    MetricInfo(
        "nc2_etf_error", neural_collapse.nc2_etf_error, lower=_ZERO, upper=_const(2.0), **_LAB
    ),
    MetricInfo("nc2_equinorm", neural_collapse.nc2_equinorm, lower=_ZERO, upper=_INF, **_LAB),
)

METRICS: dict[str, MetricInfo] = {m.name: m for m in _ENTRIES}
