"""Stacked ensembles of E same-shaped networks: one batched computation for all members.

Every weight is stored as one tensor (E, n_l, n_{l−1}); a forward pass is one ``bmm`` per
layer. Member e is initialised by the single-network initialiser with its own generator
``generators[e]`` (and its own init scale), so it starts exactly where an independent
:class:`~rankscope.models.DeepLinear` / :class:`~rankscope.models.MLP` with that seed starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rankscope.models.linear import DeepLinear, check_dims, end_to_end, init_deep_linear
from rankscope.models.mlp import MLP, activation_fn, init_mlp_weights

__all__ = ["DeepLinearEnsemble", "MLPEnsemble", "per_member"]


def per_member(value, n: int, what: str) -> list:
    """``value`` repeated n times when scalar-like, else a length-n list (checked)."""
    if isinstance(value, str | int | float) or value is None:
        return [value] * n
    if isinstance(value, torch.Tensor):
        value = value.tolist() if value.ndim else [value.item()] * n
    vals = list(value)
    if len(vals) != n:
        raise ValueError(
            f"{what} must be one value or {n} values (one per member), got {len(vals)}"
        )
    return vals


def _check_generators(generators: Sequence[torch.Generator]) -> list[torch.Generator]:
    gens = list(generators)
    if not gens or not all(isinstance(g, torch.Generator) for g in gens):
        kinds = [type(g).__name__ for g in gens]
        raise TypeError(
            f"generators must be a non-empty list of torch.Generator (one per member), got {kinds}"
        )
    return gens


def _stack(mats: list[list[torch.Tensor]]) -> nn.ParameterList:
    """Member-major lists [[W_1..W_L] per member] -> ParameterList of (E, n_l, n_{l−1})."""
    return nn.ParameterList(nn.Parameter(torch.stack(ws).contiguous()) for ws in zip(*mats))


def _bmm_right(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """h Wᵀ per member: h (E, N, n_in) or shared (N, n_in), w (E, n_out, n_in) -> (E, N, n_out).

    A shared input is broadcast with ``expand`` (no copy). Measured here for (8, 1797, 64):
    expand+bmm 2.1 ms vs one (N, E·n_out) GEMM + transpose 3.7 ms, whose non-contiguous
    output also made the following ReLU ~10× slower.
    """
    if h.ndim == 2:
        h = h.expand(w.shape[0], *h.shape)
    return torch.bmm(h, w.mT)


class DeepLinearEnsemble(nn.Module):
    """E deep linear networks A_e = W_{L,e}⋯W_{1,e}, weights stacked as (E, n_ℓ, n_{ℓ−1}).

    ``sigma``: init std, one float for all or one per member (each a float or one per
    layer). ``generators[e]`` draws member e's init exactly as
    ``DeepLinear(dims, sigma=sigma[e], generator=generators[e])`` does.
    """

    def __init__(
        self,
        dims: Sequence[int],
        *,
        sigma,
        generators: Sequence[torch.Generator],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dims = check_dims(dims)
        gens = _check_generators(generators)
        sig = per_member(sigma, len(gens), "sigma")
        mats = [init_deep_linear(self.dims, s, generator=g, dtype=dtype) for s, g in zip(sig, gens)]
        self.weights = _stack(mats)

    @classmethod
    def from_members(cls, members: Sequence[DeepLinear]) -> DeepLinearEnsemble:
        """Stack copies of same-shaped :class:`DeepLinear` networks."""
        ens = cls.__new__(cls)
        nn.Module.__init__(ens)
        ens.dims = list(members[0].dims)
        if any(list(m.dims) != ens.dims for m in members):
            raise ValueError(f"members must share dims, got {[list(m.dims) for m in members]}")
        ens.weights = _stack([[w.detach().clone() for w in m.weights] for m in members])
        return ens

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def depth(self) -> int:
        return len(self.weights)

    def product(self) -> torch.Tensor:
        """A_e for every member, (E, n_L, n_0)."""
        return end_to_end(list(self.weights))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, n_0) or (E, N, n_0) -> (E, N, n_L)
        for w in self.weights:
            x = _bmm_right(x, w)
        return x

    def member(self, e: int) -> DeepLinear:
        """A standalone copy of member e."""
        return DeepLinear.from_weights([w[e] for w in self.weights])


class MLPEnsemble(nn.Module):
    """E MLPs with stacked weights (E, n_l, n_{l−1}) and optional biases (E, n_l).

    ``init`` ("he", "lecun" or a float std) may differ per member; ``generators[e]`` draws
    member e's weights exactly as ``MLP(dims, activation, bias, init=init[e],
    generator=generators[e])`` does.
    """

    def __init__(
        self,
        dims: Sequence[int],
        activation: str = "relu",
        bias: bool = False,
        *,
        init="he",
        generators: Sequence[torch.Generator],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dims = check_dims(dims)
        self.activation = activation
        self._act = activation_fn(activation)
        self._act_ = activation_fn(activation, inplace=True)
        gens = _check_generators(generators)
        inits = per_member(init, len(gens), "init")
        mats = [
            init_mlp_weights(self.dims, init=i, generator=g, dtype=dtype)
            for i, g in zip(inits, gens)
        ]
        self.weights = _stack(mats)
        e = len(gens)
        self.biases = (
            nn.ParameterList(nn.Parameter(torch.zeros(e, n, dtype=dtype)) for n in self.dims[1:])
            if bias
            else None
        )

    @property
    def size(self) -> int:
        return self.weights[0].shape[0]

    @property
    def depth(self) -> int:
        return len(self.weights)

    def _layer(self, h: torch.Tensor, l: int) -> torch.Tensor:
        z = _bmm_right(h, self.weights[l])  # (E, N, n_l)
        if self.biases is not None:
            z = z + self.biases[l][:, None, :]
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, n_0) or (E, N, n_0) -> (E, N, n_L)
        h = x
        for l in range(self.depth - 1):
            h = self._act_(self._layer(h, l))
        return self._layer(h, self.depth - 1)

    def forward_with_hidden(self, x: torch.Tensor):
        """(out, [h_0 … h_{L−1}], [z_1 … z_L]), each (E, N, n_l); h_0 is x broadcast to E."""
        hs = [x if x.ndim == 3 else x.expand(self.size, *x.shape)]
        zs = []
        h = x
        for l in range(self.depth):
            z = self._layer(h, l)
            zs.append(z)
            if l < self.depth - 1:
                h = self._act(z)
                hs.append(h)
        return zs[-1], hs, zs

    def member(self, e: int) -> MLP:
        """A standalone copy of member e."""
        net = MLP(
            self.dims,
            self.activation,
            self.biases is not None,
            generator=torch.Generator(),
            dtype=self.weights[0].dtype,
        )  # overwritten below
        with torch.no_grad():
            for w, we in zip(net.weights, self.weights):
                w.copy_(we[e])
            if self.biases is not None:
                for b, be in zip(net.biases, self.biases):
                    b.copy_(be[e])
        return net
