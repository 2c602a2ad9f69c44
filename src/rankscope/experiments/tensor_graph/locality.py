"""Pieces of the locality experiments: IGC-0 test functions and IsSameClass CNN training."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rankscope.experiments.tensor_graph.data import same_class_canvas
from rankscope.metrics.tensor import igc_penalty
from rankscope.models.cnn import SmallCNN
from rankscope.records import RecordLog
from rankscope.train import train

__all__ = ["INITS", "he_init_", "igc0_functions", "train_same_class"]

INITS = ("torch", "he")


def he_init_(model: SmallCNN, generator: torch.Generator) -> SmallCNN:
    """Re-draw ``model``'s parameters in place (from ``generator``): conv weights
    N(0, 2/fan_in) (He et al. 2015), head weights N(0, 1/fan_in), zero biases.

    SmallCNN's own init (torch's U(±1/√fan_in)) keeps 1/3 of the second moment per conv and
    the ReLU halves it, so five stride-2 layers give logits of ~1e-4 at init and training
    starts on a plateau (docs/decisions.md, 9.tensor-2). Under He init, conditional on the
    layer below, a pre-activation is a zero-mean Gaussian, so E[relu(z)²] = E[z²]/2 and the
    factor 2 restores it: the second moment is kept through every layer, exactly in
    expectation over the init and at any width (up to the zero padding at the borders).
    Kept here, not in ``models/cnn.py``, so other experiments' code identity is unchanged.
    """
    with torch.no_grad():
        for layer in [*model.convs, model.head]:
            w = layer.weight
            fan_in = w[0].numel()
            gain = 2.0 if isinstance(layer, torch.nn.Conv2d) else 1.0
            w.copy_(
                torch.randn(w.shape, generator=generator, dtype=w.dtype) * (gain / fan_in) ** 0.5
            )
            layer.bias.zero_()
    return model


def igc0_functions(gen: torch.Generator) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """IGC-0 functions of x ∈ R^6 with I = {0, 1, 2}, J = {3, 4, 5} (docs/results.md).

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


class _SameClassLoss:
    """BCE on a batch plus ``lam``·R_IGC with patch I drawn per batch (from ``gen``).

    ``last_reg`` keeps the latest R_IGC value for the per-epoch log.
    """

    def __init__(self, lam: float, left, right, gen: torch.Generator) -> None:
        self.lam, self.left, self.right, self.gen = lam, left, right, gen
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.last_reg = 0.0

    def __call__(self, model, batch) -> torch.Tensor:
        xb, yb = batch
        loss = self.bce(model(xb)[:, 0], yb)
        if self.lam > 0:
            i_left = bool(torch.rand((), generator=self.gen) < 0.5)
            p_i, p_j = (self.left, self.right) if i_left else (self.right, self.left)
            reg = igc_penalty(lambda z: model(z)[:, 0], xb, p_i, p_j)
            loss = loss + self.lam * reg
            self.last_reg = reg.item()
        return loss


class _EpochLog:
    """Sample-weighted epoch means of the loss (and R_IGC), logged at each epoch's end as
    ``train_loss`` (and ``igc``) at step = epoch number. Called with every training step's
    loss as the engine's ``stop`` hook (it never stops the run): unlike a callback at every
    step, that keeps no per-step state in the engine."""

    def __init__(
        self, objective: _SameClassLoss, n: int, batch_size: int, label: str, log: RecordLog
    ) -> None:
        self.objective, self.n, self.batch_size, self.label = objective, n, batch_size, label
        self.log = log
        self.per_epoch = math.ceil(n / batch_size)
        self.total = self.reg_total = 0.0

    def steps(self, epochs: int) -> int:
        return epochs * self.per_epoch

    def __call__(self, step: int, loss: float) -> bool:
        epoch, pos = divmod(step, self.per_epoch)
        if pos == 0:
            self.total = self.reg_total = 0.0
        size = min(self.batch_size, self.n - pos * self.batch_size)
        self.total += loss * size
        if self.objective.lam > 0:
            self.reg_total += self.objective.last_reg * size
        if pos == self.per_epoch - 1:
            self.log.log("train_loss", self.total / self.n, step=epoch + 1, layer=self.label)
            if self.objective.lam > 0:
                self.log.log("igc", self.reg_total / self.n, step=epoch + 1, layer=self.label)
        return False


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
    device: torch.device | None = None,
    val_pairs=None,
) -> dict:
    """Train the small CNN on IsSameClass at one gap with IGC weight ``lam``; returns accuracies.

    ``cfg``: channels, init (SmallCNN's), optimizer ("sgd" with ``momentum``, or "adam"), lr,
    epochs, batch_size. Minibatches through :func:`train`: a fresh permutation per epoch from
    ``gen``, the last batch of an epoch shorter. Patches I and J are the two 8×8 digit
    locations; per batch one is drawn as I (``gen``). With ``val_pairs`` the validation
    accuracy is returned too (``val_accuracy``, NaN without), for choosing λ.
    """
    device = torch.device("cpu") if device is None else device
    n = len(train_pairs)
    if n % cfg.batch_size == 1:
        raise ValueError(
            f"IGC pairs each example with the next in its batch: n_train {n} with batch_size "
            f"{cfg.batch_size} leaves a batch of 1; choose sizes with n % batch_size != 1"
        )
    x_tr = torch.from_numpy(same_class_canvas(images, train_pairs, gap)).to(device)
    x_te = torch.from_numpy(same_class_canvas(images, test_pairs, gap)).to(device)
    y_tr = torch.from_numpy(labels[train_pairs[:, 0]] == labels[train_pairs[:, 1]]).float()
    y_te = torch.from_numpy(labels[test_pairs[:, 0]] == labels[test_pairs[:, 1]]).float()
    y_tr, y_te = y_tr.to(device), y_te.to(device)
    if cfg.optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {cfg.optimizer!r}")
    width = 16 + gap
    left = torch.zeros(8, width, dtype=torch.bool, device=device)
    left[:, :8] = True
    right = torch.zeros(8, width, dtype=torch.bool, device=device)
    right[:, 8 + gap :] = True
    if cfg.init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {cfg.init!r}")
    model = SmallCNN(1, cfg.channels, 1, generator=gen)
    if cfg.init == "he":
        he_init_(model, gen)
    model = model.to(device)
    objective = _SameClassLoss(lam, left, right, gen)
    epoch_log = _EpochLog(objective, n, cfg.batch_size, label, log)
    steps = epoch_log.steps(cfg.epochs)
    train(
        model,
        objective,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        optimizer_options={"momentum": cfg.momentum} if cfg.optimizer == "sgd" else None,
        steps=steps,
        data=(x_tr, y_tr),
        batch_size=cfg.batch_size,
        generator=gen,
        stop=epoch_log,  # sees every step's loss; never stops
        log=log,
    )
    test_acc = _accuracy(model, x_te, y_te)
    log.log("test_accuracy", test_acc, step=cfg.epochs, layer=label)
    val_acc = math.nan
    if val_pairs is not None:
        x_va = torch.from_numpy(same_class_canvas(images, val_pairs, gap)).to(device)
        y_va = torch.from_numpy(labels[val_pairs[:, 0]] == labels[val_pairs[:, 1]]).float()
        val_acc = _accuracy(model, x_va, y_va.to(device))
        log.log("val_accuracy", val_acc, step=cfg.epochs, layer=label)
    return {
        "test_accuracy": test_acc,
        "val_accuracy": val_acc,
        "train_accuracy": _accuracy(model, x_tr, y_tr),
        "receptive_field": model.receptive_field,
    }
