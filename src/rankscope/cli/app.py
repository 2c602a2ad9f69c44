"""Typer application: the commands and their argument handling."""

from __future__ import annotations

import dataclasses
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from rankscope.cli.progress import Progress

app = typer.Typer(
    name="rankscope",
    help="Measure, reproduce and use the notions of rank that explain how deep networks learn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store", help="Run store directory (default ./rankscope-runs or $RANKSCOPE_STORE)."
    ),
]
PresetOpt = Annotated[str, typer.Option("--preset", help="smoke | default | paper")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config field: key=value (repeatable).")
]
SeedsOpt = Annotated[int | None, typer.Option("--seeds", help="Number of seeds (0..N-1).")]
WorkersOpt = Annotated[
    int, typer.Option("--workers", help="Local worker processes (1 runs in this process).")
]
SchedOpt = Annotated[
    str | None, typer.Option("--scheduler", help="Dask scheduler address (needs rankscope[dask]).")
]
DaskOpt = Annotated[
    int | None, typer.Option("--dask-workers", help="Start a local Dask cluster of N workers.")
]


def _err(msg: str) -> None:
    typer.echo(f"rankscope: {msg}", err=True)


def _usage(msg: str) -> typer.Exit:
    _err(msg)
    return typer.Exit(code=2)


@app.callback()
def _main(
    threads: Annotated[
        int, typer.Option("--threads", help="Intra-op threads per process (default 1).")
    ] = 1,
) -> None:
    """rankscope command line. The thread count is applied at start-up by the entry point."""


def _store(path: Path | None, *, create: bool = True):
    from rankscope.store import Store

    try:
        return Store(path, create=create)
    except (OSError, RuntimeError) as exc:
        raise _usage(str(exc)) from None


def _check_counts(
    seeds: int | None, workers: int, dask_workers: int | None, *, seeds_flag: str = "--seeds"
) -> None:
    """Counts a user typed: ``0`` or a negative number is a usage error, not an empty run."""
    for flag, value in (
        (seeds_flag, seeds),
        ("--workers", workers),
        ("--dask-workers", dask_workers),
    ):
        if value is not None and value < 1:
            raise _usage(f"{flag} must be an integer >= 1, got {value}")


def _experiment(exp_id: str):
    from rankscope.experiments.registry import get_experiment

    try:
        return get_experiment(exp_id)
    except KeyError as exc:
        raise _usage(exc.args[0]) from None


@contextmanager
def _store_errors():
    """A store file that cannot be read (not a usage error): one line on stderr, exit 1."""
    from rankscope.store import StoreError

    try:
        yield
    except StoreError as exc:
        _err(str(exc))
        raise typer.Exit(code=1) from None


@contextmanager
def _executor(workers: int, scheduler: str | None, dask_workers: int | None, n_jobs: int):
    from rankscope.sweep.executors import InlineExecutor, make_executor

    if scheduler is None and dask_workers is None and (workers <= 1 or n_jobs <= 1):
        yield InlineExecutor()
        return
    try:
        ex = make_executor(
            "process", workers=workers, scheduler=scheduler, dask_workers=dask_workers
        )
    except (ImportError, ValueError, OSError) as exc:
        raise _usage(str(exc)) from None
    try:
        yield ex
    finally:
        ex.shutdown(wait=True)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


def _claims_text(outcome) -> str:
    from rankscope.report.html import format_measured

    lines = [
        f"{outcome.experiment} [{outcome.preset}]: {outcome.reused} run(s) reused from the "
        f"store, {outcome.computed} computed"
    ]
    width = max((len(c.claim_id) for c in outcome.claims), default=4)
    for c in outcome.claims:
        tag = c.verdict.upper() + ("" if c.hard else " (trend)")
        lines.append(
            f"  {c.claim_id:<{width}}  {tag:<20} {c.seeds_passed}/{c.seeds_total}  "
            f"{c.statement}\n  {'':<{width}}  expected: {c.expected}\n"
            f"  {'':<{width}}  measured: {format_measured(c.measured)}"
            + (f"\n  {'':<{width}}  note: {c.note}" if c.note else "")
        )
    bad = [r for r, s in outcome.statuses.items() if s != "ok"]
    if bad:
        lines.append(f"  runs not ok: {', '.join(f'{r} ({outcome.statuses[r]})' for r in bad)}")
    return "\n".join(lines)


@app.command("list")
def list_cmd(as_json: JsonOpt = False) -> None:
    """List the registered experiments."""
    from rankscope.experiments.registry import all_experiments

    exps = all_experiments()
    if as_json:
        _print_json(
            [
                {"id": e.id, "title": e.title, "papers": list(e.papers), "claims": len(e.claims)}
                for e in exps.values()
            ]
        )
        return
    width = max((len(k) for k in exps), default=2)
    for e in exps.values():
        typer.echo(f"{e.id:<{width}}  {e.title}  ({', '.join(e.papers)}; {len(e.claims)} claims)")


@app.command("show")
def show_cmd(
    exp_id: Annotated[str, typer.Argument(help="Experiment id")], as_json: JsonOpt = False
):
    """Print an experiment's config fields with defaults, its presets and its claims."""
    from rankscope.experiments.config import config_to_dict
    from rankscope.report.figures import figures_for

    exp = _experiment(exp_id)
    fields = [
        {
            "name": f.name,
            "type": str(f.type),
            "default": config_to_dict(exp.presets["default"])[f.name],
        }
        for f in dataclasses.fields(exp.config_cls)
    ]
    presets = {k: config_to_dict(v) for k, v in exp.presets.items()}
    claims = [
        {
            "id": c.id,
            "paper": c.paper,
            "statement": c.statement,
            "expected": c.expected,
            "hard": c.hard,
        }
        for c in exp.claims
    ]
    figs = [{"name": f.name, "title": f.title} for f in figures_for(exp.id)]
    if as_json:
        _print_json(
            {
                "id": exp.id,
                "title": exp.title,
                "papers": list(exp.papers),
                "description": exp.description,
                "fields": fields,
                "presets": presets,
                "seeds": exp.seeds,
                "claims": claims,
                "figures": figs,
            }
        )
        return
    typer.echo(f"{exp.id}: {exp.title}\npapers: {', '.join(exp.papers)}\n\n{exp.description}\n")
    typer.echo("config fields (default preset):")
    for f in fields:
        typer.echo(f"  {f['name']} = {f['default']!r}  [{f['type']}]")
    for name, cfg in presets.items():
        diff = {k: v for k, v in cfg.items() if v != presets["default"][k]}
        typer.echo(
            f"preset {name} ({exp.default_seeds(name)} seeds): "
            + (", ".join(f"{k}={v!r}" for k, v in diff.items()) or "(= default)")
        )
    typer.echo("claims:")
    for c in claims:
        typer.echo(f"  {c['id']} [{c['paper']}] {c['statement']}  (expected: {c['expected']})")
    if figs:
        typer.echo("figures: " + ", ".join(f["name"] for f in figs))


def _reproduce(
    ids,
    preset,
    store,
    seeds,
    overrides,
    workers,
    scheduler,
    dask_workers,
    as_json,
    write_report: bool,
) -> None:
    from rankscope.sweep.runner import reproduce_many

    _check_counts(seeds, workers, dask_workers)
    exps = [_experiment(i) for i in ids]
    for e in exps:
        try:
            cfg = e.preset(preset)
            if overrides:
                from rankscope.experiments.config import apply_overrides

                apply_overrides(cfg, overrides)
        except ValueError as exc:
            raise _usage(f"{e.id}: {exc}") from None
    st = _store(store)
    n_jobs = sum(seeds or e.default_seeds(preset) for e in exps)
    progress = Progress(", ".join(ids) if len(ids) <= 3 else f"{len(ids)} experiments")
    with _store_errors(), _executor(workers, scheduler, dask_workers, n_jobs) as ex:
        outcomes = reproduce_many(
            exps,
            preset=preset,
            store=st,
            seeds=seeds,
            overrides=overrides or (),
            executor=ex,
            on_event=progress,
        )
    if write_report:
        from rankscope.report import write_experiment_report, write_index

        for o in outcomes:
            o.report = str(write_experiment_report(st, o.experiment, o.preset))
        index = write_index(st)
    if as_json:
        payload = [o.as_dict() for o in outcomes]
        _print_json(payload[0] if len(payload) == 1 else payload)
    else:
        for o in outcomes:
            typer.echo(_claims_text(o))
            if o.report:
                typer.echo(f"  report: {o.report}")
            typer.echo("")
        if write_report:
            typer.echo(f"index: {index}")
    failed_runs = any(s == "failed" for o in outcomes for s in o.statuses.values())
    if any(o.failed for o in outcomes) or failed_runs:
        raise typer.Exit(code=1)


@app.command("run")
def run_cmd(
    exp_id: Annotated[str, typer.Argument(help="Experiment id")],
    preset: PresetOpt = "default",
    overrides: SetOpt = None,
    seeds: SeedsOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    workers: WorkersOpt = 2,
    scheduler: SchedOpt = None,
    dask_workers: DaskOpt = None,
) -> None:
    """Run an experiment (skipping runs already stored) and check its claims."""
    _reproduce(
        [exp_id],
        preset,
        store,
        seeds,
        overrides,
        workers,
        scheduler,
        dask_workers,
        as_json,
        write_report=False,
    )


@app.command("reproduce")
def reproduce_cmd(
    exp_ids: Annotated[list[str] | None, typer.Argument(help="Experiment ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every registered experiment.")] = False,
    preset: PresetOpt = "default",
    overrides: SetOpt = None,
    seeds: SeedsOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    workers: WorkersOpt = 2,
    scheduler: SchedOpt = None,
    dask_workers: DaskOpt = None,
) -> None:
    """Run experiments, check every claim, and write the HTML report."""
    from rankscope.experiments.registry import all_experiments

    if all_ and exp_ids:
        raise _usage("give experiment ids or --all, not both")
    ids = list(all_experiments()) if all_ else list(exp_ids or [])
    if not ids:
        raise _usage(f"name experiment ids or pass --all; valid ids: {sorted(all_experiments())}")
    _reproduce(
        ids,
        preset,
        store,
        seeds,
        overrides,
        workers,
        scheduler,
        dask_workers,
        as_json,
        write_report=True,
    )


@app.command("sweep")
def sweep_cmd(
    exp_id: Annotated[str, typer.Argument(help="Experiment id")],
    grid: Annotated[list[str], typer.Option("--grid", help="key=v1,v2 (repeatable).")],
    preset: PresetOpt = "default",
    overrides: SetOpt = None,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per grid point.")] = 1,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    workers: WorkersOpt = 2,
    scheduler: SchedOpt = None,
    dask_workers: DaskOpt = None,
) -> None:
    """Run a grid of configs x seeds; finished runs are skipped, so a killed sweep resumes."""
    from rankscope.experiments.config import apply_overrides
    from rankscope.sweep.grid import expand_grid, parse_grid
    from rankscope.sweep.runner import make_jobs, run_jobs

    _check_counts(seeds, workers, dask_workers, seeds_flag="--seeds (per grid point)")
    exp = _experiment(exp_id)
    try:
        base = exp.preset(preset)
        if overrides:
            base = apply_overrides(base, overrides)
        configs = expand_grid(base, parse_grid(grid))
    except ValueError as exc:
        raise _usage(str(exc)) from None
    st = _store(store)
    jobs = [j for c in configs for j in make_jobs(exp, c, list(range(seeds)), "sweep")]
    progress = Progress(f"sweep {exp_id}")
    with _executor(workers, scheduler, dask_workers, len(jobs)) as ex:
        run_jobs(jobs, st, executor=ex, on_event=progress)
    infos = {r.run_id: r for r in st.runs(exp_id)}
    rows = [
        {
            "run_id": j.run_id,
            "seed": j.seed,
            "status": infos[j.run_id].status,
            "config": {k: v for k, v in j.config.items() if k in parse_grid(grid)},
        }
        for j in jobs
    ]
    if as_json:
        _print_json({"experiment": exp_id, "runs": rows})
    else:
        for r in rows:
            typer.echo(f"{r['run_id']}  seed={r['seed']}  {r['status']:<8}  {r['config']}")
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(code=1)


@app.command("report")
def report_cmd(
    target: Annotated[
        str | None, typer.Argument(help="Experiment id or run id (default: all)")
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Which preset's evaluation")
    ] = None,
    store: StoreOpt = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print every claims table as Markdown instead.")
    ] = False,
) -> None:
    """Write the static HTML report from the store."""
    from rankscope.report import write_experiment_report, write_index, write_run_report

    st = _store(store, create=False)  # a reader: never creates an empty store
    stored = sorted({p for _, p in st.evaluated()})
    if preset is not None and target is None and preset not in stored:
        raise _usage(
            f"no evaluations at preset {preset!r} in store {str(st.root)!r}; "
            f"stored presets: {stored}"
        )
    if markdown:
        from rankscope.report.markdown import claims_markdown

        typer.echo(claims_markdown(st, preset))
        return
    with _store_errors():
        try:
            if target is None:
                for exp_id, p in st.evaluated():
                    if preset is None or p == preset:
                        write_experiment_report(st, exp_id, p)
            elif target in {r.run_id for r in st.runs()}:
                typer.echo(str(write_run_report(st, target)))
            else:
                from rankscope.experiments.registry import all_experiments

                if target not in all_experiments() and target not in {e for e, _ in st.evaluated()}:
                    raise _usage(
                        f"{target!r} is neither an experiment id nor a stored run id; "
                        f"experiments: {sorted(all_experiments())}"
                    )
                typer.echo(str(write_experiment_report(st, target, preset)))
        except KeyError as exc:
            raise _usage(exc.args[0]) from None
    typer.echo(str(write_index(st)))


def _register_analyze() -> None:
    try:
        from rankscope.cli.analyze import analyze_command
    except ImportError:  # pragma: no cover - present in every release
        return
    app.command("analyze")(analyze_command)


_register_analyze()
