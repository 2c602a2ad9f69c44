"""The neural-rank-collapse bound (Zangrando et al., arXiv 2402.03991; docs/results.md "Bounds").

Network: h_0 = x, z_l = W_l h_{l−1} (+ b_l), h_l = σ(z_l) for l < L, f(x) = z_L; objective
J = (1/N)·Σ_i ℓ_i + (λ/2)·Σ_l ‖W_l‖_F². With δ_{l,i} = ∂ℓ_i/∂z_{l,i} (autograd of the **summed**
loss), Δ_l = [δ_{l,i}] and H_{l−1} = [h_{l−1,i}], ∇_{W_l}(1/N)Σℓ = (1/N)·Δ_l H_{l−1}ᵀ, and the
stationarity residual R_l = W_l + Δ_l H_{l−1}ᵀ/(λN) = ∇_{W_l}J/λ. Splitting H = M + (H − M)
(M: class means per sample) and using rank(Δ_l Mᵀ) ≤ K (Weyl, Eckart–Young, definitions §7):

    s_{K+1}(W_l) ≤ ‖R_l‖₂ + ‖Δ_l (H − M)ᵀ‖₂/(λN)
    d_K^F(W_l)   ≤ ‖R_l‖_F + ‖Δ_l‖_F·‖H − M‖_F/(λN)

These hold at every parameter value, stationary or not. Tensors use the (N, n) layout here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from rankscope.metrics import singular_values

__all__ = ["LayerBound", "class_means", "layer_bound", "network_bounds", "per_sample_signals"]


def class_means(h: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """M in the (N, n) layout: row i is the mean of the rows of ``h`` with label y_i."""
    sums = torch.zeros(num_classes, h.shape[1], dtype=h.dtype, device=h.device)
    sums.index_add_(0, y, h)
    counts = torch.bincount(y, minlength=num_classes).to(h.dtype).clamp_min(1)
    return (sums / counts[:, None])[y]


def per_sample_signals(
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    biases: Sequence[torch.Tensor | None] | None = None,
    activation=torch.relu,
) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """Inputs H_{l−1} (N, n_{l−1}) and signals Δ_l (N, n_l) of every linear layer.

    δ_{l,i} = ∂ℓ(f(x_i), y_i)/∂z_{l,i} with ℓ the cross-entropy, obtained by autograd of the
    summed (not mean) loss, so no 1/N factor hides in Δ (docs/results.md pitfall). Returns
    (H_prev list, Δ list, summed loss).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels")
    ws = [w.detach() for w in weights]
    bs = list(biases) if biases is not None else [None] * len(ws)
    h = x.detach().to(ws[0].dtype)
    h_prev, zs = [], []
    with torch.enable_grad():
        for i, w in enumerate(ws):
            h_prev.append(h)
            z = h @ w.T  # (N, n_l)
            if bs[i] is not None:
                z = z + bs[i].detach()
            z.requires_grad_(True)
            zs.append(z)
            h = activation(z) if i < len(ws) - 1 else z
        loss = F.cross_entropy(h, y, reduction="sum")
        deltas = torch.autograd.grad(loss, zs)
    return [t.detach() for t in h_prev], [d.detach() for d in deltas], float(loss.detach())


@dataclass(frozen=True)
class LayerBound:
    """One layer's measured tail, stationarity residual and both sides of the bounds."""

    s1: float
    s_k1: float  # s_{K+1}(W_l); 0 when K >= min(m, n)
    d_k_fro: float  # d_K^F(W_l)
    fro: float  # ‖W_l‖_F
    residual_op: float  # ‖R_l‖_2
    residual_fro: float  # ‖R_l‖_F
    variability_op: float  # ‖Δ_l(H − M)ᵀ‖_2 / (λN)
    variability_fro: float  # ‖Δ_l‖_F·‖H − M‖_F / (λN)
    bound_op: float  # residual_op + variability_op
    bound_fro: float  # residual_fro + variability_fro
    tcv_bound: float  # max_i‖δ_i‖·TCV_1(H_{l−1})/λ: the stationary-point form (informative)

    @property
    def holds(self) -> bool:
        """Both non-stationary inequalities, with a float64 round-off allowance."""
        slack = 1e-9 * max(self.s1, 1e-300)
        return self.s_k1 <= self.bound_op + slack and self.d_k_fro <= self.bound_fro + slack

    @property
    def relative_residual(self) -> float:
        """‖R_l‖₂/s_1(W_l); NaN when W_l = 0 (undefined: nothing to be stationary about)."""
        return self.residual_op / self.s1 if self.s1 > 0 else math.nan

    def as_dict(self) -> dict[str, float | bool]:
        out: dict[str, float | bool] = asdict(self)
        out["holds"] = self.holds
        out["relative_residual"] = self.relative_residual
        return out


def _op(a: torch.Tensor) -> float:
    s = singular_values(a)
    return float(s[0]) if s.numel() else 0.0


def layer_bound(
    w: torch.Tensor,
    h_prev: torch.Tensor,
    delta: torch.Tensor,
    y: torch.Tensor,
    *,
    lam: float,
    num_classes: int,
) -> LayerBound:
    """Both sides of the non-stationary NRC bounds for W_l (n_l, n_{l−1}), all in float64.

    ``h_prev``: H_{l−1} as (N, n_{l−1}); ``delta``: Δ_l as (N, n_l) from the summed loss.
    """
    if lam <= 0:
        raise ValueError(f"the NRC bound needs weight decay lam > 0, got {lam}")
    n = h_prev.shape[0]
    if delta.shape != (n, w.shape[0]) or h_prev.shape[1] != w.shape[1]:
        raise ValueError(
            f"shape mismatch: W {tuple(w.shape)}, H_prev {tuple(h_prev.shape)}, "
            f"delta {tuple(delta.shape)} (expected (N, n_l-1), (N, n_l))"
        )
    w, h_prev, delta = (t.detach().to(torch.float64) for t in (w, h_prev, delta))
    centred = h_prev - class_means(h_prev, y, num_classes)  # (N, n_{l-1}) = (H − M)ᵀ
    resid = w + delta.T @ h_prev / (lam * n)  # (n_l, n_{l-1})
    var_op = _op(delta.T @ centred) / (lam * n)
    var_fro = float(torch.linalg.norm(delta) * torch.linalg.norm(centred)) / (lam * n)
    s = singular_values(w)
    k = num_classes
    tail = s[k:]
    r_op, r_fro = _op(resid), float(torch.linalg.norm(resid))
    tcv1 = float(centred.norm(dim=1).mean())
    return LayerBound(
        s1=float(s[0]),
        s_k1=float(s[k]) if s.numel() > k else 0.0,
        d_k_fro=float(tail.square().sum().sqrt()),
        fro=float(s.square().sum().sqrt()),
        residual_op=r_op,
        residual_fro=r_fro,
        variability_op=var_op,
        variability_fro=var_fro,
        bound_op=r_op + var_op,
        bound_fro=r_fro + var_fro,
        tcv_bound=float(delta.norm(dim=1).max()) * tcv1 / lam,
    )


def network_bounds(
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    lam: float,
    num_classes: int,
    biases: Sequence[torch.Tensor | None] | None = None,
) -> tuple[list[LayerBound], list[torch.Tensor]]:
    """:func:`layer_bound` for every layer of a ReLU MLP; also returns the H_{l−1} used."""
    h_prev, deltas, _ = per_sample_signals(weights, x, y, biases=biases)
    out = [
        layer_bound(w, h, d, y, lam=lam, num_classes=num_classes)
        for w, h, d in zip(weights, h_prev, deltas)
    ]
    return out, h_prev
