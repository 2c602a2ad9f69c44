"""Safe loading of weights and data files: tensors only, never code.

Accepted inputs (DESIGN.md, probe contract):

- an ``nn.Module`` (its ``state_dict()``) or a mapping ``name -> tensor`` (a state_dict);
- a ``.safetensors`` file (read with :mod:`safetensors`, which stores raw tensors only; the
  format keeps no order, so names come in natural order: ``layers.9`` before ``layers.10``);
- a torch checkpoint (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) read with
  ``torch.load(weights_only=True)``, whose unpickler only rebuilds tensors and plain containers;
- for data files also ``.npy``/``.npz``, read with ``numpy.load(allow_pickle=False)``.

A pickle that names a Python global (a whole pickled ``nn.Module``, a custom class, or a
payload such as ``os.system``) is refused with :class:`UnsafeCheckpointError` before anything
from it runs. Missing, truncated or corrupt files, directories and unknown extensions raise
:class:`CheckpointError` naming the path, what was found and what is accepted.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DATA_SUFFIXES",
    "WEIGHT_SUFFIXES",
    "Checkpoint",
    "CheckpointError",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "load_tensor_file",
]

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
WEIGHT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)
DATA_SUFFIXES = (".safetensors", *TORCH_SUFFIXES, ".npy", ".npz")
# keys under which training frameworks nest the model's weights inside a checkpoint dict
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


class CheckpointError(ValueError):
    """A file or object that cannot be read as weights or data (message names it)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that would import or call Python code; refused, nothing from it was run."""


@dataclass(frozen=True)
class Checkpoint:
    """Flat ``name -> tensor`` weights plus where they came from.

    ``format``: 'module' | 'state_dict' | 'safetensors' | 'torch'. ``metadata``: the
    safetensors header metadata (str -> str), empty otherwise. ``ignored``: names of
    non-tensor entries in the file (epochs, configs), reported rather than dropped silently.
    """

    tensors: dict[str, torch.Tensor]
    format: str
    source: str
    metadata: dict[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()


def load_checkpoint(source: Any) -> Checkpoint:
    """Weights from an ``nn.Module``, a state_dict, or a weights file (see module docstring).

    A :class:`Checkpoint` passes through unchanged (so a file is read once).
    """
    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, torch.nn.Module):  # a module may have no weights (nn.Identity)
        state = source.state_dict()
        tensors = {k: v.detach() for k, v in state.items() if isinstance(v, torch.Tensor)}
        ignored = tuple(k for k, v in state.items() if not isinstance(v, torch.Tensor))
        return Checkpoint(tensors, "module", type(source).__name__, ignored=ignored)
    if isinstance(source, Mapping):
        tensors, ignored = _flatten_state(source, where="the state_dict")
        return Checkpoint(tensors, "state_dict", "state_dict", ignored=ignored)
    if isinstance(source, str | Path):
        path = _existing_file(Path(source), WEIGHT_SUFFIXES, what="weights")
        if path.suffix == ".safetensors":
            tensors, meta = _read_safetensors(path)
            return Checkpoint(tensors, "safetensors", str(path), metadata=meta)
        obj = _torch_load(path)
        if isinstance(obj, torch.Tensor):
            raise CheckpointError(
                f"{path} holds a single tensor of shape {tuple(obj.shape)}, not weights; "
                "expected a state_dict (a dict of named tensors)"
            )
        if not isinstance(obj, Mapping):
            raise CheckpointError(
                f"{path} holds a {type(obj).__name__}; expected a state_dict (dict name -> tensor)"
            )
        tensors, ignored = _flatten_state(obj, where=str(path))
        return Checkpoint(tensors, "torch", str(path), ignored=ignored)
    raise TypeError(
        f"model must be an nn.Module, a state_dict (mapping name -> tensor) or a path to a "
        f"{'/'.join(WEIGHT_SUFFIXES)} file; got {type(source).__name__}"
    )


def load_tensor_file(path: str | Path) -> Any:
    """A data file's content: a tensor, or a dict/tuple of tensors. Never runs code.

    ``.npy``/``.npz`` give tensors (a dict for ``.npz``); ``.safetensors`` a dict; torch
    files whatever tensor container they hold (tensor, tuple, list, dict).
    """
    path = _existing_file(Path(path), DATA_SUFFIXES, what="data")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)[0]
    if path.suffix in (".npy", ".npz"):
        return _numpy_load(path)
    return _torch_load(path)


def _existing_file(path: Path, suffixes: tuple[str, ...], *, what: str) -> Path:
    accepted = ", ".join(suffixes)
    if not path.exists():
        raise CheckpointError(
            f"{what} file {str(path)!r} does not exist; expected a {accepted} file"
        )
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in suffixes)
        hint = f"; it contains {', '.join(found[:5])}" if found else ""
        raise CheckpointError(f"{str(path)!r} is a directory, expected a {accepted} file{hint}")
    if path.suffix not in suffixes:
        raise CheckpointError(
            f"unsupported {what} file extension {path.suffix or '(none)'!r} for {str(path)!r}; "
            f"accepted: {accepted}"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} file {str(path)!r} is empty (0 bytes)")
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in sorted(f.keys(), key=_natural_key)}
    except SafetensorError as exc:
        raise CheckpointError(
            f"{str(path)!r} ({path.stat().st_size} bytes) is not a readable .safetensors file, "
            f"probably truncated or corrupt: {exc}"
        ) from None
    return tensors, meta


def _natural_key(name: str) -> list[Any]:
    """'layers.10.w' after 'layers.9.w': safetensors keeps no order, so use numeric order."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]


def _torch_load(path: Path) -> Any:
    try:
        with warnings.catch_warnings():  # a raw pickle warns about its protocol; we refuse below
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if re.search(r"Unsupported operand|invalid load key", str(exc)) and not _is_pickle(path):
            raise CheckpointError(
                f"cannot read {str(path)!r} ({path.stat().st_size} bytes) as a torch checkpoint, "
                f"probably truncated or corrupt: {_weights_only_reason(exc)}"
            ) from None
        found = re.search(r"(?:Unsupported|unsupported) (?:GLOBAL|global) ([^\s]+)", str(exc))
        what = f" (it asks for the Python global {found.group(1)})" if found else ""
        raise UnsafeCheckpointError(
            f"refusing to load {str(path)!r}: the pickle would import or run Python code{what}. "
            "rankscope loads only tensors (torch.load(weights_only=True)) and never runs code "
            "from a file. Save the weights with torch.save(model.state_dict(), path) or "
            "safetensors.torch.save_file(model.state_dict(), path)."
        ) from None
    except Exception as exc:  # arbitrary bytes fail anywhere in the unpickler (KeyError, ...)
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"cannot read {str(path)!r} ({path.stat().st_size} bytes) as a torch checkpoint, "
            f"probably truncated or corrupt: {type(exc).__name__}: {first}"
        ) from None


def _is_pickle(path: Path) -> bool:
    """Starts with a pickle PROTO header (0x80, protocol 2..5): a pickle, not stray bytes."""
    with path.open("rb") as fh:
        head = fh.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _weights_only_reason(exc: Exception) -> str:
    """The unpickler's own complaint inside torch's long weights_only message."""
    found = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
    return found.group(1).strip() if found else str(exc).splitlines()[0]


def _numpy_load(path: Path) -> torch.Tensor | dict[str, torch.Tensor]:
    import zipfile

    import numpy as np

    try:
        with path.open("rb") as fh:  # our handle, closed even when numpy fails half-way
            obj = np.load(fh, allow_pickle=False)
            if isinstance(obj, np.ndarray):
                return torch.from_numpy(np.ascontiguousarray(obj))
            with obj:
                return {k: torch.from_numpy(np.ascontiguousarray(obj[k])) for k in obj.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeCheckpointError(
                f"refusing to load {str(path)!r}: it holds pickled Python objects; "
                "rankscope reads numeric arrays only (numpy.load(allow_pickle=False))"
            ) from None
        raise CheckpointError(f"cannot read {str(path)!r} as a numpy array file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"cannot read {str(path)!r} ({path.stat().st_size} bytes) as a numpy file, "
            f"probably truncated or corrupt: {exc}"
        ) from None


def _flatten_state(obj: Mapping, *, where: str) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Dotted ``name -> tensor``; unwraps ``{'state_dict': {...}, 'epoch': 3}`` style files."""
    for key in _NESTED_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            tensors, ignored = _flatten_state(inner, where=where)
            others = tuple(str(k) for k in obj if k != key)
            return tensors, ignored + others
    tensors: dict[str, torch.Tensor] = {}
    ignored: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, torch.Tensor):
            tensors[prefix] = node.detach()
        elif isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif (
            isinstance(node, list | tuple)
            and node
            and all(isinstance(v, torch.Tensor | Mapping) for v in node)
        ):
            for i, v in enumerate(node):
                walk(v, f"{prefix}.{i}" if prefix else str(i))
        else:
            ignored.append(prefix)

    walk(obj, "")
    if not tensors:
        raise CheckpointError(
            f"{where} contains no tensors (keys: {list(obj)[:8]}); expected a state_dict, "
            "i.e. a mapping from parameter names to tensors"
        )
    return tensors, tuple(ignored)
