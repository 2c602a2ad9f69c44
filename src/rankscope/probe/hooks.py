"""Forward hooks that stream every layer's output into running float64 statistics.

Which modules: every leaf module (no children), plus each ``nn.MultiheadAttention``, whose
``out_proj`` child never runs its own forward. Memory per module is O(d² + K·d)
(:class:`LayerStats`), independent of the number of samples.

How an output of shape (B, ...) becomes a (rows, d) data matrix (definitions §5):

- (B, d): one row per example; a 1-D output (B,) is (B, 1).
- ≥3-D outputs of convolution-family modules (conv, batch/instance/group norm, pooling),
  and of shape-preserving modules (ReLU, dropout, ...) whose input had that layout, are
  channels-first (B, C, *spatial): ``conv_mode='channelwise'`` (default) makes every spatial
  position a sample, (B·Πspatial, C); ``'flatten'`` gives (B, C·Πspatial).
- Any other ≥3-D output, e.g. a transformer's (B, T, d), has its features last: (B·T, d).

Class labels apply to a layer when there is one label per row (e.g. (B,) labels on (B, d)
outputs); collapse metrics are NaN elsewhere, with the reason in ``collapse_note``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from rankscope.metrics import CONV_MODES, conv_samples
from rankscope.probe.layer_stats import LayerStats

__all__ = ["RepresentationProbe"]

_CHANNELS_FIRST = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
)


class RepresentationProbe:
    """Context manager: ``with RepresentationProbe(model) as p: p.run_batch(x, y)``.

    ``max_dim``: layers whose feature dimension d exceeds it are not accumulated (a d×d
    float64 Gram matrix is 8·d² bytes) and appear with ``status`` saying so.
    """

    def __init__(
        self, model: nn.Module, *, max_dim: int = 4096, conv_mode: str = "channelwise"
    ) -> None:
        if conv_mode not in CONV_MODES:
            raise ValueError(f"unknown conv_mode {conv_mode!r}; expected one of {CONV_MODES}")
        self.model = model
        self.max_dim = max_dim
        self.conv_mode = conv_mode
        self.targets = {
            name or "(model)": mod
            for name, mod in model.named_modules()
            if not any(True for _ in mod.children()) or isinstance(mod, nn.MultiheadAttention)
        }
        self.stats: dict[str, LayerStats] = {}
        self.info: dict[str, dict[str, Any]] = {
            name: {"module": type(mod).__name__, "status": "not called"}
            for name, mod in self.targets.items()
        }
        self.with_labels = False  # True once any batch came with labels
        self._labels: torch.Tensor | None = None
        self._layouts: dict[tuple, str] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> RepresentationProbe:
        for name, mod in self.targets.items():
            self._handles.append(mod.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def run_batch(self, x: Any, y: torch.Tensor | None = None) -> None:
        """One forward pass of ``x`` (a tensor or a tuple of positional inputs), labels ``y``."""
        self._labels = y
        self.with_labels = self.with_labels or y is not None
        self._layouts.clear()
        with _no_fastpath(), torch.no_grad():
            if isinstance(x, tuple | list):
                self.model(*x)
            else:
                self.model(x)

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            out = _first_tensor(output)
            info = self.info[name]
            if out is None or not (out.is_floating_point() or out.is_complex()):
                info["status"] = "output is not a floating-point tensor"
                return
            layout = self._layout(module, _first_tensor(inputs), out)
            rows = self._rows(out, layout)  # (rows, d)
            info.update(layout=layout, status="ok")
            if rows.shape[1] > self.max_dim:
                info["status"] = f"skipped: {rows.shape[1]} features > max_dim={self.max_dim}"
                return
            y = self._labels
            if y is not None and y.numel() != rows.shape[0]:
                info["collapse_note"] = (
                    f"{y.numel()} labels for {rows.shape[0]} rows: no per-row labels"
                )
                y = None
            stats = self.stats.setdefault(name, LayerStats(rows.shape[1]))
            if stats.dim != rows.shape[1]:
                info["status"] = f"feature size changed from {stats.dim} to {rows.shape[1]}"
                del self.stats[name]
                return
            try:
                stats.update(rows, y)
            except ValueError as exc:  # NaN/Inf in this layer's output: say which layer
                raise ValueError(f"output of layer {name!r}: {exc}") from None

        return hook

    def _layout(self, module: nn.Module, x_in: torch.Tensor | None, out: torch.Tensor) -> str:
        if out.ndim <= 2:
            layout = "rows"
        elif isinstance(module, _CHANNELS_FIRST):
            layout = "channels_first"
        elif x_in is not None and x_in.shape == out.shape:
            layout = self._layouts.get(_key(x_in), "features_last")
        else:
            layout = "features_last"
        self._layouts[_key(out)] = layout
        return layout

    def _rows(self, out: torch.Tensor, layout: str) -> torch.Tensor:
        out = out.detach()
        if out.is_complex():
            out = out.abs()
        if out.ndim == 0:
            return out.reshape(1, 1)
        if out.ndim == 1:
            return out.reshape(-1, 1)
        if layout == "channels_first":
            return conv_samples(out, self.conv_mode)
        return out.reshape(-1, out.shape[-1])

    def results(self) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
        """One row per hooked module (order of ``named_modules``) and each module's spectrum."""
        rows, spectra = [], {}
        for name, info in self.info.items():
            row: dict[str, Any] = {"name": name, **info}
            stats = self.stats.get(name)
            if stats is not None and info["status"] == "ok":
                s = stats.spectrum()
                spectra[name] = s
                row.update(stats.metrics(s))
                if self.with_labels:
                    row.update(stats.collapse())
            rows.append(row)
        return rows, spectra


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, tuple | list):
        for item in obj:
            if isinstance(item, torch.Tensor):
                return item
    return None


def _key(t: torch.Tensor) -> tuple:
    return (t.data_ptr(), tuple(t.shape), t.stride())


@contextlib.contextmanager
def _no_fastpath():
    """Disable torch's fused transformer inference path, which bypasses submodule hooks."""
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    previous = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(previous)
