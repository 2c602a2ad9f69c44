"""Fully connected networks with access to every pre-activation and activation.

Notation (docs/results.md, definitions §0): h_0 = x, z_l = W_l h_{l−1} (+ b_l), h_l = σ(z_l) for
l < L, and f(x) = z_L. Tensors are rows (N, n_l); transpose before applying column formulas.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from rankscope.models.linear import check_dims

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "activation_fn",
    "init_mlp_weights",
    "init_std",
    "l2_params_for",
]

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "identity": lambda z: z,
    "gelu": torch.nn.functional.gelu,
    "leaky_relu": torch.nn.functional.leaky_relu,
}
_INITS = ("he", "lecun")
# in-place versions for forward(): the pre-activation is not saved by autograd (matmul saves
# its inputs, relu/tanh their outputs), so overwriting it saves one activation-sized buffer.
_INPLACE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "identity": lambda z: z,
}


def activation_fn(name: str, *, inplace: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation σ called ``name`` (one of :data:`ACTIVATIONS`); ``inplace=True`` gives
    a version that may overwrite its argument (falls back to the pure one where none exists)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of {tuple(ACTIVATIONS)}")
    return _INPLACE.get(name, ACTIVATIONS[name]) if inplace else ACTIVATIONS[name]


def init_std(fan_in: int, init: str | float) -> float:
    """Init standard deviation: ``he`` √(2/fan_in), ``lecun`` √(1/fan_in), or a given float."""
    if isinstance(init, int | float) and not isinstance(init, bool):
        return float(init)
    if init == "he":
        return math.sqrt(2.0 / fan_in)
    if init == "lecun":
        return math.sqrt(1.0 / fan_in)
    raise ValueError(f"unknown init {init!r}; expected one of {_INITS} or a float std")


def init_mlp_weights(
    dims: Sequence[int],
    *,
    init: str | float = "he",
    generator: torch.Generator | None,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """W_1, …, W_L with N(0, std²) entries (std from :func:`init_std`), drawn in that order.

    Biases are initialised to zero and draw nothing, so ``bias=True/False`` share weights.
    Ensembles call this once per member with the member's own generator.
    """
    dims = check_dims(dims)
    out = []
    for n_in, n_out in itertools.pairwise(dims):
        w = torch.randn((n_out, n_in), generator=generator, dtype=dtype)  # (n_l, n_{l−1})
        out.append(w.mul_(init_std(n_in, init)))
    return out


def l2_params_for(count_bias_in_norm: bool) -> str:
    """The ``l2_params`` of :func:`rankscope.train.train` for a bias convention (definitions
    §9): ``"all"`` when biases count in ‖θ‖², ``"weights"`` when they do not."""
    if not isinstance(count_bias_in_norm, bool):
        raise TypeError(f"count_bias_in_norm must be a bool, got {count_bias_in_norm!r}")
    return "all" if count_bias_in_norm else "weights"


class MLP(nn.Module):
    """f(x) = W_L σ(⋯σ(W_1 x + b_1)⋯) + b_L, dims = [n_0, …, n_L].

    He init N(0, 2/fan_in) by default (``init="lecun"`` or a float std otherwise), zero biases
    when ``bias=True``. ``forward`` maps (N, n_0) -> (N, n_L); :meth:`forward_with_hidden`
    also returns the activations [h_0, …, h_{L−1}] and pre-activations [z_1, …, z_L].

    >>> net = MLP([4, 8, 3], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> out, hs, zs = net.forward_with_hidden(torch.ones(5, 4, dtype=torch.float64))
    >>> out.shape, [h.shape[1] for h in hs], [z.shape[1] for z in zs]
    (torch.Size([5, 3]), [4, 8], [8, 3])
    """

    def __init__(
        self,
        dims: Sequence[int],
        activation: str = "relu",
        bias: bool = False,
        *,
        init: str | float = "he",
        generator: torch.Generator | None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.dims = check_dims(dims)
        self.activation = activation
        self._act = activation_fn(activation)
        self._act_ = activation_fn(activation, inplace=True)
        ws = init_mlp_weights(self.dims, init=init, generator=generator, dtype=dtype)
        self.weights = nn.ParameterList(nn.Parameter(w) for w in ws)
        self.biases = (
            nn.ParameterList(nn.Parameter(torch.zeros(n, dtype=dtype)) for n in self.dims[1:])
            if bias
            else None
        )

    @property
    def depth(self) -> int:
        return len(self.weights)

    def squared_norm(self, count_bias_in_norm: bool = True) -> torch.Tensor:
        """‖θ‖² = Σ_ℓ ‖W_ℓ‖_F² (+ Σ_ℓ ‖b_ℓ‖² when ``count_bias_in_norm``), differentiable.

        The explicit L2 penalty λ‖θ‖² of the bottleneck papers; train it with
        ``train(..., l2=λ, l2_params=l2_params_for(count_bias_in_norm))``.
        """
        total = sum((w * w).sum() for w in self.weights)
        if count_bias_in_norm and self.biases is not None:
            total = total + sum((b * b).sum() for b in self.biases)
        return total

    def layer_norms(self, count_bias_in_norm: bool = True) -> list[float]:
        """‖W_ℓ‖_F² (+ ‖b_ℓ‖²) per layer ℓ = 1..L, as floats."""
        out = []
        for l, w in enumerate(self.weights):
            v = float((w.detach() ** 2).sum())
            if count_bias_in_norm and self.biases is not None:
                v += float((self.biases[l].detach() ** 2).sum())
            out.append(v)
        return out

    def _layer(self, h: torch.Tensor, l: int) -> torch.Tensor:
        # rows h (N, n_{l−1}) -> (N, n_l); a stacked ensemble (models.ensembles) runs the same
        # code with W (E, n_l, n_{l−1}), b (E, n_l) and h (N, ·) shared or (E, N, ·)
        z = h @ self.weights[l].mT
        if self.biases is not None:
            z = z + self.biases[l].unsqueeze(-2)
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, n_0) -> (N, n_L)
        h = x
        for l in range(self.depth - 1):
            h = self._act_(self._layer(h, l))
        return self._layer(h, self.depth - 1)

    def forward_with_hidden(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """(out, [h_0 … h_{L−1}], [z_1 … z_L]); h_0 = x, out = z_L; each (N, n_l).

        The z_l keep their graph, so ``torch.autograd.grad(summed_loss, zs)`` gives the
        per-sample back-propagated signals δ_l (docs/results.md: use the *summed* loss).
        """
        hs, zs = [x], []
        h = x
        for l in range(self.depth):
            z = self._layer(h, l)
            zs.append(z)
            if l < self.depth - 1:
                h = self._act(z)
                hs.append(h)
        return zs[-1], hs, zs
