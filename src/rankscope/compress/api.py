"""``compress``: measure the spectra, choose ranks, factorise; ``load``: rebuild a saved one.

A model is given as an ``nn.Module``, a state_dict with a ``factory`` (a zero-argument
callable building the architecture), or a path to a Hugging Face model directory. The input
model is never modified unless ``inplace=True``.

Saved directory (:meth:`Compressed.save`): ``model.safetensors`` (the compressed state_dict),
``rankscope_manifest.json`` (budget, parameter counts, per-layer rank, method, parameters
before/after, truncation error, energy kept, jitter) and, for a Hugging Face input, its
config and tokenizer files. :func:`load` rebuilds the module from those files only
(safetensors + JSON; no pickle).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rankscope.compress import spec
from rankscope.compress.allocate import ALLOCATIONS, LayerBudget, allocate, max_saving_rank
from rankscope.compress.calibrate import (
    Batch,
    InputMoments,
    collect_moments,
    iter_batches,
    sequential_moments,
)
from rankscope.compress.factorize import svd_spectrum, truncate, whitener
from rankscope.compress.layers import factorised_module, layer_matrix, skip_reason
from rankscope.compress.sensitivity import sensitivities

__all__ = ["LAYER_TYPES", "MANIFEST", "METHODS", "Compressed", "compress", "load", "select_layers"]

METHODS = ("svd", "whiten")
WEIGHINGS = ("relative", "absolute", "sensitivity")
LAYER_TYPES = {"Linear": nn.Linear, "Conv1d": nn.Conv1d, "Conv2d": nn.Conv2d}
MANIFEST = "rankscope_manifest.json"
WEIGHTS = "model.safetensors"
FORMAT = "rankscope-compressed/1"


@dataclass
class Compressed:
    """The compressed model and its manifest (a JSON-able dict; see module docstring)."""

    model: nn.Module
    manifest: dict[str, Any]
    tokenizer: Any = None
    source_dir: Path | None = None

    @property
    def layers(self) -> list[dict[str, Any]]:
        return self.manifest["layers"]

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + the manifest (+ HF config/tokenizer) to ``directory``."""
        from safetensors.torch import save_file

        from rankscope.compress import hf

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.source_dir is not None:
            hf.copy_side_files(self.source_dir, directory)
        state = {k: v.detach().contiguous().cpu() for k, v in _unique_state(self.model).items()}
        save_file(state, str(directory / WEIGHTS), metadata={"format": FORMAT})
        (directory / MANIFEST).write_text(json.dumps(self.manifest, indent=1) + "\n")
        return directory


def _unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without the second name of tied tensors (safetensors refuses shared memory)."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        key = (v.data_ptr(), v.shape, v.dtype) if v.numel() else (k,)
        if key in seen:
            continue
        seen.add(key)
        out[k] = v
    return out


def _check_budget(budget: Any) -> float:
    ok = isinstance(budget, int | float) and not isinstance(budget, bool)
    if not ok or not math.isfinite(budget) or not 0 < budget <= 1:
        raise ValueError(
            f"budget must be a number in (0, 1] (the kept fraction of the compressible "
            f"layers' parameters), got {budget!r}"
        )
    return float(budget)


def _layer_types(layers: Sequence[str | type]) -> tuple[type, ...]:
    out = []
    for t in layers:
        if isinstance(t, str):
            if t not in LAYER_TYPES:
                raise ValueError(f"unknown layer type {t!r}; expected some of {tuple(LAYER_TYPES)}")
            out.append(LAYER_TYPES[t])
        elif isinstance(t, type) and t in LAYER_TYPES.values():
            out.append(t)
        else:
            raise ValueError(f"unknown layer type {t!r}; expected some of {tuple(LAYER_TYPES)}")
    return tuple(out)


def select_layers(
    model: nn.Module,
    layers: Sequence[str | type] = tuple(LAYER_TYPES),
    include: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """(name -> module to compress, name -> why skipped) by type and glob name patterns.

    ``include``/``exclude`` are ``fnmatch`` patterns on qualified module names (``encoder.*``,
    ``*.attention.*``). Every ``include`` pattern must match at least one layer of the chosen
    types, else ValueError lists the layer names that exist.
    """
    types = _layer_types(layers)
    include = [include] if isinstance(include, str) else list(include or [])
    exclude = [exclude] if isinstance(exclude, str) else list(exclude or [])
    parents = {n: m for n, m in model.named_modules()}
    typed = [(n, m) for n, m in model.named_modules() if isinstance(m, types) and n]
    names = [n for n, _ in typed]
    for pat in include:
        if not any(fnmatch.fnmatchcase(n, pat) for n in names):
            shown = ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
            raise ValueError(
                f"layer pattern {pat!r} matches no {'/'.join(t.__name__ for t in types)} layer; "
                f"layers of those types: {shown or 'none'}"
            )
    chosen, skipped = {}, {}
    for name, mod in typed:
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        parent = parents[name.rpartition(".")[0]]
        why = skip_reason(mod)
        if why is None and isinstance(parent, nn.MultiheadAttention):
            why = "used through its weight by MultiheadAttention"
        if why is None:
            m, n = layer_matrix(mod).shape
            if max_saving_rank(m, n) < 1:
                why = f"a {m}×{n} weight: no rank saves parameters"
        if why is None:
            chosen[name] = mod
        else:
            skipped[name] = why
    return chosen, skipped


def _as_module(model: Any, factory: Callable[[], nn.Module] | None) -> tuple[nn.Module, dict]:
    if isinstance(model, nn.Module):
        return model, {"kind": "module"}
    if isinstance(model, Mapping):
        if factory is None:
            raise ValueError("a state_dict needs factory= (a callable that builds the module)")
        mod = factory()
        if not isinstance(mod, nn.Module):
            raise TypeError(f"factory() must return an nn.Module, got {type(mod).__name__}")
        mod.load_state_dict(dict(model))
        return mod.eval(), {"kind": "factory"}
    raise TypeError(
        f"model must be an nn.Module, a state_dict (with factory=) or a Hugging Face model "
        f"directory, got {type(model).__name__}"
    )


def _calib_batches(calib: Any, tokenizer: Any, batch_size: int, max_length: int) -> list[Batch]:
    if calib is None:
        return []
    if isinstance(calib, torch.Tensor):
        if calib.ndim < 1 or calib.shape[0] == 0:
            raise ValueError(f"calibration tensor is empty: shape {tuple(calib.shape)}")
        return list(iter_batches(calib, batch_size))
    if isinstance(calib, Sequence) and calib and all(isinstance(s, str) for s in calib):
        if tokenizer is None:
            raise ValueError("calibration sentences need a model with a tokenizer")
        from rankscope.compress.text import text_batches

        return text_batches(tokenizer, list(calib), batch_size=batch_size, max_length=max_length)
    if isinstance(calib, Sequence) and calib and all(isinstance(b, Batch) for b in calib):
        return list(calib)
    if isinstance(calib, Sequence) and not calib:
        raise ValueError("calibration set is empty: got an empty list")
    raise TypeError(
        f"calib must be a tensor of inputs, a list of sentences or a list of Batch, got "
        f"{type(calib).__name__}"
    )


def _count(model: nn.Module) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _layer_params(mod: nn.Module) -> int:
    return sum(p.numel() for p in mod.parameters(recurse=True))


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, new)


def compress(
    model: nn.Module | Mapping[str, torch.Tensor] | str | Path,
    budget: float,
    *,
    method: str = "whiten",
    allocate_by: str = "uniform",
    sequential: bool = False,
    calib: Any = None,
    layers: Sequence[str | type] = tuple(LAYER_TYPES),
    include: Sequence[str] | str | None = None,
    exclude: Sequence[str] | str | None = None,
    factory: Callable[[], nn.Module] | None = None,
    inplace: bool = False,
    batch_size: int = 32,
    max_length: int = 128,
    moments: InputMoments | None = None,
    correct: bool = True,
    shrink: float = 0.0,
    weigh: str | None = None,
    probe_batches: int = 2,
    sensitivity: Mapping[str, float] | None = None,
) -> Compressed:
    """Compress ``model`` to the kept fraction ``budget`` of its compressible layers' params.

    ``method``: ``'svd'`` (plain truncated SVD) or ``'whiten'`` (SVD of W·S, S the Cholesky
    factor of the calibration inputs' second moment; see :mod:`rankscope.compress.factorize`).
    ``allocate_by``: ``'uniform'`` or ``'global'`` (:mod:`rankscope.compress.allocate`).
    ``sequential``: each layer's calibration inputs come from the already-compressed layers
    before it (needs ``method='whiten'``). ``calib``: a tensor of model inputs (N, ...), a list
    of sentences (text models), or a list of :class:`Batch`. ``moments``: statistics from an
    earlier :func:`collect_moments` on the same model and batches, to skip that pass.
    """
    budget = _check_budget(budget)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if allocate_by not in ALLOCATIONS:
        raise ValueError(f"unknown allocation {allocate_by!r}; expected one of {ALLOCATIONS}")
    if sequential and method != "whiten":
        raise ValueError("sequential=True needs method='whiten' (it re-measures layer inputs)")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    tokenizer, source_dir = None, None
    if isinstance(model, str | Path):
        from rankscope.compress import hf

        source_dir = Path(model)
        if not hf.is_hf_dir(source_dir):
            raise ValueError(
                f"{str(model)!r} is not a Hugging Face model directory (no config.json); "
                "pass an nn.Module, a state_dict with factory=, or such a directory"
            )
        module, tokenizer = hf.load_hf(source_dir)
        source = {"kind": "hf"}
        inplace = True  # freshly loaded: nobody else holds it
    else:
        module, source = _as_module(model, factory)
        if isinstance(model, Mapping):
            inplace = True
    original = module
    work = module if inplace else copy.deepcopy(module)
    chosen, skipped = select_layers(work, layers, include, exclude)
    if not chosen:
        found = sorted({type(m).__name__ for m in work.modules()} - {type(work).__name__})
        raise ValueError(
            f"no compressible layers in {type(work).__name__}: accepted are "
            f"{'/'.join(_layer_types(layers)[i].__name__ for i in range(len(layers)))} layers "
            f"where some rank saves parameters; the model holds {', '.join(found) or 'nothing'}"
            + (f"; skipped: {skipped}" if skipped else "")
        )
    batches = _calib_batches(calib, tokenizer, batch_size, max_length)
    if method == "whiten" and not batches:
        raise ValueError("method='whiten' needs calibration inputs (calib=); 'svd' does not")
    whites, stats = {}, None
    if method == "whiten":
        stats = moments
        if stats is None or (sequential and stats.rows is None):
            stats = collect_moments(work, chosen, batches, keep_rows=sequential)
        missing = [n for n in chosen if n not in stats.alias]
        for n in missing:
            skipped[n] = "not called during calibration"
            del chosen[n]
        if not chosen:
            raise ValueError("no selected layer was called during calibration")
        for n in chosen:
            canon = stats.alias[n]
            if canon not in whites:
                whites[canon] = whitener(stats.second_moment(n), name=n)
    names = list(chosen)
    if stats is not None:
        names = [n for n in stats.order if n in chosen]
    budgets = []
    for n in names:
        mod = chosen[n]
        w = layer_matrix(mod).detach()
        white = whites.get(stats.alias[n]) if stats is not None else None
        b = mod.bias.numel() if mod.bias is not None else 0
        budgets.append(LayerBudget(n, *w.shape, b, svd_spectrum(w, white)))
    if weigh is None:
        weigh = "sensitivity" if batches else "relative"
    if weigh not in WEIGHINGS:
        raise ValueError(f"unknown weigh {weigh!r}; expected one of {WEIGHINGS}")
    if allocate_by == "global" and weigh == "absolute":
        budgets = [replace(b, weight=float((b.spectrum**2).sum())) for b in budgets]
    elif allocate_by == "global" and weigh == "sensitivity":
        sens = dict(sensitivity or {})
        if not sens:
            probe = dict(zip(names, allocate(budgets, budget, "uniform"), strict=True))
            wl = {n: whites.get(stats.alias[n]) if stats is not None else None for n in names}
            sens = sensitivities(
                work, {n: chosen[n] for n in names}, probe, wl, _spread(batches, probe_batches)
            )
        budgets = [replace(b, weight=float(sens[b.name])) for b in budgets]
    ranks = dict(zip(names, allocate(budgets, budget, allocate_by), strict=True))
    records = {}
    if not sequential:
        for n in names:
            white = whites.get(stats.alias[n]) if stats is not None else None
            records[n] = _factorise(work, n, chosen[n], ranks[n], white, None, method)
    else:
        for group in _groups(names, stats):
            todo = {n: chosen[n] for n in group if ranks[n] is not None}
            if not todo:
                for n in group:
                    records[n] = _factorise(work, n, chosen[n], None, None, None, method)
                continue
            if len(stats.rows[stats.alias[group[0]]]) != len(batches):
                raise ValueError(
                    f"sequential mode needs each layer called once per forward pass; "
                    f"{group[0]} was called {len(stats.rows[stats.alias[group[0]]])} times "
                    f"on {len(batches)} batches"
                )
            c_hat, cross, _ = sequential_moments(work, {group[0]: chosen[group[0]]}, batches, stats)
            if shrink > 0:  # ridge towards the uncorrected W: δ = shrink·tr(Ĉ)/n
                delta = shrink * float(c_hat.diagonal().mean())
                eye = torch.eye(c_hat.shape[0], dtype=c_hat.dtype, device=c_hat.device)
                c_hat, cross = c_hat + delta * eye, cross + delta * eye
            white = whitener(c_hat, name=group[0])
            for n in group:
                c = cross if correct else None
                records[n] = _factorise(work, n, chosen[n], ranks[n], white, c, method)
                records[n]["samples"] = stats.samples(n)
    layer_rows = []
    weights = {b.name: b.weight for b in budgets}
    for n in names:
        rec = records[n]
        rec["allocation_weight"] = weights[n]
        if stats is not None:
            rec.setdefault("samples", stats.samples(n))
            rec.setdefault("jitter", whites[stats.alias[n]].jitter)
        layer_rows.append(rec)
    before = sum(r["params_before"] for r in layer_rows)
    after = sum(r["params_after"] for r in layer_rows)
    model_before = _count(original) if not inplace else None
    model_after = _count(work)
    if model_before is None:
        model_before = model_after + before - after
    manifest = {
        "format": FORMAT,
        "source": source,
        "method": method,
        "allocate": allocate_by,
        "sequential": bool(sequential),
        "budget": budget,
        "params_before": before,
        "params_after": after,
        "kept_fraction": after / before,
        "model_params_before": model_before,
        "model_params_after": model_after,
        "model_kept_fraction": model_after / model_before,
        "calibration_samples": max((r.get("samples", 0) for r in layer_rows), default=0),
        "layers": layer_rows,
        "skipped": [{"name": k, "reason": v} for k, v in skipped.items()],
    }
    if source["kind"] in ("module", "factory"):
        try:
            manifest["architecture"] = spec.describe(work)
        except spec.UnsupportedModule as exc:
            manifest["architecture"] = None
            manifest["architecture_note"] = f"{exc}; load with factory="
    return Compressed(work.eval(), manifest, tokenizer, source_dir)


def _spread(batches: list[Batch], k: int) -> list[Batch]:
    """``k`` batches evenly spread over the calibration set (batches are length-sorted)."""
    if k >= len(batches):
        return list(batches)
    return [batches[round(i * (len(batches) - 1) / max(k - 1, 1))] for i in range(k)]


def _groups(names: list[str], stats: InputMoments) -> list[list[str]]:
    """Consecutive layers (in forward order) fed the same input."""
    out: list[list[str]] = []
    for n in names:
        if out and stats.alias[out[-1][0]] == stats.alias[n]:
            out[-1].append(n)
        else:
            out.append([n])
    return out


def _factorise(work, name, mod, rank, white, cross, method) -> dict[str, Any]:
    w = layer_matrix(mod).detach()
    m, n = w.shape
    before = _layer_params(mod)
    row = {
        "name": name,
        "type": type(mod).__name__,
        "shape": [m, n],
        "weight_shape": list(mod.weight.shape),
        "method": method,
    }
    if rank is None:
        row.update(rank=None, params_before=before, params_after=before)
        row.update(truncation_error=0.0, energy_kept=1.0)
        return row
    f = truncate(w, rank, white, cross)
    new = factorised_module(mod, f.a.to(w.dtype), f.b.to(w.dtype))
    _replace(work, name, new)
    row.update(rank=rank, params_before=before, params_after=_layer_params(new))
    row.update(truncation_error=f.truncation_error, energy_kept=f.energy_kept)
    return row


def load(directory: str | Path, *, factory: Callable[[], nn.Module] | None = None) -> nn.Module:
    """Rebuild a model saved by :meth:`Compressed.save` (safetensors + JSON only; no pickle).

    Hugging Face inputs are rebuilt from the saved ``config.json``; ``nn.Sequential`` models
    from the manifest's architecture description; other modules need ``factory`` (building the
    original, uncompressed architecture), whose factorised layers are then replaced.
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    man_path, w_path = directory / MANIFEST, directory / WEIGHTS
    if not man_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(
            f"{str(directory)!r} is not a compressed model directory: expected {MANIFEST} "
            f"and {WEIGHTS} in it"
        )
    manifest = json.loads(man_path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"unknown manifest format {manifest.get('format')!r}; expected {FORMAT}")
    state = load_file(str(w_path))
    kind = manifest["source"]["kind"]
    if factory is not None:
        model = _with_factorised(factory(), manifest)
    elif kind == "hf":
        from rankscope.compress import hf

        model = _with_factorised(hf.build_from_config(directory), manifest)
    elif manifest.get("architecture"):
        model = spec.build(manifest["architecture"])
    else:
        raise ValueError(
            f"{str(directory)!r} holds a {kind} model without an architecture description: "
            "pass factory= (a callable building the original module)"
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = _tied_names(model)
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ValueError(
            f"saved weights do not fit the rebuilt model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return model.eval()


def _tied_names(model: nn.Module) -> set[str]:
    kept = set(_unique_state(model))
    return set(model.state_dict()) - kept


def _with_factorised(model: nn.Module, manifest: dict[str, Any]) -> nn.Module:
    for row in manifest["layers"]:
        if row["rank"] is None:
            continue
        mod = model.get_submodule(row["name"])
        m, n = row["shape"]
        r = row["rank"]
        a = torch.zeros(m, r, dtype=mod.weight.dtype)
        b = torch.zeros(r, n, dtype=mod.weight.dtype)
        new = factorised_module(mod, a, b)
        _replace(model, row["name"], new)
    return model


ARCH_KEY = "rankscope_architecture"


def save_sequential(model: nn.Module, path: str | Path) -> Path:
    """Write an ``nn.Sequential`` model to one ``.safetensors`` file that rebuilds without code.

    The architecture goes in the safetensors metadata (``rankscope_architecture``, JSON from
    :mod:`rankscope.compress.spec`); ``rankscope compress FILE`` and :func:`load_sequential`
    read it back.
    """
    from safetensors.torch import save_file

    path = Path(path)
    desc = json.dumps(spec.describe(model))
    state = {k: v.detach().contiguous().cpu() for k, v in _unique_state(model).items()}
    save_file(state, str(path), metadata={ARCH_KEY: desc})
    return path


def load_sequential(path: str | Path) -> nn.Module:
    """The model saved by :func:`save_sequential` (also reads the shipped demo checkpoint)."""
    from rankscope.probe.checkpoint import load_checkpoint

    ckpt = load_checkpoint(Path(path))
    meta = ckpt.metadata
    if ARCH_KEY in meta:
        model = spec.build(json.loads(meta[ARCH_KEY]))
    elif meta.get("rankscope_model") == "demo-mlp":
        from rankscope.models.demo import load_demo_model

        return load_demo_model(dict(ckpt.tensors), meta)
    else:
        raise ValueError(
            f"{str(path)!r} does not say how to rebuild its model: expected safetensors "
            f"metadata {ARCH_KEY!r} (written by rankscope.compress.save_sequential) or a "
            "rankscope demo checkpoint; for other models call rankscope.compress.compress "
            "with the module or factory="
        )
    model.load_state_dict(dict(ckpt.tensors))
    return model.eval()
