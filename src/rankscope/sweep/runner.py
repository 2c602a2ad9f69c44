"""Run experiments into the store: skip finished runs, record divergence, evaluate claims.

A run's id is a hash of (experiment, resolved config, seed, code version), so the same
request twice computes nothing the second time, and a killed sweep resumes where it stopped.
Workers only compute; the calling process alone writes the store, one transaction per run.
"""

from __future__ import annotations

import platform
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch

import rankscope
from rankscope.experiments.base import ClaimVerdict, Experiment, RunContext
from rankscope.experiments.claims import evaluate_claims
from rankscope.experiments.config import (
    apply_overrides,
    config_from_dict,
    config_hash,
    config_to_dict,
)
from rankscope.experiments.registry import get_experiment
from rankscope.results import Result
from rankscope.store import Store
from rankscope.sweep.code_identity import closure_hash
from rankscope.sweep.executors import InlineExecutor
from rankscope.train.errors import Diverged

__all__ = [
    "Job",
    "Outcome",
    "code_version",
    "make_jobs",
    "reproduce",
    "reproduce_many",
    "run_experiment",
    "run_jobs",
]

Event = Callable[[str, dict[str, Any]], None]


def _noop(kind: str, info: dict[str, Any]) -> None:
    return None


def code_version(exp: Experiment) -> str:
    """Package version plus a hash of the source of every module the experiment can import.

    The modules are the static import closure (:mod:`rankscope.sweep.code_identity`) of the
    modules defining the experiment's run, config, summary and claims.
    """
    fns = [exp.run, exp.config_cls, exp.summary_cls, exp.run_many, exp.ensemble_key]
    fns += [c.check or c.across_seeds for c in exp.claims]
    modules = sorted({f.__module__ for f in fns if f is not None and hasattr(f, "__module__")})
    modules = [m for m in modules if m.split(".")[0] == "rankscope"]
    return f"{rankscope.__version__}+{closure_hash(modules)}"


@cache
def git_revision() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    rev = out.stdout.strip()
    if out.returncode != 0 or not rev:
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    ).stdout.strip()
    return rev + ("-dirty" if dirty else "")


@dataclass(frozen=True)
class Job:
    """One (experiment, config, seed) to compute."""

    experiment: str
    preset: str
    config: dict[str, Any]
    seed: int
    run_id: str
    device: str = "cpu"


def make_jobs(
    exp: Experiment, config: Any, seeds: Sequence[int], preset: str, device: str = "cpu"
) -> list[Job]:
    """One job per seed; the run id covers experiment, resolved config, seed, device, dtype
    and the code version (:func:`code_version`)."""
    cfg = config_to_dict(config)
    version = code_version(exp)
    dtype = str(torch.get_default_dtype())
    jobs = []
    for seed in seeds:
        payload = {"e": exp.id, "c": cfg, "s": int(seed), "v": version, "d": device, "t": dtype}
        rid = config_hash(payload)[:16]
        jobs.append(Job(exp.id, preset, cfg, int(seed), rid, device))
    return jobs


def _provenance(job: Job, wall: float) -> dict[str, Any]:
    import numpy as np

    return {
        "rankscope": rankscope.__version__,
        "git_revision": git_revision(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": job.device,
        "default_dtype": str(torch.get_default_dtype()),
        "threads": torch.get_num_threads(),
        "seed": job.seed,
        "wall_time_s": wall,
    }


def execute_job(job: Job, progress: Callable[[float], None] | None = None) -> tuple[Result, float]:
    """Compute one job (in whatever process the executor chose). Never raises for run errors."""
    exp = get_experiment(job.experiment)
    config = config_from_dict(exp.config_cls, job.config)
    ctx = RunContext(seed=job.seed, device=torch.device(job.device))
    if progress is not None:
        ctx.progress = progress
    t0 = time.perf_counter()
    try:
        result = exp.run(config, ctx)
        if not isinstance(result, Result):
            raise TypeError(f"{exp.id}.run returned {type(result).__name__}, expected Result")
    except Diverged as exc:
        result = Result(
            status="diverged", diverged_step=exc.step, error=str(exc), records=ctx.log.freeze()
        )
    except Exception as exc:
        result = Result(status="failed", error="".join(traceback.format_exception(exc))[-4000:])
    wall = time.perf_counter() - t0
    result.run_id, result.seed, result.config = job.run_id, job.seed, dict(job.config)
    return result, wall


def execute_group(jobs: Sequence[Job]) -> list[tuple[Result, float]]:
    """Compute same-shaped jobs as one vectorized ensemble through ``Experiment.run_many``."""
    exp = get_experiment(jobs[0].experiment)
    if exp.run_many is None or len(jobs) == 1:
        return [execute_job(j) for j in jobs]
    configs = [config_from_dict(exp.config_cls, j.config) for j in jobs]
    ctxs = [RunContext(seed=j.seed, device=torch.device(j.device)) for j in jobs]
    t0 = time.perf_counter()
    try:
        results = exp.run_many(configs, ctxs)
    except Exception:  # fall back to one run per job so that errors are attributed
        return [execute_job(j) for j in jobs]
    wall = (time.perf_counter() - t0) / len(jobs)
    out = []
    for j, r in zip(jobs, results):
        r.run_id, r.seed, r.config = j.run_id, j.seed, dict(j.config)
        out.append((r, wall))
    return out


def _groups(jobs: Sequence[Job]) -> list[list[Job]]:
    groups: dict[Any, list[Job]] = {}
    singles: list[list[Job]] = []
    for j in jobs:
        exp = get_experiment(j.experiment)
        if exp.run_many is None or exp.ensemble_key is None:
            singles.append([j])
            continue
        key = (j.experiment, exp.ensemble_key(config_from_dict(exp.config_cls, j.config)))
        groups.setdefault(key, []).append(j)
    return list(groups.values()) + singles


def run_jobs(
    jobs: Sequence[Job], store: Store, *, executor: Executor | None = None, on_event: Event = _noop
) -> list[str]:
    """Compute the jobs not already in ``store`` and save each as it finishes."""
    done = store.finished(j.run_id for j in jobs)
    todo = list({j.run_id: j for j in jobs if j.run_id not in done}.values())  # each once
    on_event("plan", {"total": len(jobs), "cached": len(jobs) - len(todo)})
    executor = executor or InlineExecutor()
    inline = isinstance(executor, InlineExecutor)
    finished = 0

    def save(result: Result, wall: float, job: Job) -> None:
        nonlocal finished
        store.save_run(
            result,
            experiment=job.experiment,
            preset=job.preset,
            provenance=_provenance(job, wall),
            wall_time=wall,
        )
        finished += 1
        on_event(
            "done",
            {
                "run_id": job.run_id,
                "status": result.status,
                "seed": job.seed,
                "finished": finished,
                "todo": len(todo),
                "wall": wall,
                "error": result.error,
            },
        )

    if inline:
        for group in _groups(todo):
            if len(group) == 1:
                job = group[0]
                on_event("start", {"run_id": job.run_id, "seed": job.seed})
                prog = lambda f, j=job: on_event("progress", {"run_id": j.run_id, "fraction": f})  # noqa: E731
                result, wall = execute_job(job, prog)
                save(result, wall, job)
            else:
                for (result, wall), job in zip(execute_group(group), group):
                    save(result, wall, job)
        return [j.run_id for j in jobs]
    futures = {}
    for group in _groups(todo):
        if len(group) == 1:
            futures[executor.submit(execute_job, group[0])] = group
        else:
            futures[executor.submit(execute_group, group)] = group
    for fut in as_completed(futures):
        group = futures[fut]
        try:
            out = fut.result()
        except Exception as exc:  # the worker itself died
            err = f"worker failed: {type(exc).__name__}: {exc}"
            out = [
                (
                    Result(
                        status="failed",
                        error=err,
                        run_id=j.run_id,
                        seed=j.seed,
                        config=dict(j.config),
                    ),
                    0.0,
                )
                for j in group
            ]
        pairs = [out] if isinstance(out, tuple) else out
        for (result, wall), job in zip(pairs, group):
            save(result, wall, job)
    return [j.run_id for j in jobs]


def run_experiment(
    exp: Experiment | str,
    config: Any = None,
    *,
    seeds: int | Sequence[int] = 1,
    store: Store | None = None,
    preset: str = "default",
    overrides: Sequence[str] | dict[str, Any] = (),
    executor: Executor | None = None,
    device: str = "cpu",
    on_event: Event = _noop,
) -> list[str]:
    """Run ``exp`` at ``config`` (default: the preset) for ``seeds``; returns the run ids."""
    exp = get_experiment(exp) if isinstance(exp, str) else exp
    jobs = plan_jobs(exp, preset, seeds, overrides, device, config=config)
    return run_jobs(jobs, store or Store(), executor=executor, on_event=on_event)


def preset_label(preset: str, overrides: Sequence[str] | dict[str, Any]) -> str:
    """Runs with overrides are stored under ``PRESET+`` so they never mix with the preset's."""
    return f"{preset}+" if overrides else preset


def plan_jobs(
    exp: Experiment,
    preset: str,
    seeds: int | Sequence[int] | None,
    overrides: Sequence[str] | dict[str, Any] = (),
    device: str = "cpu",
    *,
    config: Any = None,
) -> list[Job]:
    """Resolve the config (preset, then overrides) and seeds (default: the preset's count)."""
    config = exp.preset(preset) if config is None else config
    if overrides:
        config = apply_overrides(config, overrides)
    n = exp.default_seeds(preset) if seeds is None else seeds
    seed_list = list(range(n)) if isinstance(n, int) else [int(s) for s in n]
    if not seed_list or min(seed_list) < 0:
        raise ValueError(
            f"seeds must be a count >= 1 or a non-empty list of seeds >= 0, got {seeds!r}"
        )
    return make_jobs(exp, config, seed_list, preset_label(preset, overrides), device)


@dataclass
class Outcome:
    """What ``reproduce`` returns: verdicts, run ids, and the path of the written report."""

    experiment: str
    preset: str
    claims: list[ClaimVerdict]
    run_ids: list[str]
    report: str | None = None
    statuses: dict[str, str] = field(default_factory=dict)
    reused: int = 0  # runs found in the store (same id: same experiment, config, seed, code)
    computed: int = 0  # runs computed by this call

    @property
    def failed(self) -> bool:
        return any(c.verdict == "fail" and c.hard for c in self.claims)

    def as_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "preset": self.preset,
            "claims": [c.as_dict() for c in self.claims],
            "runs": [{"run_id": r, "status": self.statuses.get(r, "?")} for r in self.run_ids],
            "report": self.report,
            "reused": self.reused,
            "computed": self.computed,
        }


def reproduce_many(
    exps: Sequence[Experiment | str],
    *,
    preset: str = "default",
    store: Store | None = None,
    seeds: int | Sequence[int] | None = None,
    overrides: Sequence[str] | dict[str, Any] = (),
    executor: Executor | None = None,
    device: str = "cpu",
    on_event: Event = _noop,
) -> list[Outcome]:
    """``reproduce`` for several experiments, with all their runs sent to one executor."""
    resolved = [get_experiment(e) if isinstance(e, str) else e for e in exps]
    store = store or Store()
    label = preset_label(preset, overrides)
    plan = [(exp, plan_jobs(exp, preset, seeds, overrides, device)) for exp in resolved]
    all_jobs = [j for _, jobs in plan for j in jobs]
    before = store.finished(j.run_id for j in all_jobs)
    run_jobs(all_jobs, store, executor=executor, on_event=on_event)
    outcomes = []
    for exp, jobs in plan:
        run_ids = [j.run_id for j in jobs]
        results = [store.load_run(r) for r in run_ids]
        on_event("claims", {"experiment": exp.id})
        verdicts = evaluate_claims(exp, results)
        store.save_verdicts(exp.id, label, [v.as_dict() for v in verdicts], run_ids)
        unique = set(run_ids)
        outcomes.append(
            Outcome(
                exp.id,
                label,
                verdicts,
                run_ids,
                statuses={r.run_id: r.status for r in results},
                reused=len(unique & before),
                computed=len(unique - before),
            )
        )
    return outcomes


def reproduce(
    exp: Experiment | str,
    *,
    preset: str = "default",
    store: Store | None = None,
    seeds: int | Sequence[int] | None = None,
    overrides: Sequence[str] | dict[str, Any] = (),
    executor: Executor | None = None,
    device: str = "cpu",
    on_event: Event = _noop,
) -> Outcome:
    """Run every seed, evaluate every claim on the stored results, store the verdicts."""
    return reproduce_many(
        [exp],
        preset=preset,
        store=store,
        seeds=seeds,
        overrides=overrides,
        executor=executor,
        device=device,
        on_event=on_event,
    )[0]
