"""Tidy metric records ``(step, name, layer, index, value)``: the one format every layer shares.

``layer`` is a free tag: a layer name, or a sub-run label such as ``"L=3,sigma2=1e-4"``;
``""`` when there is none. ``index`` is a position in a vector (the i-th singular value) or -1.
A :class:`RecordLog` is the append-only builder used while training; :class:`Records` is the
immutable columnar view that the store saves and claims and figures read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from rankscope.optional import require

__all__ = ["RecordLog", "Records"]


def _scalar(value) -> float:
    if hasattr(value, "item"):
        value = value.item()
    return float(value)


class RecordLog:
    """Append-only builder of tidy records. Cheap to append; call :meth:`freeze` once."""

    def __init__(self) -> None:
        self._step: list[int] = []
        self._name: list[str] = []
        self._layer: list[str] = []
        self._index: list[int] = []
        self._value: list[float] = []

    def __len__(self) -> int:
        return len(self._value)

    def log(self, name: str, value, *, step: int = 0, layer: str = "", index: int = -1) -> None:
        """One scalar (a float, a 0-d tensor or array)."""
        self._step.append(int(step))
        self._name.append(name)
        self._layer.append(layer)
        self._index.append(int(index))
        self._value.append(_scalar(value))

    def log_vector(self, name: str, values, *, step: int = 0, layer: str = "") -> None:
        """A 1-D vector (e.g. a spectrum), one record per entry with ``index`` = position."""
        arr = np.asarray(
            values.detach().cpu() if hasattr(values, "detach") else values, dtype=float
        )
        arr = arr.reshape(-1)
        n = arr.size
        self._step.extend([int(step)] * n)
        self._name.extend([name] * n)
        self._layer.extend([layer] * n)
        self._index.extend(range(n))
        self._value.extend(arr.tolist())

    def extend(self, other: Records | RecordLog) -> None:
        recs = other.freeze() if isinstance(other, RecordLog) else other
        self._step.extend(recs.step.tolist())
        self._name.extend(recs.name.tolist())
        self._layer.extend(recs.layer.tolist())
        self._index.extend(recs.index.tolist())
        self._value.extend(recs.value.tolist())

    def freeze(self) -> Records:
        return Records(
            step=np.asarray(self._step, dtype=np.int64),
            name=np.asarray(self._name, dtype=object),
            layer=np.asarray(self._layer, dtype=object),
            index=np.asarray(self._index, dtype=np.int64),
            value=np.asarray(self._value, dtype=np.float64),
        )


@dataclass(frozen=True)
class Records:
    """Columnar tidy records. Query with :meth:`series`, :meth:`vector`, :meth:`select`."""

    step: np.ndarray
    name: np.ndarray
    layer: np.ndarray
    index: np.ndarray
    value: np.ndarray

    @classmethod
    def empty(cls) -> Records:
        return RecordLog().freeze()

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, str, str, int, float]]) -> Records:
        log = RecordLog()
        for step, name, layer, index, value in rows:
            log.log(name, value, step=step, layer=layer, index=index)
        return log.freeze()

    def __len__(self) -> int:
        return int(self.value.size)

    def rows(self) -> Iterable[tuple[int, str, str, int, float]]:
        return zip(
            self.step.tolist(),
            self.name.tolist(),
            self.layer.tolist(),
            self.index.tolist(),
            self.value.tolist(),
        )

    def names(self) -> list[str]:
        return sorted(set(self.name.tolist()))

    def layers(self, name: str | None = None) -> list[str]:
        mask = self.name == name if name is not None else slice(None)
        return sorted(set(self.layer[mask].tolist()))

    def select(
        self,
        name: str | None = None,
        layer: str | None = None,
        index: int | None = None,
        step: int | None = None,
    ) -> Records:
        mask = np.ones(len(self), dtype=bool)
        if name is not None:
            mask &= self.name == name
        if layer is not None:
            mask &= self.layer == layer
        if index is not None:
            mask &= self.index == index
        if step is not None:
            mask &= self.step == step
        return Records(
            self.step[mask], self.name[mask], self.layer[mask], self.index[mask], self.value[mask]
        )

    def series(self, name: str, layer: str = "", index: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one scalar quantity, sorted by step."""
        sel = self.select(name=name, layer=layer, index=index)
        order = np.argsort(sel.step, kind="stable")
        return sel.step[order], sel.value[order]

    def vector(self, name: str, step: int | None = None, layer: str = "") -> np.ndarray:
        """The vector logged under ``name`` at ``step`` (the last step when None), by index."""
        sel = self.select(name=name, layer=layer)
        if len(sel) == 0:
            return np.zeros(0)
        if step is None:
            step = int(sel.step.max())
        sel = sel.select(step=step)
        order = np.argsort(sel.index, kind="stable")
        return sel.value[order]

    def matrix(self, name: str, layer: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values[n_steps, n_index]) of a vector logged at several steps (NaN-padded)."""
        sel = self.select(name=name, layer=layer)
        if len(sel) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0))
        steps = np.unique(sel.step)
        width = int(sel.index.max()) + 1
        out = np.full((steps.size, max(width, 1)), np.nan)
        row = np.searchsorted(steps, sel.step)
        col = np.maximum(sel.index, 0)
        out[row, col] = sel.value
        return steps, out

    def frame(self):
        """A pandas DataFrame (pandas is optional)."""
        pd = require("pandas", extra="pandas", needed_for="Records.frame()")
        return pd.DataFrame(
            {
                "step": self.step,
                "name": self.name,
                "layer": self.layer,
                "index": self.index,
                "value": self.value,
            }
        )
