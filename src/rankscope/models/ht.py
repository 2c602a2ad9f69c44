"""Hierarchical tensor (HT) factorization: a deep convolutional arithmetic circuit.

``HierarchicalTensorFactorization`` in ``asafmaman101/imp_reg_htf`` (docs/results.md). With
N = pool_size^L modes and widths (R_1, …, R_L):

- layer 1: a_n = W^{(1,n)ᵀ} x_n ∈ R^{R_1} per mode (one-hot x_n: a row of W^{(1,n)});
- layer l > 1: one matrix W^{(l,j)} ∈ R^{R_{l−1}×R_l} per input node j (locally connected);
- after every layer, an elementwise **product** over each pooling window of the mode tree;
- output: w_out ∈ R^{R_L} applied to the root.

``pattern="adjacent"`` pools consecutive nodes (``checkerboard``); ``"half"`` pools node i with
node i + M/2 at every level (pool size 2). Values are carried as (log|·|, sign) like
:mod:`rankscope.models.cp`, so deep products neither overflow nor underflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from rankscope.metrics.tensor import DENSE_MAX_ENTRIES, check_dense_size
from rankscope.models.cp import (
    all_indices,
    member_scales,
    signed_log,
    signed_log_linear,
    signed_log_prod,
    signed_log_value,
)

__all__ = ["HTFactorization", "pool_permutation"]

PATTERNS = ("adjacent", "half")


def pool_permutation(num_nodes: int, pool_size: int, pattern: str) -> list[int]:
    """Order of the nodes so that consecutive groups of ``pool_size`` are pooled together."""
    if pattern == "adjacent":
        return list(range(num_nodes))
    if pattern == "half":
        if pool_size != 2 or num_nodes % 2:
            raise ValueError(
                f"pattern 'half' needs pool_size 2 and an even node count, got "
                f"{pool_size}, {num_nodes}"
            )
        half = num_nodes // 2
        return [i // 2 + (i % 2) * half for i in range(num_nodes)]
    raise ValueError(f"unknown pool pattern {pattern!r}; expected one of {PATTERNS}")


class HTFactorization(nn.Module):
    """HT model of a d_1×…×d_N tensor (N = pool_size^L), evaluated at index tuples (B, N).

    Parameters: ``layers[0]`` (N, max d, R_1); ``layers[l]`` (N / pool^l, R_l, R_{l+1});
    ``output`` (R_L,). Init N(init_mean, init_std²) from ``generator``. ``members=M`` stacks M
    independent models (leading dimension M everywhere, ``init_std`` one scale per member).
    """

    def __init__(
        self,
        dims: Sequence[int],
        widths: Sequence[int],
        *,
        pool_size: int = 2,
        pattern: str = "adjacent",
        init_std: float | Sequence[float] = 1e-2,
        init_mean: float = 0.0,
        members: int | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.dims, self.widths = tuple(int(d) for d in dims), tuple(int(w) for w in widths)
        n, depth = len(self.dims), len(self.widths)
        if pool_size < 2 or depth < 1 or n != pool_size**depth:
            raise ValueError(f"order {n} must equal pool_size**len(widths) = {pool_size}**{depth}")
        self.pool_size, self.pattern, self.members = int(pool_size), pattern, members
        self.perms = [pool_permutation(n // pool_size**l, pool_size, pattern) for l in range(depth)]
        lead = () if members is None else (int(members),)
        std = member_scales(init_std, members, dtype)

        def draw(*shape: int) -> nn.Parameter:
            w = torch.randn(*shape, generator=generator, dtype=dtype).expand(*lead, *shape)
            s = std if members is None else std.reshape(-1, *[1] * len(shape))
            return nn.Parameter((w * s + init_mean).clone())

        first = draw(n, max(self.dims), self.widths[0])
        rows = torch.arange(max(self.dims))[None, :, None] < torch.tensor(self.dims)[:, None, None]
        with torch.no_grad():
            first.mul_(rows)
        layers = [first]
        for l in range(1, depth):
            layers.append(draw(n // pool_size**l, self.widths[l - 1], self.widths[l]))
        self.layers = nn.ParameterList(layers)
        self.output = draw(self.widths[-1])
        self.register_buffer("_dims", torch.tensor(self.dims), persistent=False)

    @property
    def order(self) -> int:
        return len(self.dims)

    def _pool(self, log_abs, sign, level: int):
        """Product over each pooling window of the node dimension (-2)."""
        perm = self.perms[level]
        *lead, m, r = log_abs.shape
        shape = (*lead, m // self.pool_size, self.pool_size, r)
        if perm != list(range(m)):  # ("adjacent" needs no reordering)
            index = torch.tensor(perm, device=log_abs.device)
            log_abs, sign = log_abs.index_select(-2, index), sign.index_select(-2, index)
        return signed_log_prod(log_abs.reshape(shape), sign.reshape(shape), dim=-2)

    def log_root(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log|·|, sign) of the root activations ([M,] B, R_L)."""
        if indices.ndim != 2 or indices.shape[1] != self.order:
            raise ValueError(f"indices must be (B, {self.order}), got {tuple(indices.shape)}")
        idx = indices.to(torch.long)
        if idx.numel() and (bool((idx < 0).any()) or bool((idx >= self._dims).any())):
            raise ValueError(f"indices out of range for a tensor of shape {self.dims}")
        one_hot = torch.zeros(*idx.shape, max(self.dims), dtype=self.output.dtype)
        one_hot.scatter_(-1, idx[..., None], 1.0)  # (B, N, d): x_n = e_{i_n}
        vals = torch.einsum("bnd,...ndr->...bnr", one_hot, self.layers[0])  # ([M,] B, N, R_1)
        log_abs, sign = self._pool(*signed_log(vals), 0)
        for l in range(1, len(self.widths)):
            log_abs, sign = signed_log_linear(log_abs, sign, self.layers[l])
            log_abs, sign = self._pool(log_abs, sign, l)
        return log_abs[..., 0, :], sign[..., 0, :]

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        log_abs, sign = self.log_root(indices)
        out_log, out_sign = signed_log(self.output)
        return signed_log_value(
            log_abs + out_log[..., None, :], sign * out_sign[..., None, :], dim=-1
        )

    def mode_tree(self) -> list[list[tuple[int, ...]]]:
        """Nodes of the mode tree per level (leaves first), each a tuple of modes."""
        levels = [[(i,) for i in range(self.order)]]
        for perm in self.perms:
            cur = [levels[-1][i] for i in perm]
            levels.append(
                [
                    tuple(sorted(sum(cur[k : k + self.pool_size], ())))
                    for k in range(0, len(cur), self.pool_size)
                ]
            )
        return levels

    def local_component_norms(self, level: int | None = None) -> torch.Tensor:
        """Norms of the local components at ``level`` (default: the top), ([M,] nodes, R).

        Node v pools the window {n}; component r is {W^{(l,n)}[:, r] : n ∈ window(v)} with
        W^{(l+1,v)}[r, :] (or w_out[r] at the top), and its norm is the product of the norms
        (``__compute_local_components_norms`` in ``imp_reg_htf``).
        """
        depth = len(self.widths)
        level = depth - 1 if level is None else int(level)
        if not 0 <= level < depth:
            raise ValueError(f"level must be in [0, {depth - 1}], got {level}")
        col = torch.linalg.vector_norm(self.layers[level], dim=-2)  # ([M,] nodes_in, R)
        *lead, m, r = col.shape
        pooled = (
            col[..., self.perms[level], :]
            .reshape(*lead, m // self.pool_size, self.pool_size, r)
            .log()
            .sum(-2)
        )
        if level + 1 < depth:
            nxt = torch.linalg.vector_norm(self.layers[level + 1], dim=-1)  # ([M,] nodes, R)
        else:
            nxt = self.output.abs()[..., None, :]
        return torch.exp(pooled + nxt.log()).detach()

    def full(self, max_entries: int = DENSE_MAX_ENTRIES) -> torch.Tensor:
        """The dense tensor ([M,] *dims), refused before allocating beyond ``max_entries``."""
        check_dense_size(self.dims, max_entries)
        out = self(all_indices(self.dims))
        return out.reshape(*out.shape[:-1], *self.dims)

    def extra_repr(self) -> str:
        return (
            f"dims={self.dims}, widths={self.widths}, pattern={self.pattern!r}, "
            f"depth={int(math.log(self.order, self.pool_size) + 0.5)}"
        )
