"""Graph neural networks on dense adjacency matrices, in plain torch (no torch-geometric).

- :class:`DenseGCN`: H ← LayerNorm(Â H W + b) then ReLU, Â = D^{−1/2}(A + I)D^{−1/2}; mean readout
  for graph prediction or a per-vertex head (docs/results.md, GNN-2 and GNN-3).
- :class:`ProductGNN`: the theory model of arXiv:2211.16494 with product aggregation,
  h^{(l,i)} = ⊙_{j∈N(i)} W^{(l)} h^{(l−1,j)}, graph output W^{(o)}(⊙_i h^{(L,i)}) or vertex output
  W^{(o)} h^{(L,t)} (N(i) includes i: self-loops are always added).

Graphs come as (n, n) or batched (B, n, n) 0/1 adjacency; build one from an edge list with
:func:`rankscope.metrics.graph.adjacency_matrix`. Weights are drawn from ``generator`` only.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

__all__ = ["DenseGCN", "ProductGNN", "normalized_adjacency"]


def _uniform_(t: torch.Tensor, bound: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        t.copy_(torch.rand(t.shape, generator=generator, dtype=t.dtype) * 2 * bound - bound)


def _linear(n_in: int, n_out: int, dtype, generator) -> nn.Linear:
    """nn.Linear with torch's default U(±1/√fan_in) init, drawn from ``generator``."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out, dtype=dtype)
    _uniform_(layer.weight, 1 / math.sqrt(n_in), generator)
    _uniform_(layer.bias, 1 / math.sqrt(n_in), generator)
    return layer


def normalized_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """Â = D^{−1/2}(A + I)D^{−1/2} for (..., n, n) adjacency (existing self-loops are kept at 1)."""
    if adj.ndim < 2 or adj.shape[-1] != adj.shape[-2]:
        raise ValueError(f"adjacency must be (..., n, n), got {tuple(adj.shape)}")
    eye = torch.eye(adj.shape[-1], dtype=adj.dtype, device=adj.device)
    a = torch.maximum((adj != 0).to(adj.dtype if adj.is_floating_point() else torch.float32), eye)
    d = a.sum(-1).rsqrt()
    return d[..., :, None] * a * d[..., None, :]


class DenseGCN(nn.Module):
    """``depth`` GCN layers of width ``hidden`` and a linear head.

    ``readout="mean"``: x (B, n, D) → (B, out_dim) (mean over vertices, then the head).
    ``readout="none"``: x (n, D) or (B, n, D) → per-vertex outputs (..., n, out_dim).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        depth: int,
        out_dim: int,
        *,
        layer_norm: bool = True,
        readout: str = "mean",
        dtype: torch.dtype = torch.float32,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if readout not in ("mean", "none"):
            raise ValueError(f"readout must be 'mean' or 'none', got {readout!r}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        dims = [in_dim] + [hidden] * depth
        self.convs = nn.ModuleList(
            _linear(a, b, dtype, generator) for a, b in itertools.pairwise(dims)
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm(hidden, dtype=dtype) if layer_norm else nn.Identity() for _ in range(depth)
        )
        self.head = _linear(hidden, out_dim, dtype, generator)
        self.readout = readout

    def forward(self, x: torch.Tensor, a_hat: torch.Tensor) -> torch.Tensor:
        h = x  # (..., n, D)
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(norm(a_hat @ conv(h)))  # (..., n, hidden)
        if self.readout == "mean":
            h = h.mean(-2)  # (B, hidden)
        return self.head(h)


class ProductGNN(nn.Module):
    """Product-aggregation GNN (the separation-rank model of arXiv:2211.16494).

    ``weights``: W^{(1)} (D_h, D_x), W^{(l)} (D_h, D_h), l = 2..depth, and W^{(o)} (out, D_h),
    drawn N(init_mean, init_std²). ``forward(x, adj)``: x (B, n, D_x), adj (n, n) 0/1 (self-loops
    added); returns (B, out) for ``target=None`` (graph prediction) or vertex ``target``'s output.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int,
        depth: int,
        *,
        out_dim: int = 1,
        init_mean: float = 1.0,
        init_std: float = 0.3,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        dims = [in_dim] + [hidden] * depth

        def draw(n_out: int, n_in: int) -> nn.Parameter:
            w = torch.randn(n_out, n_in, generator=generator, dtype=dtype)
            return nn.Parameter(w * init_std + init_mean)

        self.weights = nn.ParameterList(draw(b, a) for a, b in itertools.pairwise(dims))
        self.out = draw(out_dim, hidden)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, target: int | None = None):
        n = adj.shape[-1]
        if x.ndim != 3 or x.shape[1] != n:
            raise ValueError(
                f"x must be (B, {n}, D_x) for an ({n}, {n}) graph, got {tuple(x.shape)}"
            )
        nbr = (adj != 0) | torch.eye(n, dtype=torch.bool, device=adj.device)  # (n, n)
        h = x
        for w in self.weights:
            msg = h @ w.T  # (B, n, D_h)
            h = torch.where(nbr[None, :, :, None], msg[:, None, :, :], 1.0).prod(2)  # (B, n, D_h)
        pooled = h.prod(1) if target is None else h[:, int(target)]
        return pooled @ self.out.T  # (B, out)
