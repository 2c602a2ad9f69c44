"""The rank tracker: one ``tracker.step()`` per training step, a measurement every N steps.

Per measurement, the weights of the tracked layers (Linear/Conv, conv kernels as (out, in·k))
are grouped by shape and each group's spectra come from one batched computation on the
model's device: s_i = sqrt(λ_i(G)) with G = WᵀW (or WWᵀ, the smaller side) formed and
diagonalised in float64 (``torch.linalg.eigvalsh``; eigenvalues at or below k·eps64·λ_1 set
to 0), as ``rankscope.analyze`` does for float32 weights: its rounding error, about
sqrt(k·eps64)·s_1, is below the float32 rounding of the weights and below the numerical-rank
threshold. Measured here (1 thread) on a 512×512 matrix: float64 ``eigvalsh`` of the Gram
41 ms against 62 ms for float32 ``svdvals`` and 80 ms for float64 ``svdvals``.
``spectrum="svd"`` uses
``torch.linalg.svdvals`` in the weights' dtype (or ``dtype``) instead. Every metric is then a
function of those spectra (:mod:`rankscope.metrics`):

- ``stable_rank`` ‖W‖_F²/‖W‖_2², ``effective_rank`` (Roy–Vetterli), ``numerical_rank``
  (s_i > max(m, n)·eps(dtype)·s_1, the ``torch`` preset);
- ``rep_rank`` / ``rep_stable_rank`` / ``rep_effective_rank``: of the centred outputs (N, d)
  of each tracked layer on a batch passed as ``step(batch=x)`` (conv outputs channelwise).

Records are tidy ``(step, name, layer, index, value)`` rows: appended to a CSV file as they
are measured (``csv=PATH``), or written to the run store (``store=PATH``) as one run of
experiment ``track`` when the tracker is closed (the store keeps finished runs only).
"""

from __future__ import annotations

import csv as _csv
import fnmatch
import hashlib
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankscope.metrics import conv_samples, effective_rank, numerical_rank, stable_rank
from rankscope.records import RecordLog

__all__ = ["METRICS", "RankPlateau", "RankTracker"]

WEIGHT_METRICS = ("stable_rank", "effective_rank", "numerical_rank")
REP_METRICS = ("rep_rank", "rep_stable_rank", "rep_effective_rank")
METRICS = WEIGHT_METRICS + REP_METRICS
_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _spectrum_metrics(s: torch.Tensor, shape: tuple[int, int], dtype: torch.dtype, names):
    """{metric: (G,) tensor} for a (G, k) batch of spectra of (m, n) matrices."""
    out = {}
    if "stable_rank" in names:
        out["stable_rank"] = stable_rank(s)
    if "effective_rank" in names:
        out["effective_rank"] = effective_rank(s)
    if "numerical_rank" in names:
        out["numerical_rank"] = numerical_rank(s, "torch", shape=shape, eps_dtype=dtype)
    return out


def _gram_spectra(w: torch.Tensor) -> torch.Tensor:
    """(G, k) singular values of a (G, m, n) stack from float64 Gram eigenvalues, descending."""
    x = w.to(torch.float64)
    g = x.mT @ x if x.shape[-2] >= x.shape[-1] else x @ x.mT  # (G, k, k)
    lam = torch.linalg.eigvalsh(g).flip(-1)
    floor = g.shape[-1] * torch.finfo(torch.float64).eps * lam[..., :1].clamp_min(0.0)
    return torch.where(lam > floor, lam, 0.0).sqrt()


class RankPlateau:
    """Stop when ``metric`` of the chosen layers stops moving.

    After each measurement the relative change |r_t − r_{t−1}| / max(|r_{t−1}|, 1e-12) of
    every chosen layer is computed; when the largest stays below ``rtol`` for ``patience``
    consecutive measurements, :meth:`update` returns True. ``layers``: glob patterns on the
    tracker's layer names (None: all).
    """

    def __init__(
        self,
        metric: str = "stable_rank",
        *,
        rtol: float = 0.01,
        patience: int = 3,
        layers: str | Sequence[str] | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
        if not rtol > 0 or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"need rtol > 0 and an int patience >= 1, got {rtol!r}, {patience!r}")
        self.metric, self.rtol, self.patience = metric, float(rtol), patience
        self.layers = [layers] if isinstance(layers, str) else layers
        self._last: dict[str, float] | None = None
        self.calm = 0
        self.history: list[float] = []

    def update(self, values: dict[str, float]) -> bool:
        """Feed one measurement {layer: value}; True when the plateau criterion is met."""
        if self.layers:
            values = {
                k: v
                for k, v in values.items()
                if any(fnmatch.fnmatchcase(k, p) for p in self.layers)
            }
        if not values:
            raise ValueError(f"RankPlateau: no tracked layer matches {self.layers}")
        if self._last is not None:
            change = max(
                abs(v - self._last[k]) / max(abs(self._last[k]), 1e-12)
                for k, v in values.items()
                if k in self._last
            )
            self.history.append(change)
            self.calm = self.calm + 1 if change < self.rtol else 0
        self._last = dict(values)
        return self.calm >= self.patience


class RankTracker:
    """Per-layer rank metrics every ``every`` steps, for a plain PyTorch loop.

    >>> model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> tracker = RankTracker(model, every=10, metrics=["numerical_rank"])
    >>> for step in range(20):
    ...     stop = tracker.step()   # after optimizer.step() in a real loop
    >>> sorted(set(tracker.records().step.tolist()))
    [0, 10]
    """

    def __init__(
        self,
        model: nn.Module,
        every: int = 100,
        metrics: Sequence[str] = WEIGHT_METRICS,
        *,
        layers: str | Sequence[str] | None = None,
        store: str | Path | None = None,
        csv: str | Path | None = None,
        run_name: str = "run",
        stop_on: RankPlateau | None = None,
        dtype: torch.dtype | None = None,
        spectrum: str = "gram",
    ) -> None:
        if spectrum not in ("gram", "svd"):
            raise ValueError(f"spectrum must be 'gram' or 'svd', got {spectrum!r}")
        self.spectrum = spectrum
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metrics {unknown or metrics}; expected some of {METRICS}")
        if store is not None and csv is not None:
            raise ValueError("give store= or csv=, not both")
        if stop_on is not None and stop_on.metric not in metrics:
            raise ValueError(f"stop_on tracks {stop_on.metric!r}, which is not in metrics")
        self.model, self.every, self.metrics = model, every, tuple(metrics)
        pats = [layers] if isinstance(layers, str) else list(layers or [])
        found = [(n, m) for n, m in model.named_modules() if isinstance(m, _TYPES)]
        for pat in pats:
            if not any(fnmatch.fnmatchcase(n, pat) for n, _ in found):
                raise ValueError(
                    f"layer pattern {pat!r} matches no layer; layers: {[n for n, _ in found]}"
                )
        self.layers = {
            n: m for n, m in found if not pats or any(fnmatch.fnmatchcase(n, p) for p in pats)
        }
        if not self.layers:
            raise ValueError(f"no Linear/Conv layers to track in {type(model).__name__}")
        self.dtype, self.stop_on, self.run_name = dtype, stop_on, run_name
        self.store_path = None if store is None else Path(store)
        self.csv_path = None if csv is None else Path(csv)
        self._log = RecordLog()
        self._count = 0
        self.should_stop = False
        self.seconds = 0.0  # time spent measuring
        self._started = time.time()
        if self.csv_path is not None:
            with self.csv_path.open("w", newline="") as f:
                _csv.writer(f).writerow(["step", "name", "layer", "value"])

    # -- the loop API -------------------------------------------------------------------
    def step(
        self,
        step: int | None = None,
        *,
        batch: Any = None,
        activations: dict[str, torch.Tensor] | None = None,
    ) -> bool:
        """Count one training step; measure when it is a multiple of ``every``.

        ``step`` (optional) is the step number to log (default: the number of calls so far).
        ``batch``: inputs for the representation metrics (run through the model, no grad);
        ``activations``: {layer: (N, d) outputs} measured directly. Returns True when
        ``stop_on`` says to stop (also kept in :attr:`should_stop`).
        """
        s = self._count if step is None else int(step)
        self._count += 1
        if s % self.every == 0:
            self.measure(s, batch=batch, activations=activations)
        return self.should_stop

    def measure(
        self, step: int, *, batch: Any = None, activations: dict[str, torch.Tensor] | None = None
    ) -> dict[str, dict[str, float]]:
        """Measure now; {metric: {layer: value}} (also logged)."""
        t0 = time.perf_counter()
        values = self._weight_metrics()
        want_rep = any(m in REP_METRICS for m in self.metrics)
        if want_rep and batch is not None:
            activations = {**(activations or {}), **self._capture(batch)}
        if want_rep and activations:
            values.update(self._rep_metrics(activations))
        rows = []
        for name, per_layer in values.items():
            for layer, v in per_layer.items():
                self._log.log(name, v, step=step, layer=layer)
                rows.append((step, name, layer, v))
        if self.csv_path is not None:
            with self.csv_path.open("a", newline="") as f:
                _csv.writer(f).writerows(rows)
        if self.stop_on is not None and self.stop_on.metric in values:
            self.should_stop = self.stop_on.update(values[self.stop_on.metric]) or self.should_stop
        self.seconds += time.perf_counter() - t0
        return values

    def _weight_metrics(self) -> dict[str, dict[str, float]]:
        names = [m for m in self.metrics if m in WEIGHT_METRICS]
        if not names:
            return {}
        groups: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
        with torch.no_grad():
            for layer, mod in self.layers.items():
                w = mod.weight.detach()
                w = w.reshape(w.shape[0], -1)
                if self.dtype is not None:
                    w = w.to(self.dtype)
                groups.setdefault((tuple(w.shape), w.dtype, w.device), []).append((layer, w))
            out: dict[str, dict[str, float]] = {n: {} for n in names}
            for (shape, dtype, _), items in groups.items():
                stack = torch.stack([w for _, w in items])  # (G, m, n)
                s = _gram_spectra(stack) if self.spectrum == "gram" else torch.linalg.svdvals(stack)
                vals = _spectrum_metrics(s, shape, dtype, names)
                host = {k: v.detach().cpu().tolist() for k, v in vals.items()}
                for i, (layer, _) in enumerate(items):
                    for k in names:
                        out[k][layer] = float(host[k][i])
        return out

    def _capture(self, batch: Any) -> dict[str, torch.Tensor]:
        acts: dict[str, torch.Tensor] = {}
        hooks = [
            mod.register_forward_hook(lambda m, i, o, _n=n: acts.__setitem__(_n, o.detach()))
            for n, mod in self.layers.items()
        ]
        was_training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                if isinstance(batch, tuple | list):
                    self.model(*batch)
                elif isinstance(batch, dict):
                    self.model(**batch)
                else:
                    self.model(batch)
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was_training)
        return acts

    def _rep_metrics(self, activations: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {m: {} for m in REP_METRICS if m in self.metrics}
        for layer, z in activations.items():
            h = conv_samples(z) if z.ndim >= 3 else z.reshape(z.shape[0], -1)
            h = h - h.mean(0, keepdim=True)
            s = torch.linalg.svdvals(h if self.dtype is None else h.to(self.dtype))
            if "rep_rank" in out:
                out["rep_rank"][layer] = float(
                    numerical_rank(s, "torch", shape=tuple(h.shape), eps_dtype=s.dtype)
                )
            if "rep_stable_rank" in out:
                out["rep_stable_rank"][layer] = float(stable_rank(s))
            if "rep_effective_rank" in out:
                out["rep_effective_rank"][layer] = float(effective_rank(s))
        return out

    # -- results ------------------------------------------------------------------------
    def records(self):
        """The tidy records measured so far (:class:`rankscope.records.Records`)."""
        return self._log.freeze()

    def overhead(self, train_seconds: float) -> float:
        """Seconds spent measuring over ``train_seconds`` of training (a ratio)."""
        return self.seconds / train_seconds if train_seconds > 0 else math.nan

    def close(self) -> str | None:
        """Write the records to the store (if ``store=``); returns the stored run id."""
        if self.store_path is None or self._closed:
            return None
        self._closed = True
        from rankscope.results import Result
        from rankscope.store import Store

        recs = self.records()
        digest = hashlib.sha256(
            f"{self.run_name}|{self._started}|{len(recs)}|{id(self)}".encode()
        ).hexdigest()[:16]
        run_id = f"track-{digest}"
        summary = {
            "layers": list(self.layers),
            "metrics": list(self.metrics),
            "every": self.every,
            "steps": self._count,
            "measure_seconds": self.seconds,
            "stopped_early": bool(self.should_stop),
        }
        res = Result(summary=summary, records=recs, run_id=run_id, seed=0)
        Store(self.store_path).save_run(
            res,
            experiment="track",
            preset=self.run_name,
            provenance={
                "source": "rankscope.track.RankTracker",
                "model": type(self.model).__name__,
            },
            wall_time=time.time() - self._started,
        )
        self.run_id = run_id
        return run_id

    _closed = False
    run_id: str | None = None

    def __enter__(self) -> RankTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
