"""Every weight tensor of a model as a named matrix, with its kind.

Each tensor of the state_dict with ≥ 2 dimensions becomes a :class:`WeightMatrix`; every
other tensor (biases, norm scales, counters: 0-D and 1-D) becomes a :class:`SkippedTensor`
with its reason, so nothing disappears silently.

Matrix view (definitions §0, ``conv_mode='flatten'``): a weight of shape (d0, d1, ..., dk) is
read as the (d0, d1·...·dk) matrix. For a convolution (C_out, C_in/groups, k...) that is
C_out × (C_in/groups · Πk); for a transposed convolution, whose weight is (C_in, C_out/groups,
k...), the rows are input channels; an Embedding is (num_embeddings, dim); an
``nn.MultiheadAttention`` packed ``in_proj_weight`` is the (3E, E) stack of W_q, W_k, W_v.

Kinds: ``linear``, ``conv1d``, ``conv2d``, ``conv3d``, ``embedding``, ``attention_in_proj``,
``attention_out_proj``, ``other``. With a module they come from the owning module's type
(``kind_source='module'``); from a bare state_dict they are inferred from the parameter name
(``'name'``: ``*in_proj_weight``, ``*q_proj.weight``, ``*out_proj.weight``, ``*emb*``) or
else the shape (``'shape'``: a 2-D ``*.weight`` is linear, 3-D/4-D/5-D ``*.weight`` a
conv1d/2d/3d kernel). Metrics never depend on the kind; only the label does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rankscope.probe.checkpoint import load_checkpoint

__all__ = ["KINDS", "SkippedTensor", "WeightMatrix", "infer_kind", "weight_matrices"]

KINDS = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "embedding",
    "attention_in_proj",
    "attention_out_proj",
    "other",
)
CONV_MODE = "flatten"

_IN_PROJ = re.compile(r"(^|\.)(in_proj_weight|[qkv]_proj_weight)$")
_IN_PROJ_LINEAR = re.compile(
    r"(^|\.)(q_proj|k_proj|v_proj|qkv|qkv_proj|query|key|value|c_attn|wq|wk|wv)\.weight$"
)
_OUT_PROJ_LINEAR = re.compile(
    r"(^|\.)(out_proj|o_proj|wo|attn\.c_proj|attention\.output\.dense)\.weight$"
)
_EMBEDDING = re.compile(r"(emb|(^|\.)(wte|wpe)(\.|$))")
_CONV_KINDS = {
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Conv3d: "conv3d",
    nn.ConvTranspose1d: "conv1d",
    nn.ConvTranspose2d: "conv2d",
    nn.ConvTranspose3d: "conv3d",
}


@dataclass(frozen=True)
class WeightMatrix:
    """One ≥2-D weight: ``matrix`` is its (m, n) view (module docstring), same storage."""

    name: str
    kind: str
    shape: tuple[int, ...]
    matrix: torch.Tensor  # (m, n)
    module: str  # owning module's class name; '' when read from a bare state_dict
    kind_source: str  # 'module' | 'name' | 'shape'
    conv_mode: str | None  # 'flatten' for convolution kernels, else None
    note: str = ""
    same_as: str | None = None  # name of an earlier entry sharing this tensor (tied weights)


@dataclass(frozen=True)
class SkippedTensor:
    """A state_dict entry that has no matrix: 0-D or 1-D (biases, norm scales, counters)."""

    name: str
    shape: tuple[int, ...]
    reason: str


def weight_matrices(source: Any) -> tuple[list[WeightMatrix], list[SkippedTensor]]:
    """All ≥2-D floating-point weights of ``source`` (module, state_dict or weights file).

    In state_dict order. Integer and boolean tensors (index buffers such as a BERT's
    ``embeddings.position_ids``) are skipped with the reason, as are 0-D and 1-D ones.

    Returns (matrices, skipped); together they hold every entry of the state_dict.
    """
    module = source if isinstance(source, nn.Module) else None
    ckpt = load_checkpoint(source)
    owners = dict(module.named_modules()) if module is not None else {}
    buffers = {n for n, _ in module.named_buffers()} if module is not None else set()
    seen: dict[tuple, str] = {}
    mats: list[WeightMatrix] = []
    skipped = [SkippedTensor(n, (), "not a tensor") for n in ckpt.ignored]
    for name, t in ckpt.tensors.items():
        if t.ndim < 2 or not t.is_floating_point():
            skipped.append(SkippedTensor(name, tuple(t.shape), _skip_reason(name, t)))
            continue
        if module is not None:
            kind, owner_type, note = _kind_from_module(name, t, owners)
            source_tag = "module"
        else:
            kind, source_tag = infer_kind(name, tuple(t.shape))
            owner_type, note = "", ""
        if name in buffers:
            note = "; ".join(x for x in (note, "buffer, not a parameter") if x)
        key = _storage_key(t)
        mats.append(
            WeightMatrix(
                name=name,
                kind=kind,
                shape=tuple(t.shape),
                matrix=t.reshape(t.shape[0], math.prod(t.shape[1:])),  # -1 fails on 0-size
                module=owner_type,
                kind_source=source_tag,
                conv_mode=CONV_MODE if kind.startswith("conv") else None,
                note=note,
                same_as=seen.get(key),
            )
        )
        seen.setdefault(key, name)
    return mats, skipped


def infer_kind(name: str, shape: tuple[int, ...]) -> tuple[str, str]:
    """(kind, kind_source) of a state_dict entry from its name, else its shape."""
    if _IN_PROJ.search(name):
        return "attention_in_proj", "name"
    if len(shape) == 2:
        if _OUT_PROJ_LINEAR.search(name):
            return "attention_out_proj", "name"
        if _IN_PROJ_LINEAR.search(name):
            return "attention_in_proj", "name"
        if _EMBEDDING.search(name.lower()):
            return "embedding", "name"
    is_weight = name.rsplit(".", 1)[-1] == "weight"
    by_ndim = {2: "linear", 3: "conv1d", 4: "conv2d", 5: "conv3d"}
    if is_weight and len(shape) in by_ndim:
        return by_ndim[len(shape)], "shape"
    return "other", "shape"


def _kind_from_module(
    name: str, t: torch.Tensor, owners: dict[str, nn.Module]
) -> tuple[str, str, str]:
    owner_name, _, leaf = name.rpartition(".")
    owner = owners.get(owner_name)
    if owner is None:
        return "other", "", ""
    parent = owners.get(owner_name.rpartition(".")[0]) if owner_name else None
    kind, note = "other", ""
    if isinstance(owner, nn.MultiheadAttention) and leaf.endswith("proj_weight"):
        kind = "attention_in_proj"
        if leaf == "in_proj_weight":
            note = "packed W_q, W_k, W_v stacked on rows"
    elif isinstance(owner, nn.Linear) and leaf == "weight":
        kind = "linear"
        if isinstance(parent, nn.MultiheadAttention) or _OUT_PROJ_LINEAR.search(name):
            kind = "attention_out_proj"
        elif _IN_PROJ_LINEAR.search(name):
            kind = "attention_in_proj"
    elif isinstance(owner, nn.Embedding | nn.EmbeddingBag) and leaf == "weight":
        kind = "embedding"
    elif type(owner) in _CONV_KINDS and leaf == "weight":
        kind = _CONV_KINDS[type(owner)]
        if isinstance(owner, nn.modules.conv._ConvTransposeNd):
            note = "transposed conv: rows are input channels"
    elif t.ndim > 2:
        note = f"{t.ndim}-D tensor read as ({t.shape[0]}, {t[0].numel()})"
    return kind, type(owner).__name__, note


def _skip_reason(name: str, t: torch.Tensor) -> str:
    if not t.is_floating_point():
        dtype = str(t.dtype).removeprefix("torch.")
        return (
            f"{dtype} tensor (an index or counter buffer such as position_ids), not a weight: "
            "only floating-point tensors have a spectrum"
        )
    if t.ndim == 0:
        return "0-D scalar (counter or constant): no matrix"
    leaf = name.rsplit(".", 1)[-1]
    role = "bias" if "bias" in leaf else "scale/vector"
    return f"1-D {role} of length {t.shape[0]}: no matrix rank"


def _storage_key(t: torch.Tensor) -> tuple:
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # meta or sparse tensors
        return (id(t),)
    return (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
