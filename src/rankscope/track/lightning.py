"""PyTorch Lightning callback built on :class:`rankscope.track.RankTracker`.

Needs the extra ``rankscope[lightning]``. The tracker measures the LightningModule's layers
every ``every`` global steps (after the optimizer step); with ``stop_on`` it sets
``trainer.should_stop`` when the ranks plateau; the records are written when training ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rankscope.optional import require
from rankscope.track.tracker import WEIGHT_METRICS, RankPlateau, RankTracker

__all__ = ["RankTrackerCallback"]

pl = require("lightning.pytorch", extra="lightning", needed_for="rankscope.track.lightning")


class RankTrackerCallback(pl.Callback):
    """Lightning callback: ``Trainer(callbacks=[RankTrackerCallback(every=100, csv=...)])``."""

    def __init__(
        self,
        every: int = 100,
        metrics: Sequence[str] = WEIGHT_METRICS,
        *,
        layers: str | Sequence[str] | None = None,
        store: str | Path | None = None,
        csv: str | Path | None = None,
        run_name: str = "lightning",
        stop_on: RankPlateau | None = None,
    ) -> None:
        super().__init__()
        self.options = {
            "every": every,
            "metrics": metrics,
            "layers": layers,
            "store": store,
            "csv": csv,
            "run_name": run_name,
            "stop_on": stop_on,
        }
        self.tracker: RankTracker | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.tracker = RankTracker(pl_module, **self.options)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.tracker.step(trainer.global_step):
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.tracker is not None:
            self.tracker.close()
