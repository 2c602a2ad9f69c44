"""A shallow linear net A = W₂W₁ held by its d×d statistics, or by its explicit factors.

:class:`GramState` stores (A, P, Q) = (W₂W₁, W₂W₂ᵀ, W₁ᵀW₁) for E members, each (E, d, d), so a
width w far larger than memory allows (``mixed-dynamics`` goes to w ≈ 4·10⁵) costs d×d per
member; :class:`FactorState` stores W₁ (E, w, d) and W₂ (E, d, w). Both expose ``size`` (E)
and ``product()`` (A), so :func:`rankscope.train.train` trains them as stacked ensembles with
the optimizers of :mod:`rankscope.train.gram_gd`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FactorState", "GramState"]


class GramState(nn.Module):
    """E members' state (A, P, Q), each (E, d, d); ``product()`` is A."""

    def __init__(self, a: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> None:
        super().__init__()
        self.a, self.p, self.q = (nn.Parameter(x.detach().clone()) for x in (a, p, q))

    @property
    def size(self) -> int:
        return self.a.shape[0]

    def product(self) -> torch.Tensor:
        return self.a


class FactorState(nn.Module):
    """E members' explicit factors W₁ (E, w, d), W₂ (E, d, w); ``product()`` is W₂W₁."""

    def __init__(self, w1: torch.Tensor, w2: torch.Tensor) -> None:
        super().__init__()
        self.w1, self.w2 = nn.Parameter(w1.detach().clone()), nn.Parameter(w2.detach().clone())

    @property
    def size(self) -> int:
        return self.w1.shape[0]

    def product(self) -> torch.Tensor:
        return self.w2 @ self.w1
