"""Deep linear networks A_θ = W_L⋯W_1 (docs/results.md, shared notation).

W_ℓ ∈ R^{n_ℓ×n_{ℓ−1}}, no biases, entries N(0, σ²) at init. The helpers work on a list of
factors, batched over leading dimensions (an ensemble stacks members as (E, n_ℓ, n_{ℓ−1})):

- :func:`end_to_end` — the product A = W_L⋯W_1;
- :func:`balanced_factors` — factors W_ℓ = U_ℓ S^{1/L} U_{ℓ−1}ᵀ of a given product;
- :func:`balancedness` — ‖D_ℓ‖_F with D_ℓ = W_{ℓ+1}ᵀW_{ℓ+1} − W_ℓW_ℓᵀ.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "DeepLinear",
    "balanced_factors",
    "balancedness",
    "check_dims",
    "end_to_end",
    "init_deep_linear",
]


def check_dims(dims: Sequence[int], *, what: str = "dims", min_len: int = 2) -> list[int]:
    """``dims`` as a list of positive ints ``[n_0, n_1, …, n_L]`` (input first)."""
    try:
        out = [int(d) for d in dims]
    except (TypeError, ValueError):
        raise TypeError(
            f"{what} must be a sequence of ints [n_0, ..., n_L], got {dims!r}"
        ) from None
    if len(out) < min_len or any(d < 1 or d != float(x) for d, x in zip(out, dims)):
        raise ValueError(
            f"{what} must hold at least {min_len} positive ints [n_0, ..., n_L], got {list(dims)!r}"
        )
    return out


def _per_layer(value: float | Sequence[float], n_layers: int, what: str) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)] * n_layers
    vals = [float(v) for v in value]
    if len(vals) != n_layers:
        raise ValueError(
            f"{what} must be a float or {n_layers} floats (one per layer), got {value!r}"
        )
    return vals


def _init_scales(sigma: float | Sequence[float], n_layers: int) -> list[float]:
    """Per-layer init standard deviations; NaN/Inf or negative ones are refused (a NaN σ would
    give NaN weights silently, a negative one a σ that is not a standard deviation)."""
    sig = _per_layer(sigma, n_layers, "sigma")
    if not all(0 <= s < math.inf for s in sig):
        raise ValueError(f"sigma must be finite and >= 0 (a standard deviation), got {sigma!r}")
    return sig


def init_deep_linear(
    dims: Sequence[int],
    sigma: float | Sequence[float],
    *,
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Factors W_1, …, W_L with i.i.d. N(0, σ_ℓ²) entries, drawn in that order from ``generator``.

    ``sigma`` is the standard deviation (one float, or one per layer). The draws happen in
    ``dtype`` so float32 and float64 runs with the same seed start from the same numbers up to
    rounding. Ensembles call this once per member with the member's own generator.
    """
    dims = check_dims(dims)
    sig = _init_scales(sigma, len(dims) - 1)
    out = []
    for (n_in, n_out), s in zip(itertools.pairwise(dims), sig):
        w = torch.randn((n_out, n_in), generator=generator, dtype=dtype)  # (n_ℓ, n_{ℓ−1})
        out.append(w.mul_(s))
    return out


class DeepLinear(nn.Module):
    """A deep linear network x ↦ W_L⋯W_1 x (no biases).

    ``dims = [n_0, …, n_L]``; ``sigma`` is the init standard deviation (entries N(0, σ²),
    docs/results.md notation), one float or one per layer. Randomness only from ``generator``.
    ``forward`` takes rows: x (N, n_0) -> (N, n_L). ``product()`` is A (n_L, n_0).

    >>> net = DeepLinear([3, 5, 2], sigma=0.1, generator=torch.Generator().manual_seed(0))
    >>> net.product().shape, net(torch.ones(4, 3)).shape
    (torch.Size([2, 3]), torch.Size([4, 2]))
    """

    def __init__(
        self,
        dims: Sequence[int],
        *,
        sigma: float | Sequence[float],
        generator: torch.Generator | None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dims = check_dims(dims)
        self.weights = nn.ParameterList(
            nn.Parameter(w)
            for w in init_deep_linear(self.dims, sigma, generator=generator, dtype=dtype)
        )

    @classmethod
    def from_weights(cls, weights: Sequence[torch.Tensor]) -> DeepLinear:
        """A network holding copies of the given factors [W_1, …, W_L] (shapes must chain)."""
        ws = _check_chain(weights)
        dims = [ws[0].shape[1], *[w.shape[0] for w in ws]]
        net = cls.__new__(cls)
        nn.Module.__init__(net)
        net.dims = dims
        net.weights = nn.ParameterList(nn.Parameter(w.detach().clone()) for w in ws)
        return net

    @property
    def depth(self) -> int:
        return len(self.weights)

    def product(self) -> torch.Tensor:
        """A = W_L⋯W_1, shape (n_L, n_0)."""
        return end_to_end(list(self.weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, n_0) -> (N, n_L)
        for w in self.weights:
            x = x @ w.mT
        return x


def _check_chain(weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    ws = list(weights)
    if not ws:
        raise ValueError("need at least one factor W_1, got an empty list")
    for i, w in enumerate(ws):
        if not isinstance(w, torch.Tensor) or w.ndim < 2:
            shape = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
            raise ValueError(f"factor W_{i + 1} must be a tensor (..., n_out, n_in), got {shape}")
    for i in range(1, len(ws)):
        if ws[i].shape[-1] != ws[i - 1].shape[-2]:
            shapes = [tuple(w.shape) for w in ws]
            raise ValueError(f"factor shapes do not chain (W_{i + 1} after W_{i}): {shapes}")
    return ws


def end_to_end(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """A = W_L⋯W_1 of factors [W_1, …, W_L], each (..., n_ℓ, n_{ℓ−1}); returns (..., n_L, n_0)."""
    ws = _check_chain(weights)
    a = ws[0]
    for w in ws[1:]:
        a = w @ a
    return a


def balanced_factors(
    p: torch.Tensor, depth: int, *, width: int | None = None
) -> list[torch.Tensor]:
    """Balanced factors [W_1, …, W_L] of P = U S Vᵀ (docs/results.md, shared notation).

    W_ℓ = U_ℓ S^{1/L} U_{ℓ−1}ᵀ with U_0 = V, U_L = U and U_ℓ = I in between, from the thin
    SVD (k = min(m, n)): W_1 = S^{1/L}Vᵀ (k, n), W_ℓ = S^{1/L} (k, k), W_L = U S^{1/L} (m, k).
    ``width`` ≥ k pads the hidden dimensions with zeros (still balanced, same product).
    Then W_L⋯W_1 = P and D_ℓ = W_{ℓ+1}ᵀW_{ℓ+1} − W_ℓW_ℓᵀ = 0. Batched over leading dims.
    """
    if not isinstance(p, torch.Tensor) or p.ndim < 2:
        raise ValueError(f"P must be a tensor (..., m, n), got {getattr(p, 'shape', type(p))}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an int >= 1, got {depth!r}")
    if depth == 1:
        return [p.clone()]
    u, s, vh = torch.linalg.svd(p, full_matrices=False)  # (.., m, k), (.., k), (.., k, n)
    k = s.shape[-1]
    root = s.clamp_min(0) ** (1.0 / depth)  # (..., k)
    first = root[..., :, None] * vh  # S^{1/L} Vᵀ: (..., k, n)
    last = u * root[..., None, :]  # U S^{1/L}: (..., m, k)
    mid = torch.diag_embed(root)  # (..., k, k)
    ws = [first, *[mid.clone() for _ in range(depth - 2)], last]
    if width is None or width == k:
        return ws
    if width < k:
        raise ValueError(f"width must be >= min(m, n) = {k} to factor P exactly, got {width}")
    pad = width - k
    out = [torch.nn.functional.pad(ws[0], (0, 0, 0, pad))]
    out += [torch.nn.functional.pad(w, (0, pad, 0, pad)) for w in ws[1:-1]]
    out.append(torch.nn.functional.pad(ws[-1], (0, pad, 0, 0)))
    return out


def balancedness(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """‖D_ℓ‖_F for ℓ = 1, …, L−1 with D_ℓ = W_{ℓ+1}ᵀW_{ℓ+1} − W_ℓW_ℓᵀ (docs/results.md).

    Factors are (..., n_ℓ, n_{ℓ−1}); returns (..., L−1) (empty last dim for L = 1).
    Gradient flow without weight decay conserves D_ℓ; with λ‖θ‖², D_ℓ(t) = e^{−4λt}D_ℓ(0).
    """
    ws = _check_chain(weights)
    norms = [torch.linalg.matrix_norm(w1.mT @ w1 - w0 @ w0.mT) for w0, w1 in itertools.pairwise(ws)]
    if not norms:
        return torch.zeros((*ws[0].shape[:-2], 0), dtype=ws[0].dtype, device=ws[0].device)
    return torch.stack(norms, dim=-1)
