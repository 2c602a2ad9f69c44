"""rankscope.track: rank tracking inside anyone's training loop.

:class:`RankTracker` logs per-layer stable, effective and numerical rank of the weights (and,
given a batch, the representation rank of the layers' outputs) every N steps, to the embedded
SQLite store or a CSV file; :class:`RankPlateau` stops training when the ranks stop moving.
``rankscope.track.lightning.RankTrackerCallback`` (extra ``rankscope[lightning]``) wraps the
same tracker for a PyTorch Lightning ``Trainer``.
"""

from rankscope.track.tracker import METRICS, RankPlateau, RankTracker

__all__ = ["METRICS", "RankPlateau", "RankTracker"]
