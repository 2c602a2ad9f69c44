"""CP tensor factorization evaluated index-wise in the log domain with sign tracking.

𝒲 = Σ_{r=1}^R w_r^1 ⊗ … ⊗ w_r^N (definitions §15), the one-hidden-layer convolutional
arithmetic circuit of ``noamrazin/imp_reg_in_tf``: with one-hot inputs x_n = e_{i_n}, hidden
unit r computes Π_n ⟨w_r^n, x_n⟩ and the output sums over r. Products over many modes (64 or
784) overflow or underflow in floating point, so every product is carried as
(log|·|, sign) and only the final sum leaves the log domain: 𝒲_ι = e^m Σ_r s_r e^{ℓ_r − m},
m = max_r ℓ_r. The signed-log helpers here are shared with :mod:`rankscope.models.ht`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rankscope.metrics.tensor import DENSE_MAX_ENTRIES, check_dense_size

__all__ = [
    "CPFactorization",
    "all_indices",
    "member_scales",
    "signed_log",
    "signed_log_linear",
    "signed_log_prod",
    "signed_log_value",
]


def signed_log(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log|x|, sign x) with sign(0) = +1 and |x| clamped at the dtype's tiny (finite logs)."""
    tiny = torch.finfo(x.dtype).tiny
    return torch.log(x.abs().clamp_min(tiny)), torch.where(x < 0, -1.0, 1.0).to(x.dtype)


def signed_log_prod(log_abs: torch.Tensor, sign: torch.Tensor, dim: int):
    """Product over ``dim`` of numbers given as (log|·|, sign): sum the logs, multiply signs."""
    return log_abs.sum(dim), sign.prod(dim)


def signed_log_value(log_abs: torch.Tensor, sign: torch.Tensor, dim: int) -> torch.Tensor:
    """Σ over ``dim`` of s·e^ℓ, computed as e^m Σ s·e^{ℓ−m} (m = max ℓ, no overflow inside)."""
    m = log_abs.detach().amax(dim, keepdim=True)
    return (sign * torch.exp(log_abs - m)).sum(dim) * torch.exp(m.squeeze(dim))


def signed_log_linear(log_abs: torch.Tensor, sign: torch.Tensor, weight: torch.Tensor):
    """y_{..., j, r} = Σ_k W[j, k, r]·s_{..., j, k}·e^{ℓ_{..., j, k}}, returned as (log|y|, sign y).

    ``log_abs``/``sign``: ([M,] B, J, K); ``weight``: ([M,] J, K, R). The max over k is
    factored out, so no exponential overflows.
    """
    m = log_abs.detach().amax(-1, keepdim=True)  # ([M,] B, J, 1)
    y = torch.einsum("...bjk,...jkr->...bjr", sign * torch.exp(log_abs - m), weight)
    log_y, sign_y = signed_log(y)
    return log_y + m, sign_y


def all_indices(shape: Sequence[int]) -> torch.Tensor:
    """Every index tuple of ``shape`` in C order, (Π d_n, N) int64."""
    grids = torch.meshgrid(*(torch.arange(int(d)) for d in shape), indexing="ij")
    return torch.stack(grids, -1).reshape(-1, len(shape))


class CPFactorization(nn.Module):
    """CP model of a d_1×…×d_N tensor with R components, evaluated at index tuples.

    ``weight`` is one parameter (N, max d_n, R); mode n uses rows [0, d_n) (unused rows get no
    gradient). Init: N(init_mean, init_std²) per entry from ``generator``.
    ``forward(indices)`` maps (B, N) int64 indices to the entries (B,).

    ``members=M`` stacks M independent models (an ensemble trained in one step): ``weight`` is
    (M, N, max d, R), ``init_std`` may be a sequence of M scales (one draw, scaled per member),
    and outputs gain a leading M dimension.

    >>> m = CPFactorization([2, 3], 4, init_std=1.0, generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(m.full(), torch.einsum("az,bz->ab", *m.factors()))
    True
    """

    def __init__(
        self,
        shape: Sequence[int],
        rank: int,
        *,
        init_std: float | Sequence[float] = 1e-3,
        init_mean: float = 0.0,
        members: int | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.shape = tuple(int(d) for d in shape)
        if len(self.shape) < 1 or min(self.shape) < 1 or rank < 1:
            raise ValueError(f"need a shape of positive dims and rank >= 1, got {shape}, {rank}")
        self.rank, self.members = int(rank), members
        lead = () if members is None else (int(members),)
        std = member_scales(init_std, members, dtype)
        w = torch.randn(len(self.shape), max(self.shape), rank, generator=generator, dtype=dtype)
        rows = (
            torch.arange(max(self.shape))[None, :, None] < torch.tensor(self.shape)[:, None, None]
        )
        w = (w.expand(*lead, *w.shape) * std + init_mean) * rows
        self.weight = nn.Parameter(w.clone())  # ([M,] N, d, R)
        self.register_buffer("_mode", torch.arange(len(self.shape)), persistent=False)
        self.register_buffer("_dims", torch.tensor(self.shape), persistent=False)

    @property
    def order(self) -> int:
        return len(self.shape)

    def factors(self) -> list[torch.Tensor]:
        """[w^1, …, w^N], each ([M,] d_n, R)."""
        return [self.weight[..., n, :d, :] for n, d in enumerate(self.shape)]

    def _check(self, indices: torch.Tensor) -> torch.Tensor:
        if indices.ndim != 2 or indices.shape[1] != self.order:
            raise ValueError(f"indices must be (B, {self.order}), got {tuple(indices.shape)}")
        return indices.to(torch.long)

    def one_hot(self, indices: torch.Tensor) -> torch.Tensor:
        """The network view's inputs: x_n = e_{i_n}, concatenated over modes, (B, N·max d)."""
        idx = self._check(indices)
        if idx.numel() and (bool((idx < 0).any()) or bool((idx >= self._dims).any())):
            raise ValueError(f"indices out of range for a tensor of shape {self.shape}")
        out = torch.zeros(
            idx.shape[0], self.order * max(self.shape), dtype=self.weight.dtype, device=idx.device
        )
        return out.scatter_(1, idx + self._mode * max(self.shape), 1.0)

    def log_components(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log|Π_n w_r^n[i_n]|, sign) per example and component, each ([M,] B, R).

        log|Π_n ⟨w_r^n, x_n⟩| = Σ_n ⟨log|w_r^n|, x_n⟩ is one matmul with the one-hot inputs; the
        sign is the parity of the number of negative factors, counted the same way.
        """
        x = self.one_hot(indices)  # (B, N·d)
        log_abs, _ = signed_log(self.weight)
        negative = (self.weight.detach() < 0).to(x.dtype)
        lead = self.weight.shape[:-3]
        total = x @ log_abs.reshape(*lead, -1, self.rank)  # ([M,] B, R)
        count = x @ negative.reshape(*lead, -1, self.rank)
        return total, 1.0 - 2.0 * torch.remainder(count, 2.0)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        return signed_log_value(*self.log_components(indices), dim=-1)

    def component_norms(self) -> torch.Tensor:
        """‖𝒲_r‖ = Π_n ‖w_r^n‖ ([M,] R), via a sum of logs (definitions §15)."""
        logs = torch.log(torch.linalg.vector_norm(self.weight, dim=-2)).sum(-2)
        return torch.exp(logs).detach()

    def full(self, max_entries: int = DENSE_MAX_ENTRIES) -> torch.Tensor:
        """The dense tensor ([M,] *shape), refused before allocating beyond ``max_entries``."""
        check_dense_size(self.shape, max_entries)
        out = self(all_indices(self.shape))
        return out.reshape(*out.shape[:-1], *self.shape)


def member_scales(init_std, members: int | None, dtype: torch.dtype) -> torch.Tensor:
    """Init scales broadcastable over ([M,] ...): one float, or one per ensemble member."""
    std = torch.as_tensor(init_std, dtype=dtype).reshape(-1)
    if members is None:
        if std.numel() != 1:
            raise ValueError(f"init_std must be one float without members, got {init_std}")
        return std[0]
    if std.numel() not in (1, members):
        raise ValueError(f"init_std must be a float or {members} floats, got {init_std}")
    return std.expand(members).reshape(members, 1, 1, 1)
