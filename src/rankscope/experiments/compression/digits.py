"""Digits classifiers for the compression experiment: an MLP and a small CNN as nn.Sequential.

Both are plain ``nn.Sequential`` models (so :func:`rankscope.compress.save_sequential` and
:func:`rankscope.compress.load` rebuild them from JSON) trained by :func:`rankscope.train.train`
with Adam on the full batch of mean cross-entropy + l2·Σ‖W‖_F² (explicit penalty on the
weight matrices and conv kernels, not on biases; definitions §0).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rankscope.experiments.collapse.data import digits_split
from rankscope.train import cross_entropy, train

__all__ = ["DigitsData", "DigitsNet", "digits_data", "fit"]


@dataclass(frozen=True)
class DigitsData:
    x_train: torch.Tensor  # (N, 64) float32, /16 and train-mean-centred
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_data(*, seed: int = 0, rng: np.random.Generator | None = None) -> DigitsData:
    """scikit-learn digits split 80/20 by ``rng`` (or a generator seeded with ``seed``)."""
    split = digits_split(rng if rng is not None else np.random.default_rng(seed))
    return DigitsData(split.x_train.float(), split.y_train, split.x_test.float(), split.y_test)


@dataclass(frozen=True)
class DigitsNet:
    """``mlp``: 64 → widths (ReLU) → 10. ``cnn``: 1×8×8 → 3×3 convs (padding 1, ReLU; the
    last one with stride 2) with ``widths[:-1]`` channels → flatten → Linear to ``widths[-1]``
    (ReLU) → Linear to 10."""

    kind: str = "mlp"
    widths: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if self.kind not in ("mlp", "cnn"):
            raise ValueError(f"kind must be 'mlp' or 'cnn', got {self.kind!r}")
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths must be positive ints, got {self.widths!r}")

    def build(self, generator: torch.Generator | None = None) -> nn.Sequential:
        layers: list[nn.Module] = []
        if self.kind == "mlp":
            dims = [64, *self.widths, 10]
            for i, (a, b) in enumerate(itertools.pairwise(dims)):
                layers.append(nn.Linear(a, b))
                if i < len(dims) - 2:
                    layers.append(nn.ReLU())
        else:
            if len(self.widths) < 2:
                raise ValueError(f"cnn needs conv channels and a hidden width, got {self.widths}")
            layers.append(nn.Unflatten(1, (1, 8, 8)))
            chans = [1, *self.widths[:-1]]
            for i, (a, b) in enumerate(itertools.pairwise(chans)):
                stride = 2 if i == len(chans) - 2 else 1
                layers += [nn.Conv2d(a, b, 3, stride=stride, padding=1), nn.ReLU()]
            layers += [nn.Flatten(), nn.Linear(chans[-1] * 16, self.widths[-1]), nn.ReLU()]
            layers.append(nn.Linear(self.widths[-1], 10))
        model = nn.Sequential(*layers)
        if generator is not None:  # He-normal weights, zero biases, drawn from the generator
            with torch.no_grad():
                for mod in model.modules():
                    if isinstance(mod, nn.Linear | nn.Conv2d):
                        fan_in = mod.weight[0].numel()
                        mod.weight.copy_(torch.randn(mod.weight.shape, generator=generator))
                        mod.weight.mul_((2.0 / fan_in) ** 0.5)
                        mod.bias.zero_()
        return model


def fit(
    net: DigitsNet,
    data: DigitsData,
    *,
    l2: float,
    steps: int,
    lr: float,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> nn.Sequential:
    """Build ``net`` and train it (full-batch Adam, loss + l2·Σ‖W‖²); returns it in eval mode."""
    gen = generator if generator is not None else torch.Generator().manual_seed(seed)
    model = net.build(gen)

    def loss(m, batch):
        x, y = batch
        return cross_entropy(m(x), y)

    train(
        model,
        loss,
        optimizer="adam",
        lr=lr,
        steps=steps,
        data=(data.x_train, data.y_train),
        l2=l2,
    )
    return model.eval()
