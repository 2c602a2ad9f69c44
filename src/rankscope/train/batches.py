"""Minibatch index streams drawn only from a ``generator``.

:func:`rankscope.train.train` uses one :class:`BatchSampler` for a single model and one per
member of an ensemble, so ensemble member e sees exactly the batches an independent run with
the same batch generator sees.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["SAMPLINGS", "BatchSampler", "as_data", "take"]

SAMPLINGS = ("shuffle", "replace")


class BatchSampler:
    """Index batches of size ``batch_size`` from ``range(n)``.

    ``sampling="shuffle"``: a fresh ``randperm(n)`` per epoch cut into consecutive chunks
    (the last chunk of an epoch may be shorter, as torch's DataLoader with drop_last=False);
    ``"replace"``: i.i.d. uniform indices with replacement each step.
    """

    def __init__(
        self, n: int, batch_size: int, *, generator: torch.Generator, sampling: str = "shuffle"
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= n:
            raise ValueError(
                f"batch_size must be an int in [1, {n}] (the data size), got {batch_size!r}"
            )
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"minibatch sampling needs a torch.Generator, got {type(generator).__name__}"
            )
        self.n, self.batch_size, self.sampling, self.generator = n, batch_size, sampling, generator
        self._perm: torch.Tensor | None = None
        self._pos = 0

    def next(self) -> torch.Tensor:
        """The next index batch, int64 of shape (B,) (shorter at an epoch's end)."""
        if self.sampling == "replace":
            return torch.randint(self.n, (self.batch_size,), generator=self.generator)
        if self._perm is None or self._pos >= self.n:
            self._perm = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx


def as_data(data, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...] | None:
    """``data`` as a tuple of tensors sharing their first (sample) dimension N.

    Floating tensors are cast to ``dtype`` when given; integer tensors (labels) are kept.
    """
    if data is None:
        return None
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in tensors):
        kinds = [type(t).__name__ for t in tensors]
        raise TypeError(f"data must be a tensor or a tuple of tensors (N, ...), got {kinds}")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(
            f"data tensors must share the first dimension, got {[tuple(t.shape) for t in tensors]}"
        )
    if dtype is not None:
        tensors = tuple(t.to(dtype) if t.is_floating_point() else t for t in tensors)
    return tensors


def take(data: Sequence[torch.Tensor], idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Rows ``idx`` of every tensor: idx (B,) -> (B, ...), or (E, B) -> (E, B, ...)."""
    return tuple(t[idx] for t in data)
