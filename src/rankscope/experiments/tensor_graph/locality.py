"""Pieces of the locality experiments: IGC-0 test functions and IsSameClass CNN training."""

from __future__ import annotations

from collections.abc import Callable

import torch

from rankscope.experiments.base import Diverged
from rankscope.experiments.tensor_graph.data import same_class_canvas
from rankscope.metrics.tensor import igc_penalty
from rankscope.models.cnn import SmallCNN
from rankscope.records import RecordLog

__all__ = ["igc0_functions", "train_same_class"]


def igc0_functions(gen: torch.Generator) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """IGC-0 functions of x ∈ R^6 with I = {0, 1, 2}, J = {3, 4, 5} (tensor_graph.md).

    additive g(x_I) + h(x_J), multiplicative g(x_I)·h(x_J), and the interacting
    Σ_{k=1}^3 tanh(x_I a)_k·tanh(x_J b)_k, with g, h one-unit tanh features.
    """
    a, b = (torch.randn(3, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    u, v = (torch.randn(3, generator=gen, dtype=torch.float64) for _ in range(2))

    def g(x):
        return torch.tanh(x[:, :3] @ u) + 0.5 * (x[:, :3] ** 2).sum(1)

    def h(x):
        return torch.tanh(x[:, 3:] @ v) + 1.5

    return {
        "additive": lambda x: g(x) + h(x),
        "multiplicative": lambda x: g(x) * h(x),
        "interacting": lambda x: (torch.tanh(x[:, :3] @ a) * torch.tanh(x[:, 3:] @ b)).sum(1),
    }


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * float(((model(x)[:, 0] > 0).float() == y).double().mean())


def train_same_class(
    images,
    labels,
    train_pairs,
    test_pairs,
    gap: int,
    lam: float,
    cfg,
    gen: torch.Generator,
    log: RecordLog,
    label: str,
) -> dict:
    """Train the small CNN on IsSameClass at one gap with IGC weight ``lam``; returns accuracies.

    Patches I and J are the two 8×8 digit locations; per batch one is drawn as I (generator).
    """
    x_tr = torch.from_numpy(same_class_canvas(images, train_pairs, gap))
    x_te = torch.from_numpy(same_class_canvas(images, test_pairs, gap))
    y_tr = torch.from_numpy(labels[train_pairs[:, 0]] == labels[train_pairs[:, 1]]).float()
    y_te = torch.from_numpy(labels[test_pairs[:, 0]] == labels[test_pairs[:, 1]]).float()
    width = 16 + gap
    left = torch.zeros(8, width, dtype=torch.bool)
    left[:, :8] = True
    right = torch.zeros(8, width, dtype=torch.bool)
    right[:, 8 + gap :] = True
    model = SmallCNN(1, cfg.channels, 1, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.cnn_lr)
    bce = torch.nn.BCEWithLogitsLoss()
    n = len(x_tr)
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        total, reg_total = 0.0, 0.0
        for start in range(0, n - 1, cfg.batch_size):  # batches of >= 2 (roll-by-one pairing)
            idx = perm[start : start + cfg.batch_size]
            if idx.numel() < 2:
                continue
            xb, yb = x_tr[idx], y_tr[idx]
            opt.zero_grad()
            loss = bce(model(xb)[:, 0], yb)
            if lam > 0:
                i_left = bool(torch.rand((), generator=gen) < 0.5)
                p_i, p_j = (left, right) if i_left else (right, left)
                reg = igc_penalty(lambda z: model(z)[:, 0], xb, p_i, p_j)
                loss = loss + lam * reg
                reg_total += reg.item() * idx.numel()
            if not torch.isfinite(loss):
                raise Diverged(epoch, f"IsSameClass loss ({label})", loss.item())
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        log.log("train_loss", total / n, step=epoch + 1, layer=label)
        if lam > 0:
            log.log("igc", reg_total / n, step=epoch + 1, layer=label)
    test_acc = _accuracy(model, x_te, y_te)
    log.log("test_accuracy", test_acc, step=cfg.epochs, layer=label)
    return {
        "test_accuracy": test_acc,
        "train_accuracy": _accuracy(model, x_tr, y_tr),
        "receptive_field": model.receptive_field,
    }
