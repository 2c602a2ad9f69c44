"""Stacked ensembles of E same-shaped networks: one batched computation for all members.

Every weight is stored as one tensor (E, n_ℓ, n_{ℓ−1}) (biases (E, n_ℓ)); the forward pass
is the single network's own code (:class:`~rankscope.models.DeepLinear`,
:class:`~rankscope.models.MLP`), whose ``h @ W.mT`` is one ``bmm`` per layer on stacked
weights: a shared input (N, n_0) is broadcast to every member without a copy, a per-member
input is (E, N, n_0), the output is (E, N, n_L). Member e is initialised by the
single-network initialiser with its own generator ``generators[e]`` (and its own init scale),
so it starts exactly where an independent network with that seed starts. ``size`` is E;
:func:`rankscope.train.train` treats any module with a ``size`` as an ensemble.

Closed-form backward (``loss_and_grads``): for a supervised loss whose output gradient is
given (``rankscope.train.SupervisedLoss``), the gradient of Σ_e loss_e flows back through the
layers as a chain of ``bmm`` (ReLU masks from the stored activations), with no autograd
graph; the steps equal autograd's to the bit. Kept because ``benchmarks/bench_closed_form.py``
measures ≥ 2× over autograd on sgd-weight-decay-rank's small-batch ensembles (and it carries
``bench_ensemble.py``'s ≥ 30×); see docs/decisions.md.

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


def _expand(h: torch.Tensor, size: int) -> torch.Tensor:
    """A shared (N, n) input as an (E, N, n) view (no copy); (E, N, n) is returned as is."""
    return h if h.ndim == 3 else h.expand(size, *h.shape)


def _bmm_right(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """h Wᵀ per member, (E, N, n_out): the forward's ``h @ w.mT``, to the bit."""
    return torch.bmm(_expand(h, w.shape[0]), w.mT)


def _backprop(ws, hs, g: torch.Tensor, *, relu: bool, bias: bool) -> list[torch.Tensor]:
    """∂/∂W_ℓ (and ∂/∂b_ℓ) of Σ_e loss_e by hand, given g = ∂/∂(output) (E, N, n_L).

    ``hs[ℓ]`` is layer ℓ+1's input (E, N, n_ℓ) or shared (N, n_ℓ); for ``relu`` it is also
    the mask of the layer below (h > 0). Per layer: ∂W = gᵀh (one bmm), ∂b = Σ_N g, and
    g ← (g W) ⊙ 1[h > 0]. Returns [∂W_1 … ∂W_L] (+ [∂b_1 … ∂b_L] with ``bias``), each shaped
    like its parameter. gᵀh as bmm(g.mT, h) was measured 1.6× faster than autograd's (hᵀg)ᵀ.
    """
    depth = len(ws)
    dw: list[torch.Tensor] = [g] * depth
    db: list[torch.Tensor] = [g] * depth
    for l in range(depth - 1, -1, -1):
        if bias:
            db[l] = g.sum(dim=1)  # (E, n_ℓ)
        dw[l] = torch.bmm(g.mT, _expand(hs[l], g.shape[0]))  # (E, n_ℓ, n_{ℓ−1})
        if l:
            g = torch.bmm(g, ws[l])  # (E, N, n_{ℓ−1})
            if relu:  # what autograd runs for ReLU: g·1[h > 0]
                g = torch.ops.aten.threshold_backward(g, hs[l], 0)
    return dw + db if bias else dw


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

    def supports_closed_form(self, loss_name: str) -> bool:
        """Whether :meth:`loss_and_grads` applies: any supervised loss."""
        return True

    @torch.no_grad()
    def loss_and_grads(self, out_grad, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(loss_e (E,), ∂(Σ_e loss_e)/∂W_ℓ for ℓ = 1..L) on ``batch = (x, y)``, no autograd.

        ``out_grad(out, y) -> (loss (E,), ∂(Σ loss)/∂out)`` (it may overwrite ``out``). With
        g = ∂loss/∂out, ∂W_ℓ = (W_{ℓ+1}ᵀ⋯W_Lᵀ g)ᵀ h_{ℓ−1}, one chain of bmm (:func:`_backprop`).
        """
        ws = [w.detach() for w in self.weights]
        hs = [batch[0]]
        for w in ws[:-1]:
            hs.append(_bmm_right(hs[-1], w))
        losses, g = out_grad(_bmm_right(hs[-1], ws[-1]), batch[1])
        return losses, _backprop(ws, hs, g, relu=False, bias=False)


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

    def supports_closed_form(self, loss_name: str) -> bool:
        """Whether :meth:`loss_and_grads` applies: a supervised loss on a ReLU network."""
        return self.activation == "relu"

    def _stacked_layer(self, h: torch.Tensor, l: int) -> torch.Tensor:
        z = _bmm_right(h, self.weights[l])  # (E, N, n_l), the forward's bits
        if self.biases is not None:
            z = z + self.biases[l].unsqueeze(-2)
        return z

    @torch.no_grad()
    def loss_and_grads(self, out_grad, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(loss_e (E,), gradients of Σ_e loss_e for weights then biases), no autograd.

        Same forward as :meth:`forward`; the backward is :func:`_backprop` with the ReLU
        masks taken from the stored activations (ReLU only: :meth:`supports_closed_form`).
        """
        if not self.supports_closed_form(""):
            raise ValueError(f"no closed-form gradient with activation {self.activation!r}")
        hs = [batch[0]]
        for l in range(self.depth - 1):
            hs.append(self._stacked_layer(hs[-1], l).relu_())
        losses, g = out_grad(self._stacked_layer(hs[-1], self.depth - 1), batch[1])
        ws = [w.detach() for w in self.weights]
        return losses, _backprop(ws, hs, g, relu=True, bias=self.biases is not None)

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
