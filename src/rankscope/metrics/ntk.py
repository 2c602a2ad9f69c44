"""Layer-wise neural tangent kernels of ReLU nets (definitions §20).

Analytic, infinite width, NTK parametrization, inputs on S^{d−1} (float64 numpy):
Σ^(0)(t) = t, Σ^(k) = κ_1(Σ^(k−1)), Σ̇^(k) = κ_0(Σ^(k−1)), and the layer kernels
Θ_ℓ = Σ^(ℓ−1)·Π_{k=ℓ}^{L−1} Σ̇^(k) (ℓ = 1 … L, Θ = Σ_ℓ Θ_ℓ). Their degree-k spherical
harmonic eigenvalues come from the Funk–Hecke formula by Gauss–Jacobi quadrature:

    μ_k = ∫_{−1}^{1} K(t)·C_k^{(λ)}(t)·(1 − t²)^{λ − 1/2} dt / C_k^{(λ)}(1),  λ = (d − 2)/2

(the spec's normalization: the sphere-area factor common to all k is left out, so ratios
μ_k/μ_1 are exact).

Finite width: for f(x) = c_L W_L h_{L−1}(x), z_ℓ = c_ℓ W_ℓ h_{ℓ−1}, h_ℓ = √2·relu(z_ℓ),
the per-layer Gram Θ_ℓ(x, x′) = ⟨∂f(x)/∂W_ℓ, ∂f(x′)/∂W_ℓ⟩ factorises as
c_ℓ²·⟨δ_ℓ(x), δ_ℓ(x′)⟩·⟨h_{ℓ−1}(x), h_{ℓ−1}(x′)⟩ with δ_ℓ = ∂f/∂z_ℓ, so it costs O(N²·n) and
never forms an N×P Jacobian. ``parametrization="ntk"``: c_1 = 1 (inputs on the sphere,
Σ^(0) = ⟨x, x′⟩), c_ℓ = 1/√n_{ℓ−1}; its Grams converge to the analytic Θ_ℓ as width → ∞.
``"standard"``: the same forward, gradients taken with respect to c_ℓW_ℓ (Θ_ℓ / c_ℓ²).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from rankscope.metrics._validate import check_matrix

__all__ = [
    "gegenbauer_eigenvalues",
    "layer_shares",
    "layerwise_ntk_eigenvalues",
    "layerwise_ntk_grams",
    "relu_kappa0",
    "relu_kappa1",
    "relu_ntk_layer_kernels",
]

PARAMETRIZATIONS = ("ntk", "standard")


def relu_kappa1(u: np.ndarray) -> np.ndarray:
    """κ_1(u) = (√(1−u²) + u(π − arccos u))/π: the normalized arc-cosine kernel of degree 1."""
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    return (np.sqrt(1.0 - u * u) + u * (np.pi - np.arccos(u))) / np.pi


def relu_kappa0(u: np.ndarray) -> np.ndarray:
    """κ_0(u) = (π − arccos u)/π: the arc-cosine kernel of degree 0 (ReLU derivative)."""
    u = np.clip(np.asarray(u, dtype=np.float64), -1.0, 1.0)
    return (np.pi - np.arccos(u)) / np.pi


def _check_depth(depth) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"depth must be an int >= 1 (number of weight layers), got {depth!r}")
    return int(depth)


def relu_ntk_layer_kernels(t, depth: int) -> np.ndarray:
    """Θ_ℓ(t) for ℓ = 1 … L at cosines t: array (L, *t.shape), float64 (module docstring).

    >>> relu_ntk_layer_kernels([1.0], 3)[:, 0]   # Θ_ℓ(1) = 1 for every layer on the sphere
    array([1., 1., 1.])
    """
    depth = _check_depth(depth)
    t = np.asarray(t, dtype=np.float64)
    if np.any(np.abs(t) > 1 + 1e-12) or not np.all(np.isfinite(t)):
        raise ValueError("cosines t must be finite and lie in [-1, 1]")
    sigma = [t]
    for _ in range(1, depth):
        sigma.append(relu_kappa1(sigma[-1]))
    dots = [relu_kappa0(sigma[k - 1]) for k in range(1, depth)]  # Σ̇^(1) … Σ̇^(L−1)
    out = np.empty((depth, *t.shape))
    for l in range(1, depth + 1):
        theta = sigma[l - 1].copy()
        for k in range(l, depth):
            theta = theta * dots[k - 1]
        out[l - 1] = theta
    return out


def _check_dim(d) -> int:
    if isinstance(d, bool) or not isinstance(d, int | np.integer) or d < 3:
        raise ValueError(f"sphere dimension d (inputs on S^(d-1)) must be an int >= 3, got {d!r}")
    return int(d)


def gegenbauer_eigenvalues(
    kernel: Callable[[np.ndarray], np.ndarray],
    d: int,
    degrees: Sequence[int],
    *,
    nodes: int = 400,
) -> np.ndarray:
    """μ_k of a dot-product kernel K(⟨x, x′⟩) on S^{d−1} for each k in ``degrees``, float64.

    ``kernel`` maps cosines (n,) to values (..., n) (several kernels at once are fine); the
    result is (..., len(degrees)). Gauss–Jacobi quadrature with α = β = (d − 3)/2 and
    ``nodes`` points is exact for polynomial kernels of degree < 2·nodes − k.
    """
    from scipy.special import eval_gegenbauer, roots_jacobi

    d = _check_dim(d)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 2:
        raise ValueError(f"nodes must be an int >= 2, got {nodes!r}")
    ks = [int(k) for k in degrees]
    if not ks or min(ks) < 0:
        raise ValueError(f"degrees must be a non-empty list of ints >= 0, got {degrees!r}")
    a = (d - 3) / 2.0
    lam = (d - 2) / 2.0
    t, w = roots_jacobi(nodes, a, a)
    values = np.asarray(kernel(t), dtype=np.float64)
    if values.shape[-1] != t.shape[0]:
        raise ValueError(f"kernel must return (..., {t.shape[0]}) values, got {values.shape}")
    basis = np.stack([eval_gegenbauer(k, lam, t) / eval_gegenbauer(k, lam, 1.0) for k in ks])
    return (values * w) @ basis.T


def layerwise_ntk_eigenvalues(
    d: int, depth: int, degrees: Sequence[int], *, nodes: int = 400
) -> np.ndarray:
    """μ_k^(ℓ) of the analytic layer kernels: (L, len(degrees)), row ℓ−1 for layer ℓ."""
    depth = _check_depth(depth)
    return gegenbauer_eigenvalues(
        lambda t: relu_ntk_layer_kernels(t, depth), d, degrees, nodes=nodes
    )


def layerwise_ntk_grams(
    weights: Sequence[torch.Tensor],
    x: torch.Tensor,
    *,
    parametrization: str = "ntk",
) -> torch.Tensor:
    """Per-layer NTK Gram matrices Θ_ℓ ∈ R^{N×N} of a bias-free scalar ReLU net: (L, N, N).

    ``weights`` [W_1 (n_1, n_0), …, W_L (1, n_{L−1})] and ``x`` (N, n_0); forward and scale
    factors as in the module docstring. Peak memory is about L·N·(n + N) values (the δ_ℓ and
    h_ℓ of every layer and the Grams), never the N×P Jacobian. Computed in float64.
    ``chunk`` is accepted for API symmetry with Jacobian helpers and ignored (nothing needs
    chunking at these sizes).
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(
            f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}"
        )
    ws = [check_matrix(w, name=f"W{i + 1}").to(torch.float64) for i, w in enumerate(weights)]
    if not ws:
        raise ValueError("layerwise_ntk_grams needs at least one weight matrix")
    h = check_matrix(x, name="x").to(torch.float64)
    if h.ndim != 2 or h.shape[1] != ws[0].shape[1]:
        raise ValueError(f"x must be (N, {ws[0].shape[1]}), got {tuple(h.shape)}")
    for i in range(1, len(ws)):
        if ws[i].shape[1] != ws[i - 1].shape[0]:
            raise ValueError(
                f"W{i + 1} {tuple(ws[i].shape)} does not follow W{i} {tuple(ws[i - 1].shape)}"
            )
    if ws[-1].shape[0] != 1:
        raise ValueError(f"the last layer must have one output, got W_L {tuple(ws[-1].shape)}")
    scales = [1.0] + [1.0 / math.sqrt(w.shape[1]) for w in ws[1:]]
    hs, masks = [h], []
    for l, w in enumerate(ws[:-1]):
        z = scales[l] * hs[-1] @ w.T
        masks.append((z > 0).to(torch.float64) * math.sqrt(2.0))
        hs.append(math.sqrt(2.0) * torch.relu(z))
    n = h.shape[0]
    grams = torch.empty(len(ws), n, n, dtype=torch.float64, device=h.device)
    delta = torch.ones(n, 1, dtype=torch.float64, device=h.device)  # ∂f/∂z_L
    for l in range(len(ws) - 1, -1, -1):
        c2 = scales[l] ** 2 if parametrization == "ntk" else 1.0
        grams[l] = c2 * (delta @ delta.T) * (hs[l] @ hs[l].T)
        if l > 0:  # δ_{ℓ−1} = c_ℓ·(δ_ℓ W_ℓ) ⊙ σ′(z_{ℓ−1})
            delta = scales[l] * (delta @ ws[l]) * masks[l - 1]
    return grams


def layer_shares(grams: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """S_ℓ(y) = yᵀΘ_ℓ y / Σ_ℓ′ yᵀΘ_ℓ′ y for Grams (L, N, N) and targets (N,) or (N, K).

    Returns (L,) or (L, K); each column sums to 1.
    """
    g = check_matrix(grams, name="grams", min_dim=3).to(torch.float64)
    yy = check_matrix(y, name="y", min_dim=1).to(torch.float64)
    one = yy.ndim == 1
    yy = yy[:, None] if one else yy
    if yy.shape[0] != g.shape[-1]:
        raise ValueError(f"y must have {g.shape[-1]} rows to match grams, got {tuple(y.shape)}")
    quad = torch.einsum("nk,lnm,mk->lk", yy, g, yy)
    total = quad.sum(0, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("yᵀΘy is not positive for some target: the shares are undefined")
    out = quad / total
    return out[:, 0] if one else out
