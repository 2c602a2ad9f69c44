"""Frozen-dataclass configs: type-checked ``key=value`` overrides, JSON round trips, hashing.

A sub-study is a nested frozen dataclass field; its fields are addressed with dotted keys
(``--set gamma.widths=50,200``). :func:`config_keys` lists every settable dotted key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from typing import Any

__all__ = [
    "apply_overrides",
    "config_from_dict",
    "config_hash",
    "config_keys",
    "config_to_dict",
    "parse_value",
]


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass (tuples become lists)."""
    out = {}
    for f in dataclasses.fields(config):
        out[f.name] = _jsonable(getattr(config, f.name))
    return out


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return config_to_dict(v)
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def parse_value(raw: Any, tp: Any, key: str) -> Any:
    """Convert ``raw`` (a string from the CLI, or a JSON value) to type ``tp``; clear errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return raw
    if dataclasses.is_dataclass(tp):
        if isinstance(raw, tp):
            return raw
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"{key}: expected a JSON object for {tp.__name__}") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{key}: expected a mapping for {tp.__name__}, got {raw!r}")
        return config_from_dict(tp, raw, prefix=f"{key}.")
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(raw, a, key)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(f"{key}: cannot read {raw!r} as {tp}")
    if origin is typing.Literal:
        for a in args:
            if str(a) == str(raw):
                return a
        raise ValueError(f"{key}: {raw!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if isinstance(raw, str):
            text = raw.strip()
            if text.startswith("["):
                items = json.loads(text)
            else:
                items = [x for x in text.strip("()").split(",") if x.strip() != ""]
        elif isinstance(raw, list | tuple):
            items = list(raw)
        else:
            raise ValueError(f"{key}: expected a list like a,b,c, got {raw!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item_tp = args[0]
            return tuple(parse_value(x, item_tp, key) for x in items)
        if origin is tuple and args:
            if len(items) != len(args):
                raise ValueError(f"{key}: expected {len(args)} values, got {len(items)}")
            return tuple(parse_value(x, a, key) for x, a in zip(items, args))
        item_tp = args[0] if args else Any
        return tuple(parse_value(x, item_tp, key) for x in items)
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key}: expected a bool (true/false), got {raw!r}")
    if tp is int:
        if isinstance(raw, bool):
            raise ValueError(f"{key}: expected an int, got bool {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ValueError(f"{key}: expected an int, got {raw!r}") from None
    if tp is float:
        if isinstance(raw, bool):
            raise ValueError(f"{key}: expected a float, got bool {raw!r}")
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected a float, got {raw!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"{key}: expected a finite float, got {raw!r}")
        return value
    if tp is str:
        return str(raw)
    raise TypeError(f"{key}: unsupported config field type {tp}")


def config_from_dict(cls: type, data: dict[str, Any], *, prefix: str = "") -> Any:
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {[prefix + k for k in unknown]} for {cls.__name__}; "
            f"valid: {sorted(prefix + k for k in types_)}"
        )
    return cls(**{k: parse_value(v, types_[k], prefix + k) for k, v in data.items()})


def config_keys(config_or_cls: Any, prefix: str = "") -> dict[str, Any]:
    """Every settable key (dotted into nested configs) -> its type."""
    cls = config_or_cls if isinstance(config_or_cls, type) else type(config_or_cls)
    out: dict[str, Any] = {}
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            out.update(config_keys(tp, f"{prefix}{name}."))
        else:
            out[prefix + name] = tp
    return out


def apply_overrides(config: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Return ``config`` with ``key=value`` overrides applied, each parsed to the field's type.

    An unknown key or a value of the wrong type raises ``ValueError`` listing the valid keys.
    """
    types_ = config_keys(config)
    if isinstance(overrides, dict):
        pairs = list(overrides.items())
    else:
        pairs = []
        for item in overrides:
            if "=" not in item:
                raise ValueError(
                    f"override {item!r} must look like key=value; valid keys: {sorted(types_)}"
                )
            k, v = item.split("=", 1)
            pairs.append((k.strip(), v.strip()))
    changes = {}
    for k, v in pairs:
        if k not in types_:
            close = difflib.get_close_matches(k, list(types_), n=1)
            hint = f" did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {k!r};{hint} valid keys: {sorted(types_)}")
        changes[k] = parse_value(v, types_[k], k)
    return _replace_nested(config, changes)


def _replace_nested(config: Any, changes: dict[str, Any]) -> Any:
    """``dataclasses.replace`` with dotted keys reaching into nested configs."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in changes.items():
        head, _, rest = k.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = v
        else:
            top[head] = v
    for head, sub in nested.items():
        top[head] = _replace_nested(getattr(config, head), sub)
    return dataclasses.replace(config, **top)


def config_hash(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
