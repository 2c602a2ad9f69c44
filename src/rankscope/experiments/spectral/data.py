"""Data for the convolution and spectral family. No downloads; all randomness from a numpy
``rng`` or a torch ``generator``.

- Matérn Gaussian-process samples (general ν through the Bessel function K_ν) and the
  compositional task Y = h(g(X)) of 2407.05664 (official generator: RMS distances, length
  scale 1, joint Cholesky of all points);
- the rank-1-per-frequency linear CNN target and the translation-invariant regression task of
  ``cnn-bottleneck``;
- uniform points on the sphere and Gegenbauer targets for ``layerwise-spectral-bias``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CompositionalData",
    "compositional_data",
    "gegenbauer_targets",
    "matern_kernel",
    "matern_kernel_tabulated",
    "rank_one_frequency_target",
    "rms_distances",
    "sample_gp",
    "sphere_points",
    "translation_invariant_task",
]


def _check_nu(nu) -> float:
    if isinstance(nu, bool) or not isinstance(nu, int | float) or not math.isfinite(nu) or nu <= 0:
        raise ValueError(f"Matérn smoothness nu must be a finite number > 0, got {nu!r}")
    return float(nu)


def matern_kernel(r: np.ndarray, nu: float, length_scale: float = 1.0) -> np.ndarray:
    """k(r) = 2^{1−ν}/Γ(ν)·(√(2ν)·r/ℓ)^ν·K_ν(√(2ν)·r/ℓ), k(0) = 1, float64, any ν > 0.

    Evaluated in log form with the exponentially scaled Bessel function (``scipy.special.kve``)
    so large ν and small r do not overflow. Equals scikit-learn's ``Matern(nu=ν)``.

    >>> round(float(matern_kernel(np.array([1.0]), 0.5)[0]), 12) == round(math.exp(-1), 12)
    True
    """
    from scipy.special import gammaln, kve

    nu = _check_nu(nu)
    if not (isinstance(length_scale, int | float) and length_scale > 0):
        raise ValueError(f"length_scale must be > 0, got {length_scale!r}")
    r = np.asarray(r, dtype=np.float64)
    if np.any(r < 0) or not np.all(np.isfinite(r)):
        raise ValueError("distances r must be finite and >= 0")
    z = math.sqrt(2.0 * nu) * r / float(length_scale)
    out = np.ones_like(z)
    pos = z > 0
    zp = z[pos]
    with np.errstate(under="ignore"):
        log_k = (1.0 - nu) * math.log(2.0) - gammaln(nu) + nu * np.log(zp) + np.log(kve(nu, zp))
        out[pos] = np.exp(log_k - zp)
    return np.minimum(out, 1.0)


def rms_distances(x: np.ndarray) -> np.ndarray:
    """‖x_i − x_j‖/√d for rows of x (N, d), float64 (the official generator's distance)."""
    x = np.asarray(x, dtype=np.float64)
    sq = (x * x).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2 / x.shape[1])


def matern_kernel_tabulated(
    r: np.ndarray, nu: float, length_scale: float = 1.0, *, points: int = 1 << 18
) -> np.ndarray:
    """:func:`matern_kernel` by linear interpolation on ``points`` distances in [0, max r].

    K_ν is evaluated ``points`` times instead of once per entry (a 3000-point covariance has
    4.5e6 entries); the interpolation error is below 2e-9 for ν >= 0.5 at the default
    ``points`` over r <= 6 (tests/spectral check it against the direct evaluation), four
    orders below the usual 1e-4 jitter.
    """
    r = np.asarray(r, dtype=np.float64)
    top = float(r.max()) if r.size else 0.0
    if top == 0.0 or r.size <= points:  # direct evaluation is cheaper
        return matern_kernel(r, nu, length_scale)
    grid = np.linspace(0.0, top, int(points))
    return np.interp(r, grid, matern_kernel(grid, nu, length_scale))


def sample_gp(
    x: np.ndarray,
    nu: float,
    n_functions: int,
    rng: np.random.Generator,
    *,
    jitter: float = 1e-4,
    length_scale: float = 1.0,
    tabulate: bool = False,
) -> np.ndarray:
    """``n_functions`` independent Matérn(ν) GP samples at the rows of x: (N, n_functions).

    Exact joint sampling: L = chol(K + jitter·I) in float64, then L·ξ with ξ ~ N(0, I).
    ``tabulate=True`` evaluates K through :func:`matern_kernel_tabulated`. A covariance that
    is still not positive definite after the jitter raises ``ValueError`` naming ν, the
    jitter and the smallest eigenvalue.
    """
    nu = _check_nu(nu)
    if not (isinstance(jitter, int | float) and jitter >= 0 and math.isfinite(jitter)):
        raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
    kernel = matern_kernel_tabulated if tabulate else matern_kernel
    k = kernel(rms_distances(x), nu, length_scale)
    k[np.diag_indices_from(k)] += jitter
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        lam = float(np.linalg.eigvalsh(k)[0])
        raise ValueError(
            f"Matérn covariance (nu={nu}, N={k.shape[0]}) is not positive definite after "
            f"jitter={jitter}: smallest eigenvalue {lam:.3e}; increase the jitter"
        ) from None
    return chol @ rng.standard_normal((k.shape[0], int(n_functions)))


@dataclass(frozen=True)
class CompositionalData:
    """X (N, d_in), Z = g(X) (N, d_mid), Y = h(Z) (N, d_out), float64 numpy."""

    x: np.ndarray
    z: np.ndarray
    y: np.ndarray


def compositional_data(
    n: int,
    nu_g: float,
    nu_h: float,
    rng: np.random.Generator,
    *,
    d_in: int = 15,
    d_mid: int = 3,
    d_out: int = 20,
    jitter: float = 1e-4,
    tabulate: bool = False,
) -> CompositionalData:
    """X ~ N(0, I_{d_in}); Z: d_mid Matérn(ν_g) GP samples on X; Y: d_out Matérn(ν_h) GP
    samples on Z (definitions §21, 2407.05664's official generator)."""
    _check_nu(nu_g), _check_nu(nu_h)
    x = rng.standard_normal((int(n), int(d_in)))
    z = sample_gp(x, nu_g, d_mid, rng, jitter=jitter, tabulate=tabulate)
    y = sample_gp(z, nu_h, d_out, rng, jitter=jitter, tabulate=tabulate)
    return CompositionalData(x, z, y)


def rank_one_frequency_target(
    d: int, channels: int, freqs: tuple[int, ...], strengths: tuple[float, ...],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A real circular-conv kernel A (C, C, d) whose blocks Â(m) are rank 1 at m ∈ ``freqs``
    (with s_1 = strength) and at the conjugates −m, and 0 elsewhere; also Â (d, C, C).

    ``freqs`` lists one member of each conjugate pair (e.g. (0, 3) gives {0, 3, d − 3}).
    """
    blocks = np.zeros((d, channels, channels), dtype=np.complex128)
    for m, s in zip(freqs, strengths, strict=True):
        real = m % d == 0 or 2 * (m % d) == d
        u = rng.standard_normal(channels) + (0 if real else 1j * rng.standard_normal(channels))
        v = rng.standard_normal(channels) + (0 if real else 1j * rng.standard_normal(channels))
        block = s * np.outer(u / np.linalg.norm(u), (v / np.linalg.norm(v)).conj())
        blocks[m % d] = block
        blocks[(-m) % d] = block.conj()
    kernel = np.fft.ifft(blocks, axis=0).real  # Â(m) = Σ_u A[u] e^{−2πimu/d}
    return np.ascontiguousarray(kernel.transpose(1, 2, 0)), blocks


def translation_invariant_task(
    n: int, d: int, generator: torch.Generator, phi: str = "abs", dtype=torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 1, d) ~ N(0, I) and y = (1/d)·Σ_i φ(x_i), (n, 1); φ ∈ {abs, square, tanh}."""
    fns = {"abs": torch.abs, "square": torch.square, "tanh": torch.tanh}
    if phi not in fns:
        raise ValueError(f"phi must be one of {sorted(fns)}, got {phi!r}")
    x = torch.randn(n, 1, d, generator=generator, dtype=torch.float64)
    y = fns[phi](x).mean(-1)
    return x.to(dtype), y.to(dtype)


def sphere_points(n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """n points uniform on S^{d−1} (normalized Gaussians), float64 (n, d)."""
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def gegenbauer_targets(x: torch.Tensor, degrees, direction: torch.Tensor) -> torch.Tensor:
    """y_k(x) = C_k^{((d−2)/2)}(⟨x, e⟩) for each k: (N, len(degrees)), float64."""
    from scipy.special import eval_gegenbauer

    d = x.shape[1]
    t = (x.to(torch.float64) @ direction.to(torch.float64)).numpy()
    cols = [eval_gegenbauer(int(k), (d - 2) / 2.0, t) for k in degrees]
    return torch.from_numpy(np.stack(cols, axis=1))
