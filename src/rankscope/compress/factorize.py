"""The factorisations: plain truncated SVD and activation-aware (whitened) SVD.

For a weight W (m, n) and calibration inputs x ∈ R^n with uncentred second moment
C = E[x xᵀ] (the layer computes Wx, so the mean is not removed), whitening uses the
Cholesky factor S (C = S Sᵀ, lower triangular): with W S = U Σ Vᵀ,

    W_r = U_r Σ_r V_rᵀ S⁻¹   minimises   E‖(W − W')x‖² = ‖(W − W')S‖_F²   over rank-r W'

and the error is Σ_{i>r} σ_i² (σ the singular values of W S). The factors are split
symmetrically, A = U_r Σ_r^{1/2} (m, r) and B = Σ_r^{1/2} V_rᵀ S⁻¹ (r, n).

**Jitter fallback.** When C is not positive definite (fewer calibration rows than n, or
dead inputs), δ·I is added with δ = 1e-8·tr(C)/n, multiplied by 10 until the Cholesky
factorisation succeeds (at most 10 tries, so δ ≤ 1e-2·tr(C)/n); the δ used is returned and
written to the manifest. A zero C (no signal at all) is an error.

**Sequential target.** When a layer's calibration inputs x̂ come from the already-compressed
layers before it while the original model saw x, the best rank-r W' for
E‖Wx − W'x̂‖² is the whitened truncation (in Ĉ = E[x̂x̂ᵀ]) of W_t = W E[x x̂ᵀ] Ĉ⁻¹, i.e. the
SVD of W E[x x̂ᵀ] Ŝ⁻ᵀ: the compressed layer also corrects the error of the layers before it.

All of it runs in float64; the factors are cast back to the layer's dtype by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Factors", "Whitener", "svd_spectrum", "truncate", "whitener"]

_F64 = torch.float64
JITTER_START = 1e-8
JITTER_TRIES = 10


@dataclass
class Whitener:
    """S (n, n) lower triangular with S Sᵀ = C + δ·I, and the δ that was needed (0 if none)."""

    chol: torch.Tensor
    jitter: float


def whitener(cov: torch.Tensor, *, name: str = "layer") -> Whitener:
    """Cholesky factor of the (n, n) second moment ``cov`` with the jitter fallback above."""
    cov = cov.to(_F64)
    cov = (cov + cov.T) / 2
    scale = float(cov.diagonal().mean())
    if not scale > 0:
        raise ValueError(
            f"calibration inputs of {name} are all zero (second moment has trace 0): "
            "whitening needs inputs with some signal"
        )
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        return Whitener(chol, 0.0)
    eye = torch.eye(cov.shape[0], dtype=_F64, device=cov.device)
    delta = JITTER_START * scale
    for _ in range(JITTER_TRIES):
        chol, info = torch.linalg.cholesky_ex(cov + delta * eye)
        if int(info) == 0:
            return Whitener(chol, delta)
        delta *= 10
    raise ValueError(  # pragma: no cover - needs a pathological covariance
        f"calibration covariance of {name} is not positive definite even with jitter "
        f"{delta / 10:.3g}"
    )


@dataclass
class Factors:
    """A (m, r), B (r, n) with A B the rank-r approximation, and its spectrum bookkeeping."""

    a: torch.Tensor
    b: torch.Tensor
    spectrum: torch.Tensor  # all σ_i of the (whitened) matrix, descending, float64
    rank: int

    @property
    def energy_kept(self) -> float:
        """Σ_{i≤r} σ_i² / Σ σ_i² (1 for a zero matrix)."""
        total = float((self.spectrum**2).sum())
        return float((self.spectrum[: self.rank] ** 2).sum()) / total if total > 0 else 1.0

    @property
    def truncation_error(self) -> float:
        """Relative error (Σ_{i>r} σ_i² / Σ σ_i²)^{1/2}: ‖W − W_r‖_F/‖W‖_F for plain SVD,
        the relative output error on the calibration inputs for whitened SVD."""
        return max(1.0 - self.energy_kept, 0.0) ** 0.5


def svd_spectrum(
    w: torch.Tensor, white: Whitener | None = None, cross: torch.Tensor | None = None
) -> torch.Tensor:
    """σ of W (plain), W S (whitened), or W E[x x̂ᵀ] Ŝ⁻ᵀ (sequential); float64, descending."""
    return torch.linalg.svdvals(_target(w, white, cross))


def _target(w, white, cross):
    w = w.to(_F64)
    if white is None:
        return w
    if cross is None:
        return w @ white.chol
    # W C_x x̂ Ŝ⁻ᵀ = (Ŝ⁻¹ C_x̂ x Wᵀ)ᵀ, by a triangular solve
    return torch.linalg.solve_triangular(white.chol, cross.to(_F64).T @ w.T, upper=False).T


def truncate(
    w: torch.Tensor,
    rank: int,
    white: Whitener | None = None,
    cross: torch.Tensor | None = None,
) -> Factors:
    """Rank-``rank`` factors of W (plain SVD, whitened, or sequential; see module docstring).

    ``w`` is the (m, n) weight; ``white`` the whitener of the layer's calibration inputs (of
    the compressed model's inputs x̂ in sequential mode); ``cross`` E[x x̂ᵀ] (n, n).
    """
    m, n = w.shape
    if not isinstance(rank, int) or not 1 <= rank <= min(m, n):
        raise ValueError(
            f"rank must be an int in [1, {min(m, n)}] for a {m}×{n} weight, got {rank}"
        )
    u, s, vh = torch.linalg.svd(_target(w, white, cross), full_matrices=False)
    root = s[:rank].sqrt()
    a = u[:, :rank] * root  # (m, r)
    b = root[:, None] * vh[:rank]  # (r, n)
    if white is not None:  # B S⁻¹ = (S⁻ᵀ Bᵀ)ᵀ
        b = torch.linalg.solve_triangular(white.chol.T, b.T, upper=True).T
    return Factors(a, b, s, rank)
