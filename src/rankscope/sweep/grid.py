"""Grids over config keys: ``key=v1,v2`` strings expanded to a list of configs."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from rankscope.experiments.config import apply_overrides

__all__ = ["expand_grid", "parse_grid"]


def parse_grid(items: Sequence[str]) -> dict[str, list[str]]:
    """``["depth=2,3", "lr=0.1,0.01"]`` -> ``{"depth": ["2", "3"], "lr": ["0.1", "0.01"]}``.

    A value that is itself a list uses ``;`` between grid points: ``sigma2=1e-2;1e-3``
    when the field is a tuple (``sigma2=(1e-2,1e-3);(1e-4,)``).
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"grid item {item!r} must look like key=v1,v2")
        key, raw = item.split("=", 1)
        key = key.strip()
        sep = ";" if ";" in raw else ","
        values = [v.strip() for v in raw.split(sep) if v.strip()]
        if not values:
            raise ValueError(f"grid item {item!r} has no values")
        if key in grid:
            raise ValueError(f"grid key {key!r} is given twice; list its values once: {key}=v1,v2")
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"grid item {item!r} repeats the value(s) {repeated}")
        grid[key] = values
    return grid


def expand_grid(base: Any, grid: dict[str, Sequence[Any]]) -> list[Any]:
    """Every combination of the grid's values applied to ``base`` (type-checked)."""
    keys = list(grid)
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        out.append(apply_overrides(base, dict(zip(keys, combo))))
    return out
