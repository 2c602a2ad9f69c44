"""NC1-NC4, TCV and CDNV from class statistics or one-shot from (H, labels) (definitions §14).

Every function takes either a :class:`ClassStatsAccumulator` (streaming) or features
``h`` (N, d) with integer ``labels`` (N,) (one-shot; K = ``num_classes`` or max(label) + 1).
TCV_1 and NC4 need a second look at each sample: pass the same data again as ``batches``,
an iterable of (h, labels), when you give an accumulator.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch

from rankscope.metrics._validate import check_matrix
from rankscope.metrics.collapse import NC1_VARIANTS, ClassStatsAccumulator, check_labelled

__all__ = [
    "cdnv",
    "class_stats",
    "nc1",
    "nc2_equinorm",
    "nc2_etf_error",
    "nc3",
    "nc4",
    "tcv1",
    "tcv2",
]


def class_stats(
    h_or_stats, labels=None, *, num_classes: int | None = None
) -> ClassStatsAccumulator:
    """The accumulator itself, or a one-shot one built from features (N, d) and labels (N,)."""
    if isinstance(h_or_stats, ClassStatsAccumulator):
        return h_or_stats
    if labels is None:
        raise ValueError("labels are required when features h are given (or pass an accumulator)")
    h, labels = check_labelled(h_or_stats, labels, num_classes)
    k = num_classes if num_classes is not None else (int(labels.max()) + 1 if labels.numel() else 0)
    if k < 2 or int(torch.unique(labels).numel()) < 2:
        raise ValueError(
            f"collapse statistics need at least 2 classes; labels of shape {tuple(labels.shape)} "
            f"contain {int(torch.unique(labels).numel())} distinct value(s)"
        )
    return ClassStatsAccumulator(k, h.shape[1]).update(h, labels)


def _batches(h_or_stats, labels, batches) -> Iterable:
    if isinstance(h_or_stats, ClassStatsAccumulator):
        if batches is None:
            raise ValueError(
                "with an accumulator, pass the data again as batches=[(h, labels), ...]"
            )
        return batches
    return [(h_or_stats, labels)]


def nc1(
    h_or_stats,
    labels=None,
    *,
    variant: str = "pinv",
    global_mean: str = "sample",
    num_classes: int | None = None,
    rtol: float | None = None,
) -> torch.Tensor:
    """NC1 within-class variability (definitions §14).

    ``pinv`` (Papyan–Han–Donoho): (1/K)·tr(Σ_W Σ_B^†), eigenvalues of Σ_B above
    rtol·λ_max inverted (rtol default d·eps, as ``torch.linalg.pinv``); ``svd``: Σ_B inverted
    on its top K−1 eigenpairs; ``quotient``: tr Σ_W / tr Σ_B. Σ_B^† is unstable when the class
    means nearly lie in a lower-dimensional subspace: report TCV and ``quotient`` beside it.
    """
    if variant not in NC1_VARIANTS:
        raise ValueError(f"unknown NC1 variant {variant!r}; expected one of {NC1_VARIANTS}")
    st = class_stats(h_or_stats, labels, num_classes=num_classes)
    sw, sb = st.within_covariance(), st.between_covariance(global_mean)
    if variant == "quotient":
        tb = torch.trace(sb)
        return torch.trace(sw) / tb if tb > 0 else sw.new_tensor(float("inf"))
    k = int((st.counts > 0).sum())
    lam, vec = torch.linalg.eigh(sb)  # ascending
    lam, vec = lam.flip(-1), vec.flip(-1)
    if variant == "svd":
        keep = torch.arange(lam.shape[0], device=lam.device) < k - 1
        keep &= lam > 0
    else:
        tol = (lam.shape[0] * torch.finfo(lam.dtype).eps) if rtol is None else rtol
        keep = lam > tol * lam[0].clamp_min(0)
    proj = ((vec.T @ sw) * vec.T).sum(1)  # v_jᵀ Σ_W v_j
    return (torch.where(keep, proj / torch.where(keep, lam, 1.0), 0.0)).sum() / k


def tcv2(h_or_stats, labels=None, *, num_classes: int | None = None) -> torch.Tensor:
    """TCV_2 = ‖H − M‖_F/√N = √(tr Σ_W) (definitions §14)."""
    return torch.sqrt(
        torch.trace(class_stats(h_or_stats, labels, num_classes=num_classes).within_covariance())
    )


def tcv1(h_or_stats, labels=None, *, batches: Iterable | None = None) -> torch.Tensor:
    """TCV_1 = (1/N)·Σ_i ‖h_i − μ_{c(i)}‖_2 (definitions §14; two passes when streaming)."""
    st = class_stats(h_or_stats, labels)
    total, count = st.second_pass(_batches(h_or_stats, labels, batches))
    if count == 0:
        raise ValueError("TCV_1's second pass saw no samples")
    return total / count


def cdnv(h_or_stats, labels=None, *, num_classes: int | None = None) -> torch.Tensor:
    """Mean over class pairs c ≠ c′ of (Var_c + Var_c′)/(2‖μ_c − μ_c′‖²) (Galanti et al. 2022)."""
    st = class_stats(h_or_stats, labels, num_classes=num_classes)
    mu, var = st.class_means(), st.class_variances()
    i, j = torch.tensor(list(itertools.combinations(range(mu.shape[0]), 2)), device=mu.device).T
    dist2 = ((mu[i] - mu[j]) ** 2).sum(1)
    return ((var[i] + var[j]) / (2 * dist2)).mean()


def _centred_means(st: ClassStatsAccumulator, global_mean: str) -> torch.Tensor:
    return st.class_means() - st.global_mean(global_mean)  # (K, d) rows μ_c − μ_G


def nc2_etf_error(h_or_stats, labels=None, *, global_mean: str = "sample") -> torch.Tensor:
    """‖G/‖G‖_F − (I_K − 11ᵀ/K)/√(K−1)‖_F with G = M̄ᵀM̄ (definitions §14), in [0, 2]."""
    m = _centred_means(class_stats(h_or_stats, labels), global_mean)
    k = m.shape[0]
    g = m @ m.T
    etf = (torch.eye(k, dtype=g.dtype, device=g.device) - 1.0 / k) / (k - 1) ** 0.5
    return torch.linalg.matrix_norm(g / torch.linalg.matrix_norm(g) - etf)


def nc2_equinorm(h_or_stats, labels=None, *, global_mean: str = "sample") -> torch.Tensor:
    """std_c ‖μ_c − μ_G‖ / mean_c ‖μ_c − μ_G‖ (Papyan et al. 2020, Fig. 2; 0 = equinorm)."""
    norms = torch.linalg.vector_norm(
        _centred_means(class_stats(h_or_stats, labels), global_mean), dim=1
    )
    return norms.std(unbiased=False) / norms.mean()


def _classifier(weight, st: ClassStatsAccumulator) -> torch.Tensor:
    w = check_matrix(weight, name="classifier weight").to(torch.float64)
    if w.shape != (st.num_classes, st.dim):
        raise ValueError(
            f"classifier weight must have shape (K, d) = {(st.num_classes, st.dim)}, "
            f"got {tuple(w.shape)}"
        )
    return w.to(st.counts.device)


def nc3(h_or_stats, labels=None, *, weight, global_mean: str = "sample") -> torch.Tensor:
    """Self-duality ‖Wᵀ/‖W‖_F − M̄/‖M̄‖_F‖_F² (Papyan et al. 2020, Fig. 5), in [0, 4].

    ``weight`` is the last layer's (K, d) matrix; rows of unseen classes are ignored.
    """
    st = class_stats(h_or_stats, labels)
    w = _classifier(weight, st)[st.counts > 0]
    m = _centred_means(st, global_mean)
    return (
        torch.linalg.matrix_norm(w / torch.linalg.matrix_norm(w) - m / torch.linalg.matrix_norm(m))
        ** 2
    )


def nc4(
    h_or_stats, labels=None, *, weight, bias=None, batches: Iterable | None = None
) -> torch.Tensor:
    """Fraction of samples where argmax_c (W h + b)_c ≠ argmin_c ‖h − μ_c‖ (Papyan et al. 2020).

    Nearest class mean over the classes seen; 0 means the classifier acts as the NCC rule.
    """
    st = class_stats(h_or_stats, labels)
    w = _classifier(weight, st)
    b = torch.zeros(st.num_classes, dtype=torch.float64) if bias is None else torch.as_tensor(bias)
    b = b.to(device=w.device, dtype=torch.float64).reshape(st.num_classes)
    seen = torch.nonzero(st.counts > 0).squeeze(1)
    mu = st.class_means()
    mismatched, count = 0, 0
    for h, lab in _batches(h_or_stats, labels, batches):
        h, _ = check_labelled(h, lab, st.num_classes)
        x = h.detach().to(device=w.device, dtype=torch.float64)
        ncc = seen[torch.cdist(x, mu).argmin(1)]
        mismatched += int(((x @ w.T + b).argmax(1) != ncc).sum())
        count += x.shape[0]
    if count == 0:
        raise ValueError("NC4's pass saw no samples")
    return torch.tensor(mismatched / count, dtype=torch.float64, device=w.device)
