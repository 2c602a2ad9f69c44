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
from rankscope.train.losses import SupervisedLoss

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
    return torch.bmm(_expand(h, w.shape[0]), w.mT)


def _expand(h: torch.Tensor, size: int) -> torch.Tensor:
    """A shared (N, n) input as an (E, N, n) view (no copy); (E, N, n) is returned as is."""
    return h if h.ndim == 3 else h.expand(size, *h.shape)


def _backprop(
    ws: list[torch.Tensor], hs: list[torch.Tensor], g: torch.Tensor, *, relu: bool, bias: bool
) -> list[torch.Tensor]:
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

    def supports_closed_form(self, loss) -> bool:
        """Whether :meth:`loss_and_grads` applies (any :class:`SupervisedLoss`)."""
        return isinstance(loss, SupervisedLoss)

    @torch.no_grad()
    def loss_and_grads(self, loss: SupervisedLoss, batch) -> tuple[torch.Tensor, list]:
        """(loss_e (E,), ∂(Σ_e loss_e)/∂W_ℓ for ℓ = 1..L) on ``batch = (x, y)``, no autograd.

        The gradient of loss(W_L⋯W_1 x, y) is closed-form: with g = ∂loss/∂out,
        ∂W_ℓ = (W_{ℓ+1}ᵀ⋯W_Lᵀ g)ᵀ h_{ℓ−1}, computed as one chain of bmm (:func:`_backprop`).
        """
        ws = [w.detach() for w in self.weights]
        hs = [batch[0]]
        for w in ws[:-1]:
            hs.append(_bmm_right(hs[-1], w))
        losses, g = loss.value_and_grad(_bmm_right(hs[-1], ws[-1]), batch[1])
        return losses, _backprop(ws, hs, g, relu=False, bias=False)


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

    def supports_closed_form(self, loss) -> bool:
        """Whether :meth:`loss_and_grads` applies: a :class:`SupervisedLoss` and ReLU."""
        return isinstance(loss, SupervisedLoss) and self.activation == "relu"

    @torch.no_grad()
    def loss_and_grads(self, loss: SupervisedLoss, batch) -> tuple[torch.Tensor, list]:
        """(loss_e (E,), gradients of Σ_e loss_e for weights then biases), no autograd.

        Same forward as :meth:`forward`; the backward is :func:`_backprop` with the ReLU
        masks taken from the stored activations (ReLU only: :meth:`supports_closed_form`).
        """
        if not self.supports_closed_form(loss):
            raise ValueError(f"no closed-form gradient for {loss!r} with {self.activation!r}")
        hs = [batch[0]]
        for l in range(self.depth - 1):
            hs.append(self._layer(hs[-1], l).relu_())
        losses, g = loss.value_and_grad(self._layer(hs[-1], self.depth - 1), batch[1])
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
