"""Stacked ensembles of E same-shaped networks: one batched computation for all members.

Every weight is stored as one tensor (E, n_ℓ, n_{ℓ−1}) (biases (E, n_ℓ)); the forward pass
is the single network's own code (:class:`~rankscope.models.DeepLinear`,
:class:`~rankscope.models.MLP`), whose ``h @ W.mT`` is one ``bmm`` per layer on stacked
weights: a shared input (N, n_0) is broadcast to every member without a copy, a per-member
input is (E, N, n_0), the output is (E, N, n_L). Member e is initialised by the
single-network initialiser with its own generator ``generators[e]`` (and its own init scale),
so it starts exactly where an independent network with that seed starts. ``size`` is E;
:func:`rankscope.train.train` treats any module with a ``size`` as an ensemble.

>>> gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
>>> ens = DeepLinearEnsemble([3, 5, 2], sigma=0.1, generators=gens)
>>> ens.size, tuple(ens.product().shape), tuple(ens(torch.ones(4, 3)).shape)
(3, (3, 2, 3), (3, 4, 2))
>>> one = DeepLinear([3, 5, 2], sigma=0.1, generator=torch.Generator().manual_seed(1))
>>> torch.equal(ens.member(1).product(), one.product())
True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rankscope.models.linear import DeepLinear, check_dims, init_deep_linear
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
    """Member-major lists [[W_1..W_L] per member] -> ParameterList of (E, n_ℓ, n_{ℓ−1})."""
    return nn.ParameterList(nn.Parameter(torch.stack(ws).contiguous()) for ws in zip(*mats))


class DeepLinearEnsemble(DeepLinear):
    """E deep linear networks A_e = W_{L,e}⋯W_{1,e}, weights stacked as (E, n_ℓ, n_{ℓ−1}).

    ``sigma``: init std, one float for all or one per member (each a float or one per
    layer). ``generators[e]`` draws member e's init exactly as
    ``DeepLinear(dims, sigma=sigma[e], generator=generators[e])`` does. ``forward`` and
    ``product`` are :class:`DeepLinear`'s: (N, n_0) or (E, N, n_0) -> (E, N, n_L), and A (E,
    n_L, n_0).
    """

    def __init__(
        self,
        dims: Sequence[int],
        *,
        sigma,
        generators: Sequence[torch.Generator],
        dtype: torch.dtype = torch.float32,
    ) -> None:
        nn.Module.__init__(self)
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

    def member(self, e: int) -> DeepLinear:
        """A standalone copy of member e."""
        return DeepLinear.from_weights([w[e] for w in self.weights])


class MLPEnsemble(MLP):
    """E MLPs with stacked weights (E, n_ℓ, n_{ℓ−1}) and optional biases (E, n_ℓ).

    ``init`` ("he", "lecun" or a float std) may differ per member; ``generators[e]`` draws
    member e's weights exactly as ``MLP(dims, activation, bias, init=init[e],
    generator=generators[e])`` does. ``forward`` and ``forward_with_hidden`` are
    :class:`MLP`'s, on stacked tensors (E, N, n_ℓ); ``h_0`` is the input as given.
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
        nn.Module.__init__(self)
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
