"""A JSON description of plain ``nn.Sequential`` models, so they rebuild without pickle.

Supported modules: Sequential (nested), Linear, Conv1d, Conv2d, the factorised
:class:`LowRankLinear`/:class:`LowRankConv`, the usual activations, Flatten, Unflatten,
Dropout, AvgPool/MaxPool/AdaptiveAvgPool (1d, 2d) and Identity. Anything else raises
:class:`UnsupportedModule`; such models are rebuilt with a ``factory`` instead.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rankscope.compress.layers import LowRankConv, LowRankLinear

__all__ = ["UnsupportedModule", "build", "describe"]

_PARAMLESS = {
    "ReLU": nn.ReLU,
    "Tanh": nn.Tanh,
    "GELU": nn.GELU,
    "Sigmoid": nn.Sigmoid,
    "SiLU": nn.SiLU,
    "LeakyReLU": nn.LeakyReLU,
    "Identity": nn.Identity,
}
_POOLS = {
    "AvgPool1d": nn.AvgPool1d,
    "AvgPool2d": nn.AvgPool2d,
    "MaxPool1d": nn.MaxPool1d,
    "MaxPool2d": nn.MaxPool2d,
}


class UnsupportedModule(ValueError):
    """A module this JSON description cannot hold."""


def _conv_args(c: nn.Module) -> dict[str, Any]:
    return {
        "in": c.in_channels,
        "out": c.out_channels,
        "kernel": list(c.kernel_size),
        "stride": list(c.stride),
        "padding": c.padding if isinstance(c.padding, str) else list(c.padding),
        "dilation": list(c.dilation),
        "bias": c.bias is not None,
    }


def describe(module: nn.Module) -> dict[str, Any]:
    """JSON-able description of ``module`` (raises :class:`UnsupportedModule`)."""
    t = type(module)
    if t is nn.Sequential:
        return {
            "type": "Sequential",
            "children": [[name, describe(child)] for name, child in module.named_children()],
        }
    if t is nn.Linear:
        return {
            "type": "Linear",
            "in": module.in_features,
            "out": module.out_features,
            "bias": module.bias is not None,
        }
    if t in (nn.Conv1d, nn.Conv2d):
        if module.groups != 1 or module.padding_mode != "zeros":
            raise UnsupportedModule(f"{t.__name__} with groups/padding_mode is not described")
        return {"type": t.__name__, **_conv_args(module)}
    if t is LowRankLinear:
        return {
            "type": "LowRankLinear",
            "in": module.in_features,
            "out": module.out_features,
            "rank": module.rank,
            "bias": module.second.bias is not None,
        }
    if t is LowRankConv:
        d = _conv_args(module.first)
        d.update(out=module.second.out_channels, bias=module.second.bias is not None)
        return {"type": "LowRankConv", "dims": module.dims, "rank": module.rank, **d}
    if t.__name__ in _PARAMLESS and t is _PARAMLESS[t.__name__]:
        return {"type": t.__name__}
    if t is nn.Flatten:
        return {"type": "Flatten", "start": module.start_dim, "end": module.end_dim}
    if t is nn.Unflatten:
        return {"type": "Unflatten", "dim": module.dim, "size": list(module.unflattened_size)}
    if t is nn.Dropout:
        return {"type": "Dropout", "p": module.p}
    if t in (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d):
        size = module.output_size
        return {"type": t.__name__, "size": list(size) if isinstance(size, tuple) else size}
    if t.__name__ in _POOLS and t is _POOLS[t.__name__]:
        return {"type": t.__name__, "kernel": module.kernel_size, "stride": module.stride}
    raise UnsupportedModule(
        f"cannot describe {t.__name__} as JSON; supported: Sequential, Linear, Conv1d, Conv2d, "
        f"{', '.join(sorted(_PARAMLESS))}, Flatten, Unflatten, Dropout, pools"
    )


def build(desc: dict[str, Any]) -> nn.Module:
    """The module described by ``desc`` (fresh parameters; load a state_dict after)."""
    t = desc.get("type")
    if t == "Sequential":
        seq = nn.Sequential()
        for name, child in desc["children"]:
            seq.add_module(name, build(child))
        return seq
    if t == "Linear":
        return nn.Linear(desc["in"], desc["out"], bias=desc["bias"])
    if t in ("Conv1d", "Conv2d"):
        conv = nn.Conv1d if t == "Conv1d" else nn.Conv2d
        return conv(desc["in"], desc["out"], **_conv_kw(desc), bias=desc["bias"])
    if t == "LowRankLinear":
        return LowRankLinear(desc["in"], desc["out"], desc["rank"], bias=desc["bias"])
    if t == "LowRankConv":
        kw = _conv_kw(desc)
        return LowRankConv(
            desc["dims"], desc["in"], desc["out"], desc["rank"], kw.pop("kernel_size"), **kw,
            bias=desc["bias"],
        )  # fmt: skip
    if t in _PARAMLESS:
        return _PARAMLESS[t]()
    if t == "Flatten":
        return nn.Flatten(desc["start"], desc["end"])
    if t == "Unflatten":
        return nn.Unflatten(desc["dim"], tuple(desc["size"]))
    if t == "Dropout":
        return nn.Dropout(desc["p"])
    if t in ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d"):
        size = desc["size"]
        return getattr(nn, t)(tuple(size) if isinstance(size, list) else size)
    if t in _POOLS:
        return _POOLS[t](desc["kernel"], desc["stride"])
    raise UnsupportedModule(f"unknown module type {t!r} in the architecture description")


def _conv_kw(desc: dict[str, Any]) -> dict[str, Any]:
    pad = desc["padding"]
    return {
        "kernel_size": tuple(desc["kernel"]),
        "stride": tuple(desc["stride"]),
        "padding": pad if isinstance(pad, str) else tuple(pad),
        "dilation": tuple(desc["dilation"]),
    }
