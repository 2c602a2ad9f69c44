"""Offline text for text models: shipped sentences and tokenised calibration batches.

``data/stdlib_sentences.txt`` holds 1024 English sentences taken once from the docstrings of
Python standard-library modules (8–32 words, mostly letters, deduplicated, ordered by the
SHA-256 of the sentence so no module dominates a range). The splits are disjoint:
``calib`` = lines 0–255, ``eval`` = lines 512–1023.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from rankscope.compress.calibrate import Batch

__all__ = ["SPLITS", "read_lines", "sentences", "text_batches"]

SPLITS = {"calib": (0, 256), "eval": (512, 1024)}


def sentences(split: str = "calib") -> list[str]:
    """The shipped sentences of ``split`` ('calib': 256, 'eval': 512; disjoint)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(SPLITS)}")
    text = resources.files("rankscope.compress").joinpath("data/stdlib_sentences.txt")
    lines = text.read_text(encoding="utf-8").splitlines()
    lo, hi = SPLITS[split]
    return lines[lo:hi]


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file (one sentence per line); clear error if none."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not UTF-8 text ({exc.reason})") from None
    lines = [s.strip() for s in raw.splitlines() if s.strip()]
    if not lines:
        raise ValueError(f"{str(path)!r} has no sentences: expected one sentence per line")
    return lines


def text_batches(
    tokenizer, texts: Sequence[str], *, batch_size: int = 32, max_length: int = 128
) -> list[Batch]:
    """Tokenised batches of ``texts`` in their given order, with the attention mask as mask.

    Sentences are grouped by length (a stable sort by token count) so batches carry little
    padding; the grouping is deterministic and identical for every model it is fed to.
    """
    if not texts:
        raise ValueError("no sentences to tokenise: got an empty list")
    lengths = [
        len(tokenizer(t, truncation=True, max_length=max_length)["input_ids"]) for t in texts
    ]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = []
    for lo in range(0, len(order), batch_size):
        chunk = [texts[i] for i in order[lo : lo + batch_size]]
        enc = tokenizer(
            chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        kwargs = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        out.append(Batch((), kwargs, kwargs["attention_mask"].to(torch.bool)))
    return out
