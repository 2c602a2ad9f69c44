"""Named numerical-rank presets of papers, as data (definitions §1).

A preset is one row: the generic policy of :mod:`rankscope.metrics.ranks` it uses, the
tolerances it fixes, the paper it comes from and where in that paper's code or text the rule
is. ``numerical_rank(s, "galanti")`` resolves the name here and then runs exactly
``numerical_rank(s, "frobenius", atol=1e-3)``; a tolerance the caller passes replaces the
preset's one of the same name (``numerical_rank(s, "galanti", atol=1e-2)``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RANK_PRESETS", "RankPreset"]


@dataclass(frozen=True)
class RankPreset:
    """One paper's rank rule as a generic policy with fixed tolerances.

    ``policy`` is a generic policy name (``torch``, ``relative``, ``frobenius``, ...);
    ``rtol``/``atol``/``min_rank`` are the values passed to it (``None``: the policy's own
    default); ``paper`` is the arXiv id; ``source`` names the code or text the rule is from.
    """

    name: str
    policy: str
    paper: str
    source: str
    rtol: float | None = None
    atol: float | None = None
    min_rank: int = 0

    def tolerances(self) -> dict[str, float | int | None]:
        """The keyword arguments the preset passes to its generic policy."""
        return {"rtol": self.rtol, "atol": self.atol, "min_rank": self.min_rank}


_ROWS = (
    RankPreset(
        "galanti",
        "frobenius",
        "arXiv:2206.05794",
        "Galanti et al., SGD and weight decay secretly minimize the rank: official code "
        "TomerGalanti/LowRankBias eval_ranks(normalize=True, tol=1e-3), rank of W/‖W‖_F",
        atol=1e-3,
    ),
    RankPreset(
        "mixed_dynamics",
        "relative",
        "arXiv:2405.17580",
        "Tu, Aranguri, Jacot, Mixed dynamics in linear networks: official code "
        "aranguri/phase-diagram counts s_i > s_1/5",
        rtol=0.2,
    ),
    RankPreset(
        "accnet",
        "torch",
        "arXiv:2407.05664",
        "Jacot, Choi, Wen, How DNNs break the curse of dimensionality: official code "
        "shc443/CoveringNumber_GB, matrix_rank(atol=0.1, rtol=0.1)",
        rtol=0.1,
        atol=0.1,
    ),
    RankPreset(
        "feng",
        "gram",
        "arXiv:2206.06072",
        "Feng et al., Rank diminishing in deep neural networks: official code takes "
        "matrix_rank(JᵀJ) at torch's default tolerance (rtol scales it: their soft rank)",
    ),
    RankPreset(
        "weightwatcher",
        "torch",
        "arXiv:1810.01075",
        "Martin, Mahoney, Implicit self-regularization in deep neural networks: the "
        "WeightWatcher library counts s_i > s_1·max(m, n)·eps, torch's default",
    ),
    RankPreset(
        "dlrt",
        "tail_energy",
        "arXiv:2205.13571",
        "Schotthöfer et al., Low-rank lottery tickets (DLRT): the DLRT-Net library truncates "
        "while the dropped tail is < θ·‖s‖ with θ = 0.1, keeping at least rank 2",
        rtol=0.1,
        min_rank=2,
    ),
)

#: name -> preset; the paper presets accepted by :func:`rankscope.metrics.numerical_rank`.
RANK_PRESETS: dict[str, RankPreset] = {p.name: p for p in _ROWS}
