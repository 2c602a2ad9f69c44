"""GD on a shallow linear net A = W₂W₁ as optimizers of the engine (used by ``mixed-dynamics``).

``mixed-dynamics`` trains A = W₂W₁ (W₁ ∈ R^{w×d}, W₂ ∈ R^{d×w}) on C = ½‖A − Y‖² at widths up
to w = d^{2.8} ≈ 4·10⁵, where the factors do not fit in memory. GD on the factors is closed
in the d×d statistics (A, P, Q) = (W₂W₁, W₂W₂ᵀ, W₁ᵀW₁) [derived; exact], so the experiment
trains those (:class:`rankscope.models.gram.GramState`) through
:func:`rankscope.train.train` with :class:`GramGD`, whose step is GD of
the factors written in them. :class:`FactorGD` is the same update on explicit factors
(small w; the reference the Gram form is tested against). Both take the notebooks' update
order: ``sequential`` (W₁ first, then W₂ with the new W₁ and the same G = A − Y) or
``simultaneous`` (textbook GD), one order for every member or one per member (a sequence of
E names: ``mixed-dynamics`` runs a simultaneous twin of each sequential member for its GD–SC
comparison). η is one value per member (E, 1, 1).

The engine computes the objective ½‖A − Y‖² per member, its gradient G = A − Y by autograd
(zero for frozen members, which therefore do not move), divergence and the callbacks; the
optimizer maps (state, G) to the next state.
"""

from __future__ import annotations

import torch

__all__ = ["UPDATES", "FactorGD", "GramGD"]

UPDATES = ("sequential", "simultaneous")


def _check_update(update) -> str | tuple[str, ...]:
    """``update`` as one name, or as a tuple of per-member names (each checked)."""
    names = (update,) if isinstance(update, str) else tuple(update)
    bad = [u for u in names if u not in UPDATES]
    if bad or not names:
        raise ValueError(
            f"update must be 'sequential' or 'simultaneous' (or one per member), got {update!r}"
        )
    return update if isinstance(update, str) else names


def _groups(update, size: int):
    """[(member index or None for all, name)]: one group per update order present."""
    if isinstance(update, str):
        return [(None, update)]
    if len(update) != size:
        raise ValueError(f"one update order per member: got {len(update)} for {size} members")
    return [
        (torch.tensor([i for i, u in enumerate(update) if u == name]), name)
        for name in UPDATES
        if name in update
    ]


def _gram_step(a, p, q, g, eta, update: str):
    """(A', P', Q') of one GD step of the factors written in (A, P, Q) (see GramGD)."""
    gt = g.mT
    q1 = q - eta * (a.mT @ g + gt @ a) + eta**2 * (gt @ p @ g)
    if update == "sequential":
        a1 = a - eta * (p @ g)
        return a1 - eta * (g @ q1), p - eta * (g @ a1.mT + a1 @ gt) + eta**2 * (g @ q1 @ gt), q1
    a2 = a - eta * (p @ g + g @ q) + eta**2 * (g @ a.mT @ g)
    return a2, p - eta * (g @ a.mT + a @ gt) + eta**2 * (g @ q @ gt), q1


def _pick(x, idx):
    return x if idx is None or x.shape[0] == 1 else x[idx]


class GramGD(torch.optim.Optimizer):
    """One GD step of (W₁, W₂) written in (A, P, Q), with G = ∂C/∂A = A − Y (``A.grad``).

    ``sequential`` (the notebook): W₁' = W₁ − ηW₂ᵀG, W₂' = W₂ − ηG W₁'ᵀ, so
    A₁ = A − ηPG, Q' = Q − η(AᵀG + GᵀA) + η²GᵀPG, A' = A₁ − ηGQ',
    P' = P − η(GA₁ᵀ + A₁Gᵀ) + η²GQ'Gᵀ. ``simultaneous``: A' = A − ηPG − ηGQ + η²GAᵀG,
    P' = P − η(GAᵀ + AGᵀ) + η²GQGᵀ, Q' as above. [derived; exact]
    """

    def __init__(self, params, *, eta: torch.Tensor, update="sequential") -> None:
        params = list(params)
        if len(params) != 3:
            raise ValueError(f"GramGD trains (A, P, Q): 3 parameters, got {len(params)}")
        super().__init__(params, {})
        self.eta, self.update = eta, _check_update(update)

    @torch.no_grad()
    def step(self, closure=None) -> None:
        a, p, q = self.param_groups[0]["params"]
        for idx, update in _groups(self.update, a.shape[0]):
            if idx is not None:
                idx = idx.to(a.device)
            new = _gram_step(*(_pick(x, idx) for x in (a, p, q, a.grad, self.eta)), update)
            for x, x1 in zip((a, p, q), new):
                if idx is None:
                    x.copy_(x1)
                else:
                    x.index_copy_(0, idx, x1)


class FactorGD(torch.optim.Optimizer):
    """The same GD on explicit factors (W₁, W₂), with G = W₂W₁ − Y computed once per step from
    ``y`` (the sequential order reuses it for W₂, as the notebook does)."""

    def __init__(self, params, *, y: torch.Tensor, eta: torch.Tensor, update="sequential"):
        params = list(params)
        if len(params) != 2:
            raise ValueError(f"FactorGD trains (W₁, W₂): 2 parameters, got {len(params)}")
        super().__init__(params, {})
        self.y, self.eta, self.update = y, eta, _check_update(update)

    @torch.no_grad()
    def step(self, closure=None) -> None:
        w1, w2 = self.param_groups[0]["params"]
        g = w2 @ w1 - self.y
        w1_new = w1 - self.eta * (w2.mT @ g)
        for idx, update in _groups(self.update, w1.shape[0]):
            if idx is not None:
                idx = idx.to(w1.device)
            w1_used = _pick(w1_new if update == "sequential" else w1, idx)
            w2_new = _pick(w2, idx) - _pick(self.eta, idx) * (_pick(g, idx) @ w1_used.mT)
            if idx is None:
                w2.copy_(w2_new)
            else:
                w2.index_copy_(0, idx, w2_new)
        w1.copy_(w1_new)
