"""``rankscope.analyze(model, data=None, ...)``: per-layer ranks of any model.

Weights: every ≥2-D tensor of the state_dict, one spectrum each, all metrics from it
(:mod:`rankscope.probe.weight_metrics`). With ``data`` (and an ``nn.Module`` to run it
through): forward hooks stream each layer's outputs into float64 sufficient statistics
(:mod:`rankscope.probe.hooks`), giving representation ranks and, with labels, collapse
metrics per layer, in memory independent of the dataset size.

>>> import torch
>>> a = analyze(torch.nn.Linear(4, 3, bias=False))
>>> [(r["name"], r["kind"], r["rank_torch"]) for r in a.layers]
[('weight', 'linear', 3)]
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rankscope.probe.analysis import Analysis
from rankscope.probe.checkpoint import load_checkpoint
from rankscope.probe.data import iter_batches
from rankscope.probe.hooks import RepresentationProbe
from rankscope.probe.parallel import available_cores, map_ordered, scoped_kernel_threads
from rankscope.probe.weight_metrics import FAST_METRICS, SpectrumSettings, fast_row, weight_row
from rankscope.probe.weights import WeightMatrix, weight_matrices

__all__ = ["analyze"]

_REP_COLUMNS = {
    "features": "rep_features",
    "samples": "rep_samples",
    "rep_rank_torch": "rep_rank_torch",
    "rep_rank_rel1e-2": "rep_rank_rel1e-2",
    "rep_stable_rank": "rep_stable_rank",
    "rep_effective_rank": "rep_effective_rank",
    "nc1": "nc1",
    "nc1_quotient": "nc1_quotient",
    "tcv2": "tcv2",
}


def analyze(
    model: Any,
    data: Any = None,
    *,
    labels: Any = None,
    max_full_svd: int = 2048,
    topk: int = 128,
    gram: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    max_batches: int | None = None,
    rep_max_dim: int = 4096,
    conv_mode: str = "channelwise",
    device: str | torch.device | None = None,
    workers: int | None = None,
    metrics: Sequence[str] | None = None,
) -> Analysis:
    """Analyse ``model``: an ``nn.Module``, a state_dict, or a ``.safetensors``/torch file.

    ``data``: a tensor, a data file or an iterable of batches (:mod:`rankscope.probe.data`);
    needs an ``nn.Module``. ``labels``: (N,) class ids for tensor/file data. Matrices with
    min(m, n) > ``max_full_svd`` use the randomized top-``topk`` path, seeded by ``seed``;
    ``gram=False`` takes float64 SVDs where the float64 Gram route would apply
    (:mod:`rankscope.probe.weight_metrics`).
    ``rep_max_dim`` bounds the width of a hooked output (its Gram matrix is 8·d² bytes);
    ``conv_mode`` is how conv outputs become samples ('channelwise' or 'flatten').
    ``device``: where the weight spectra are computed (default: where each weight is;
    ``"cuda"`` needs a GPU). ``workers``: threads over layers (default: one per available
    core); each layer's kernels run at one BLAS and one torch thread, and the caller's
    thread settings are restored on return (:mod:`rankscope.probe.parallel`).
    ``metrics``: the weight columns needed (default: all). When they are among
    ``stable_rank``, ``s_max`` and ``frobenius_norm``, float32 weights take a float32 path
    whose s_1 carries a certified relative error ≤ 1e-6 (``method='float32-certified'``;
    :func:`rankscope.probe.weight_metrics.certified_top`), falling back to float64 per layer
    when the certificate fails; the other columns are then NaN.
    """
    if data is not None and not isinstance(model, nn.Module):
        raise ValueError(
            "representation metrics need a model that can run: pass an nn.Module with data=; "
            f"got {type(model).__name__} (weights only)"
        )
    settings = SpectrumSettings(max_full_svd=max_full_svd, topk=topk, gram=gram)
    fast = _fast_requested(metrics)
    ckpt = load_checkpoint(model)
    mats, skipped = weight_matrices(model if isinstance(model, nn.Module) else ckpt.tensors)
    dev = _resolve_device(device)
    n_workers = available_cores() if workers is None else workers
    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"workers must be an int >= 1 or None, got {workers!r}")
    with scoped_kernel_threads(1):
        rows, spectra = _weight_rows(
            mats,
            settings,
            torch.Generator().manual_seed(seed),
            device=dev,
            workers=n_workers,
            fast=fast,
        )
    info = {
        "source": ckpt.source,
        "format": ckpt.format,
        "n_tensors": len(ckpt.tensors),
        "n_matrices": len(mats),
        "n_skipped": len(skipped),
        "n_parameters": sum(t.numel() for t in ckpt.tensors.values()),
        "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in ckpt.tensors.values()}),
    }
    if ckpt.metadata:
        info["metadata"] = dict(ckpt.metadata)
    result = Analysis(
        layers=rows,
        skipped=[{"name": s.name, "shape": list(s.shape), "reason": s.reason} for s in skipped],
        spectra=spectra,
        model=info,
        settings={**settings.to_dict(), "seed": seed, **_versions()},
    )
    if data is not None:
        _add_representations(
            result, model, data, labels, batch_size, max_batches, rep_max_dim, conv_mode
        )
    return result


def _fast_requested(metrics: Sequence[str] | None) -> bool:
    if metrics is None:
        return False
    if isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(f"metrics must be a sequence of column names, got {metrics!r}")
    return bool(metrics) and set(metrics) <= FAST_METRICS


def _row(w: WeightMatrix, settings: SpectrumSettings, fast: bool):
    if fast and w.matrix.device.type == "cpu":
        out = fast_row(w, settings)
        if out is not None:
            return out
    return weight_row(w, settings)


def _resolve_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'cpu', 'cuda' or a torch.device, got {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available; use 'cpu'")
    return dev


def _weight_rows(
    mats: list[WeightMatrix],
    settings: SpectrumSettings,
    generator: torch.Generator,
    *,
    device: torch.device | None = None,
    workers: int = 1,
    fast: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """One row and spectrum per weight; independent layers in a thread pool.

    Layers on the randomized path draw from ``generator`` and run in the calling thread in
    state_dict order, so the result does not depend on ``workers``.
    """
    if device is not None:
        mats = [dataclasses.replace(w, matrix=w.matrix.detach().to(device)) for w in mats]
    own = [w for w in mats if w.same_as is None]  # same_as names an earlier entry
    randomized = [w for w in own if min(w.matrix.shape) > settings.max_full_svd]
    full = [w for w in own if min(w.matrix.shape) <= settings.max_full_svd]
    computed = dict(
        zip(
            (w.name for w in full),
            map_ordered(lambda w: _row(w, settings, fast), full, workers),
        )
    )
    for w in randomized:
        computed[w.name] = weight_row(w, settings, generator=generator)
    rows: list[dict[str, Any]] = []
    spectra: dict[str, torch.Tensor] = {}
    by_name: dict[str, dict[str, Any]] = {}
    for w in mats:
        if w.name not in computed and w.same_as in by_name:  # tied weights: one SVD
            row = {**by_name[w.same_as], "name": w.name, "kind": w.kind}
            row["note"] = "; ".join(x for x in (w.note, f"same tensor as {w.same_as}") if x)
            s = spectra[w.same_as]
        else:
            row, s = computed[w.name]
            s = s.cpu()
        rows.append(row)
        spectra[w.name] = s
        by_name[w.name] = row
    return rows, spectra


def _add_representations(
    result: Analysis,
    model: nn.Module,
    data: Any,
    labels: Any,
    batch_size: int,
    max_batches: int | None,
    max_dim: int,
    conv_mode: str,
) -> None:
    device, dtype = _device_dtype(model)
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        with RepresentationProbe(model, max_dim=max_dim, conv_mode=conv_mode) as probe:
            for x, y in iter_batches(data, labels, batch_size=batch_size, max_batches=max_batches):
                try:
                    probe.run_batch(_to(x, device, dtype), y)
                except (RuntimeError, ValueError) as exc:  # e.g. data of the wrong width
                    shape = [tuple(v.shape) for v in x] if isinstance(x, tuple) else tuple(x.shape)
                    raise ValueError(
                        f"running {type(model).__name__} on data batch {n_batches} of shape "
                        f"{shape} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                    ) from exc
                n_batches += 1
    finally:
        model.train(was_training)
    if n_batches == 0:
        raise ValueError("data gave no batches; expected at least one (x) or (x, y) batch")
    reps, rep_spectra = probe.results()
    result.representations = reps
    result.rep_spectra = rep_spectra
    result.settings["representations"] = {
        "centre": True,
        "conv_mode": conv_mode,
        "max_dim": max_dim,
        "batches": n_batches,
        "rep_rank_torch": "s_i > max(N,d)*eps(float32)*s_1 on the centred outputs",
        "rep_rank_rel1e-2": "s_i > 1e-2*s_1 on the centred outputs",
        "nc1": "pinv: tr(Sigma_W Sigma_B^+)/K, global mean = sample mean",
        "tcv2": "sqrt(tr Sigma_W)",
    }
    _merge_representations(result.layers, {r["name"]: r for r in reps}, dict(model.named_modules()))


def _merge_representations(
    rows: list[dict[str, Any]], reps: dict[str, dict[str, Any]], modules: dict[str, nn.Module]
) -> None:
    """Give each weight row the output statistics of the module that applies it."""
    for row in rows:
        owner, _, _ = row["name"].rpartition(".")
        owner = owner or "(model)"
        rep = reps.get(owner)
        parent, _, leaf = owner.rpartition(".")
        if isinstance(modules.get(owner), nn.MultiheadAttention):
            rep = None  # in_proj's outputs (q, k, v) are internal to the attention op
        elif isinstance(modules.get(parent), nn.MultiheadAttention) and leaf == "out_proj":
            rep = reps.get(parent)  # out_proj runs inside its parent's forward
        if rep is None or rep.get("status") != "ok":
            continue
        row["rep_module"] = rep["name"]
        row.update({new: rep[old] for old, new in _REP_COLUMNS.items() if old in rep})


def _device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype | None]:
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else None)
    return torch.device("cpu"), None


def _to(x: Any, device: torch.device, dtype: torch.dtype | None) -> Any:
    if isinstance(x, tuple):
        return tuple(_to(v, device, dtype) for v in x)
    if dtype is not None and x.is_floating_point():
        return x.to(device=device, dtype=dtype)
    return x.to(device)


def _versions() -> dict[str, str]:
    import rankscope

    return {
        "rankscope": rankscope.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
