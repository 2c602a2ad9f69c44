"""Hugging Face model directories (optional extra ``rankscope[hf]``: ``transformers``).

Models and tokenizers are loaded with ``local_files_only=True``: nothing is downloaded.
A directory counts as a Hugging Face model when it holds a ``config.json``. Sentence-
transformers directories (``modules.json`` + a transformer at the root) load the same way;
their pooling is mean pooling, which :mod:`rankscope.compress.evaluate` applies.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from rankscope.optional import require

__all__ = ["build_from_config", "copy_side_files", "is_hf_dir", "load_hf"]

# weight files are not copied into a compressed directory: its model.safetensors replaces them
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ckpt", ".pt", ".onnx", ".ot")
_SKIP_DIRS = {"onnx", "openvino", ".git"}


def _transformers():
    transformers = require(
        "transformers", extra="hf", needed_for="compressing a Hugging Face model directory"
    )
    transformers.logging.set_verbosity_error()
    return transformers


def is_hf_dir(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file()


def load_hf(path: str | Path) -> tuple[nn.Module, Any]:
    """(model in eval mode, tokenizer or None) from a local directory, without downloads."""
    tf = _transformers()
    path = Path(path)
    if not is_hf_dir(path):
        raise ValueError(f"{str(path)!r} is not a Hugging Face model directory (no config.json)")
    model = tf.AutoModel.from_pretrained(str(path), local_files_only=True)
    try:
        tok = tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        tok = None
    return model.eval(), tok


def build_from_config(path: str | Path) -> nn.Module:
    """The architecture of ``path/config.json`` with fresh weights (to load a state_dict into)."""
    tf = _transformers()
    config = tf.AutoConfig.from_pretrained(str(path), local_files_only=True)
    return tf.AutoModel.from_config(config).eval()


def load_tokenizer(path: str | Path):
    tf = _transformers()
    try:
        return tf.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        return None


def copy_side_files(src: str | Path, dst: str | Path) -> list[str]:
    """Copy config, tokenizer and other non-weight files from ``src`` to ``dst``."""
    src, dst = Path(src), Path(dst)
    copied = []
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if not f.is_file() or f.suffix in _WEIGHT_SUFFIXES or _SKIP_DIRS & set(rel.parts):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dst / rel)
        copied.append(str(rel))
    return copied
