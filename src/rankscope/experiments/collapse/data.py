"""Classification data for the collapse family: scikit-learn digits and Gaussian mixtures.

Everything is returned as float64 torch tensors in the (N, d) layout PyTorch uses (the
formulas in definitions §14 use one column per sample; transpose before applying them).
Randomness comes only from the ``rng``/``generator`` argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rankscope.optional import require

__all__ = ["Split", "check_labels", "digits_split", "gaussian_mixture", "load_digits_arrays"]


@dataclass(frozen=True)
class Split:
    """A train/test split. ``x_*``: (N, d) float64; ``y_*``: (N,) int64 in [0, num_classes)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    description: str = ""

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device: torch.device | str) -> Split:
        """The same split with every tensor on ``device`` (itself when already there)."""
        moved = [t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)]
        return Split(*moved, self.num_classes, self.description)

    def with_dtype(self, dtype: torch.dtype, note: str = "") -> Split:
        """The same split with the inputs cast to ``dtype`` (labels unchanged)."""
        return Split(
            self.x_train.to(dtype),
            self.y_train,
            self.x_test.to(dtype),
            self.y_test,
            self.num_classes,
            self.description + note,
        )


def check_labels(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    """Raise a clear ``ValueError`` for data a classifier cannot be trained or measured on.

    Checks: ``x`` is (N, d) and finite, ``y`` is (N,) integer with the same N, labels lie in
    [0, num_classes), and at least two classes are present.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if x.ndim != 2:
        raise ValueError(f"inputs must have shape (N, d), got {tuple(x.shape)}")
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"inputs and labels have mismatched lengths: {x.shape[0]} inputs, {y.shape[0]} labels"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {y.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"inputs of shape {tuple(x.shape)} contain NaN/Inf")
    if y.numel() == 0:
        raise ValueError("no samples: labels are empty")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for num_classes={num_classes}; "
            f"got values in [{lo}, {hi}]"
        )
    present = int(torch.unique(y).numel())
    if present < 2:
        raise ValueError(
            f"need at least 2 classes present to measure collapse, got only class {lo} "
            f"({y.numel()} samples)"
        )


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (1797×64 in [0, 16], labels 0..9); no download."""
    datasets = require("sklearn.datasets", extra="digits", needed_for="the digits experiments")
    bunch = datasets.load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target, dtype=np.int64)


def digits_split(
    rng: np.random.Generator, *, n_train: int | None = None, test_fraction: float = 0.2
) -> Split:
    """Digits divided by 16 and centred by the training mean; split drawn from ``rng``.

    ``n_train`` (optional) keeps only the first ``n_train`` shuffled training samples.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    x, y = load_digits_arrays()
    x = x / 16.0
    perm = rng.permutation(x.shape[0])
    n_test = round(test_fraction * x.shape[0])
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    if n_train is not None:
        if not 10 <= n_train <= train_idx.size:
            raise ValueError(f"n_train must be in [10, {train_idx.size}], got {n_train}")
        train_idx = train_idx[:n_train]
    mean = x[train_idx].mean(axis=0, keepdims=True)
    xt = torch.from_numpy((x - mean).copy())
    yt = torch.from_numpy(y.copy())
    split = Split(
        xt[train_idx],
        yt[train_idx],
        xt[test_idx],
        yt[test_idx],
        10,
        f"digits/16, train-mean-centred, N_train={train_idx.size}, N_test={n_test}",
    )
    check_labels(split.x_train, split.y_train, 10)
    return split


def gaussian_mixture(
    generator: torch.Generator,
    *,
    num_classes: int,
    dim: int,
    per_class: int,
    spread: float,
    n_test_per_class: int = 0,
) -> Split:
    """K centres ~ N(0, I_d); x = centre + s·ε with ε ~ N(0, I_d) (docs/results.md NRC-2).

    The same centres serve train and test; labels are balanced and ordered by class.
    """
    if spread < 0:
        raise ValueError(f"spread s must be >= 0, got {spread}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    centres = torch.randn(num_classes, dim, generator=generator, dtype=torch.float64)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(num_classes).repeat_interleave(n)  # (K·n,)
        noise = torch.randn(y.numel(), dim, generator=generator, dtype=torch.float64)
        return centres[y] + spread * noise, y

    x_tr, y_tr = draw(per_class)
    x_te, y_te = draw(n_test_per_class) if n_test_per_class else (x_tr[:0], y_tr[:0])
    check_labels(x_tr, y_tr, num_classes)
    return Split(
        x_tr,
        y_tr,
        x_te,
        y_te,
        num_classes,
        f"gaussian mixture K={num_classes}, d={dim}, {per_class}/class, s={spread}",
    )
