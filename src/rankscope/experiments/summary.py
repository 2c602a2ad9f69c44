"""Typed run summaries: a dataclass per experiment, stored as JSON, rebuilt strictly on load.

An experiment's ``run`` returns ``Result(summary=Summary(...))`` where ``Summary`` is the
dataclass it declares as ``Experiment.summary_cls``. The store keeps the summary as JSON
(:func:`summary_to_dict`); the runner and the report rebuild it with
:func:`summary_from_dict`, which raises :class:`SummaryError` on a missing, unknown or
mistyped field. A renamed field is therefore a test failure, never a silent "inconclusive".

Field types: ``int``, ``float`` (NaN and ±Inf allowed), ``str``, ``bool``, ``None``,
``X | None``, ``tuple[X, ...]``, ``tuple[X, Y]``, ``list[X]``, ``dict[str, X]``, nested
dataclasses, and ``Any`` (kept as stored).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any

from rankscope.results import summary_to_dict

__all__ = ["SummaryError", "summary_from_dict", "summary_to_dict"]


class SummaryError(TypeError):
    """A stored summary does not match the experiment's summary dataclass."""


@cache
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def summary_from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Rebuild a ``cls`` instance from its stored JSON form; strict about fields and types."""
    where = path or cls.__name__
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise SummaryError(
            f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}"
        )
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    missing = sorted(
        name
        for name, f in ((f.name, f) for f in dataclasses.fields(cls))
        if name not in data
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if unknown or missing:
        raise SummaryError(
            f"{where}: stored summary does not match {cls.__name__}: "
            f"unknown fields {unknown}, missing fields {missing}; fields: {sorted(hints)}"
        )
    values = {k: _value(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def _value(raw: Any, tp: Any, path: str) -> Any:
    if tp is Any or tp is object:
        return raw
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _value(raw, a, path)
            except SummaryError as exc:
                errors.append(str(exc))
        raise SummaryError(f"{path}: {raw!r} matches none of {tp}: {'; '.join(errors)}")
    if dataclasses.is_dataclass(tp):
        return summary_from_dict(tp, raw, path)
    if origin in (list, tuple):
        if not isinstance(raw, list | tuple):
            raise SummaryError(f"{path}: expected a list for {tp}, got {type(raw).__name__}")
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(raw):
                raise SummaryError(f"{path}: expected {len(args)} items, got {len(raw)}")
            return tuple(_value(x, a, f"{path}[{i}]") for i, (x, a) in enumerate(zip(raw, args)))
        item = args[0] if args else Any
        out = [_value(x, item, f"{path}[{i}]") for i, x in enumerate(raw)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(raw, dict):
            raise SummaryError(f"{path}: expected a mapping for {tp}, got {type(raw).__name__}")
        val_tp = args[1] if len(args) == 2 else Any
        return {k: _value(v, val_tp, f"{path}[{k!r}]") for k, v in raw.items()}
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise SummaryError(f"{path}: expected a float, got {raw!r}")
        return float(raw)
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            if isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
                return int(raw)
            raise SummaryError(f"{path}: expected an int, got {raw!r}")
        return raw
    if tp is bool:
        if not isinstance(raw, bool):
            raise SummaryError(f"{path}: expected a bool, got {raw!r}")
        return raw
    if tp is str:
        if not isinstance(raw, str):
            raise SummaryError(f"{path}: expected a str, got {raw!r}")
        return raw
    if tp is type(None):
        if raw is not None:
            raise SummaryError(f"{path}: expected None, got {raw!r}")
        return None
    raise SummaryError(f"{path}: unsupported summary field type {tp}")
