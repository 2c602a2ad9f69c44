"""Typer application: the commands and their argument handling.

Start-up stays cheap: this module imports only typer and the standard library; each command
imports what it needs (torch, the registry, the store) when it runs, so ``--help``,
``--version`` and usage errors answer without loading torch.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import re
import signal
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="rankscope",
    help="Measure, reproduce and use the notions of rank that explain how deep networks learn.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: flags print bare, [brackets] print as written
)

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store", help="Run store directory (default ./rankscope-runs or $RANKSCOPE_STORE)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DEVICES = ("cpu", "cuda", "auto")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options every command that computes runs shares (run, reproduce, sweep)."""

    preset: str = "default"
    overrides: list[str] | None = None
    seeds: str | None = None
    store: Path | None = None
    as_json: bool = False
    workers: int = 2
    scheduler: str | None = None
    dask_workers: int | None = None
    device: str = "cpu"


_RUN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "preset": (Annotated[str, typer.Option("--preset", help="smoke | default | paper")], "default"),
    "overrides": (
        Annotated[
            list[str] | None,
            typer.Option("--set", help="Override a config field: key=value (repeatable)."),
        ],
        None,
    ),
    "seeds": (
        Annotated[
            str | None,
            typer.Option(
                "--seeds", help="N (seeds 0..N-1), a range A-B (inclusive) or a list a,b,c."
            ),
        ],
        None,
    ),
    "store": (StoreOpt, None),
    "as_json": (JsonOpt, False),
    "workers": (
        Annotated[
            int, typer.Option("--workers", help="Local worker processes (1 runs in this process).")
        ],
        2,
    ),
    "scheduler": (
        Annotated[
            str | None,
            typer.Option("--scheduler", help="Dask scheduler address (needs rankscope[dask])."),
        ],
        None,
    ),
    "dask_workers": (
        Annotated[
            int | None,
            typer.Option("--dask-workers", help="Start a local Dask cluster of N workers."),
        ],
        None,
    ),
    "device": (
        Annotated[
            str,
            typer.Option(
                "--device", help="cpu | cuda | auto (auto: cuda when a GPU is available)."
            ),
        ],
        "cpu",
    ),
}


def with_run_options(*, skip: tuple[str, ...] = ()) -> Callable:
    """Add the shared run options to a command; it receives them as one ``opts: RunOptions``.

    The options are declared once (``_RUN_OPTIONS``); a command lists in ``skip`` those it
    declares itself (``sweep`` has its own ``--seeds``).
    """

    def deco(fn: Callable) -> Callable:
        sig = inspect.signature(fn, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "opts"]
        names = [n for n in _RUN_OPTIONS if n not in skip]
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for n, (a, d) in ((n, _RUN_OPTIONS[n]) for n in names)
        ]

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            shared = {n: kwargs.pop(n) for n in names}
            return fn(**kwargs, opts=RunOptions(**shared))

        wrapper.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
        return wrapper

    return deco


def _err(msg: str) -> None:
    typer.echo(f"rankscope: {msg}", err=True)


def _usage(msg: str) -> typer.Exit:
    _err(msg)
    return typer.Exit(code=2)


def _version(value: bool) -> None:
    if value:
        from rankscope import __version__

        typer.echo(f"rankscope {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    threads: Annotated[
        int, typer.Option("--threads", help="Intra-op threads per process (default 1).")
    ] = 1,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """rankscope command line. The thread count is applied at start-up by the entry point."""


def _suggest(name: str, choices: list[str]) -> str | None:
    """The closest of ``choices`` to a mistyped ``name`` (whole id, or its beginning)."""
    import difflib

    hit = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if hit:
        return hit[0]
    heads = {c[: len(name) + 1]: c for c in choices}
    hit = difflib.get_close_matches(name, list(heads), n=1, cutoff=0.7)
    return heads[hit[0]] if hit else None


def _experiment(exp_id: str):
    from rankscope.experiments.registry import all_experiments

    reg = all_experiments()
    if exp_id in reg:
        return reg[exp_id]
    close = _suggest(exp_id, list(reg))
    hint = f"; did you mean {close!r}?" if close else ""
    raise _usage(f"unknown experiment {exp_id!r}{hint}; valid ids: {sorted(reg)}")


def _store(path: Path | None, *, create: bool = True):
    from rankscope.store import Store

    try:
        return Store(path, create=create)
    except (OSError, RuntimeError) as exc:
        raise _usage(str(exc)) from None


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``auto`` (cuda when available, else cpu) as a torch device string."""
    if device not in DEVICES:
        raise _usage(f"--device must be one of {list(DEVICES)}, got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "auto":
        return "cpu"
    build = torch.version.cuda
    why = f"torch {torch.__version__} " + (
        f"has CUDA {build} but finds no GPU" if build else "is a CPU-only build"
    )
    raise _usage(f"--device cuda: no CUDA GPU is available ({why}); use --device cpu or auto")


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


def parse_seeds(text: str | None) -> int | list[int] | None:
    """``--seeds``: ``N`` is a count (seeds 0..N-1), ``A-B`` an inclusive range, ``a,b,c`` a list.

    Seeds 3-5 confirm a criterion calibrated on seeds 0-2 (docs/claims-changelog.md).
    """
    if text is None:
        return None
    t = text.strip()

    def bad() -> typer.Exit:
        return _usage(
            f"--seeds must be a count N >= 1, a range A-B with 0 <= A <= B, or a list a,b,c "
            f"of seeds >= 0; got {text!r}"
        )

    if re.fullmatch(r"-?\d+", t):
        n = int(t)
        if n < 1:
            raise _usage(f"--seeds must be an integer >= 1, got {n}")
        return n
    if m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", t):
        a, b = int(m[1]), int(m[2])
        if a > b:
            raise bad()
        return list(range(a, b + 1))
    if re.fullmatch(r"\d+(\s*,\s*\d+)+", t):
        seeds = [int(x) for x in t.split(",")]
        if len(set(seeds)) != len(seeds):
            raise _usage(f"--seeds lists a seed twice: {text!r}")
        return seeds
    raise bad()


@contextmanager
def _store_errors():
    """A store file that cannot be read (not a usage error): one line on stderr, exit 1."""
    from rankscope.store import StoreError

    try:
        yield
    except StoreError as exc:
        _err(str(exc))
        raise typer.Exit(code=1) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that the stored runs stay and workers are killed."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


@contextmanager
def _interruptible(store_root: Path):
    """SIGTERM or Ctrl-C: kill the workers, keep every finished run, exit 143 or 130."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    except KeyboardInterrupt as exc:
        code = 143 if isinstance(exc, Terminated) else 130
        what = "SIGTERM" if code == 143 else "interrupt"
        _err(
            f"stopped by {what}: finished runs are stored in {str(store_root)!r}; "
            "run the same command again to resume"
        )
        raise typer.Exit(code=code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _executor(opts: RunOptions, n_jobs: int):
    from rankscope.sweep.executors import InlineExecutor, make_executor, terminate_workers

    if opts.scheduler is None and opts.dask_workers is None and (opts.workers <= 1 or n_jobs <= 1):
        yield InlineExecutor()
        return
    try:
        ex = make_executor(
            "process",
            workers=opts.workers,
            scheduler=opts.scheduler,
            dask_workers=opts.dask_workers,
        )
    except (ImportError, ValueError, OSError) as exc:
        raise _usage(str(exc)) from None
    try:
        yield ex
    except BaseException:
        terminate_workers(ex)
        raise
    ex.shutdown(wait=True)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, allow_nan=True) + "\n")


def _claims_text(outcome) -> str:
    """One line per claim: id, verdict, seeds held, headline (the numbers against the test)."""
    from rankscope.report.claims_text import headline, unicode_math

    lines = [
        f"{outcome.experiment} [{outcome.preset}]: {outcome.reused} run(s) reused from the "
        f"store, {outcome.computed} computed"
    ]
    width = max((len(c.claim_id) for c in outcome.claims), default=4)
    for c in outcome.claims:
        tag = c.verdict.upper() + ("" if c.hard else " (trend)")
        seeds = f"{c.seeds_passed}/{c.seeds_total}"
        lines.append(f"  {c.claim_id:<{width}}  {tag:<20} {seeds:>5}  {unicode_math(headline(c))}")
    bad = [r for r, s in outcome.statuses.items() if s != "ok"]
    if bad:
        lines.append(f"  runs not ok: {', '.join(f'{r} ({outcome.statuses[r]})' for r in bad)}")
    return "\n".join(lines)


def summary_line(outcomes, report: str | None = None) -> str:
    """``16 pass, 5 fail, 4 inconclusive across 5 experiments; report: PATH``."""
    claims = [c for o in outcomes for c in o.claims]
    n = {v: sum(c.verdict == v for c in claims) for v in ("pass", "fail", "inconclusive")}
    soft = sum(c.verdict == "fail" and not c.hard for c in claims)
    fails = f"{n['fail']} fail" + (f" ({soft} of them trends)" if soft else "")
    k = len(outcomes)
    line = (
        f"{n['pass']} pass, {fails}, {n['inconclusive']} inconclusive across {k} "
        f"experiment{'s' if k != 1 else ''}"
    )
    failed_runs = sum(s != "ok" for o in outcomes for s in o.statuses.values())
    if failed_runs:
        line += f"; {failed_runs} run(s) not ok"
    return line + (f"; report: {report}" if report else "")


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


def _config_fields(cls, values: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """Config fields with their defaults; nested sub-study configs as ``sub.field``."""
    import typing

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: show them as written
        hints = {}
    out = []
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        hint = hints.get(f.name, f.type)
        sub = hint if isinstance(hint, type) else None
        if sub is not None and dataclasses.is_dataclass(sub) and isinstance(value, dict):
            out.extend(_config_fields(sub, value, prefix=f"{prefix}{f.name}."))
            continue
        type_name = getattr(hint, "__name__", None) or str(hint)
        out.append({"name": f"{prefix}{f.name}", "type": type_name, "default": value})
    return out


@app.command("show")
def show_cmd(
    exp_id: Annotated[str, typer.Argument(help="Experiment id")], as_json: JsonOpt = False
):
    """Print an experiment's config fields with defaults, its presets and its claims."""
    from rankscope.experiments.config import config_to_dict
    from rankscope.report.figures import figures_for

    exp = _experiment(exp_id)
    fields = _config_fields(exp.config_cls, config_to_dict(exp.presets["default"]))
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
        diff = {k: v for k, v in cfg.items() if v != presets["default"].get(k)}
        typer.echo(
            f"preset {name} ({exp.default_seeds(name)} seeds): "
            + (", ".join(f"{k}={v!r}" for k, v in diff.items()) or "(= default)")
        )
    typer.echo("claims:")
    for c in claims:
        typer.echo(f"  {c['id']} [{c['paper']}] {c['statement']}  (expected: {c['expected']})")
    if figs:
        typer.echo("figures: " + ", ".join(f["name"] for f in figs))


@app.command("show-claim")
def show_claim_cmd(
    exp_id: Annotated[str, typer.Argument(help="Experiment id")],
    claim_id: Annotated[str, typer.Argument(help="Claim id, e.g. S2S-1")],
    preset: Annotated[
        str | None, typer.Option("--preset", help="Which preset's evaluation")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A claim's newest stored verdict in full: headline, criterion and every measured number."""
    from rankscope.report.claims_text import headline, measured_lines, unicode_math

    exp = _experiment(exp_id)
    known = [c.id for c in exp.claims]
    if claim_id not in known:
        close = _suggest(claim_id, known)
        hint = f"; did you mean {close!r}?" if close else ""
        raise _usage(f"{exp_id} has no claim {claim_id!r}{hint}; its claims: {known}")
    st = _store(store, create=False)
    with _store_errors():
        latest = st.latest_verdicts(exp_id, preset)
    if latest is None:
        where = f" at preset {preset!r}" if preset else ""
        raise _usage(
            f"no evaluation of {exp_id!r}{where} in store {str(st.root)!r}; "
            f"run `rankscope reproduce {exp_id}` first"
        )
    p, verdicts, run_ids = latest
    c = next((v for v in verdicts if v.get("id") == claim_id), None)
    if c is None:
        raise _usage(f"the stored evaluation of {exp_id} [{p}] has no verdict for {claim_id!r}")
    if as_json:
        _print_json({"experiment": exp_id, "preset": p, "runs": run_ids, **c})
        return
    tag = c["verdict"].upper() + ("" if c.get("hard", True) else " (trend, not a hard check)")
    out = [
        f"{exp_id} [{p}] {claim_id} ({c.get('paper', '')}): {tag}, "
        f"{c['seeds_passed']}/{c['seeds_total']} seeds held",
        f"headline:  {unicode_math(headline(c))}",
        f"statement: {unicode_math(c.get('statement', ''))}",
        f"expected:  {unicode_math(c.get('expected', ''))}",
    ]
    if c.get("note"):
        out.append(f"note:      {c['note']}")
    rows = measured_lines(c.get("measured") or {})
    out.append("measured:" + ("" if rows else " (nothing recorded)"))
    width = max((len(k) for k, _ in rows), default=0)
    out.extend(f"  {k:<{width}}  {v}" for k, v in rows)
    out.append(f"runs: {', '.join(run_ids)}")
    typer.echo("\n".join(out))


def _reproduce(ids: list[str], opts: RunOptions, *, write_report: bool) -> None:
    from rankscope.cli.progress import Progress

    seeds = parse_seeds(opts.seeds)
    _check_counts(None, opts.workers, opts.dask_workers)
    exps = [_experiment(i) for i in ids]
    device = resolve_device(opts.device)
    for e in exps:
        try:
            cfg = e.preset(opts.preset)
            if opts.overrides:
                from rankscope.experiments.config import apply_overrides

                apply_overrides(cfg, opts.overrides)
        except ValueError as exc:
            raise _usage(f"{e.id}: {exc}") from None
    from rankscope.sweep.runner import reproduce_many

    st = _store(opts.store)
    per_exp = len(seeds) if isinstance(seeds, list) else seeds
    n_jobs = sum(per_exp or e.default_seeds(opts.preset) for e in exps)
    progress = Progress(", ".join(ids) if len(ids) <= 3 else f"{len(ids)} experiments")
    with _interruptible(st.root), _store_errors(), _executor(opts, n_jobs) as ex:
        outcomes = reproduce_many(
            exps,
            preset=opts.preset,
            store=st,
            seeds=seeds,
            overrides=opts.overrides or (),
            executor=ex,
            device=device,
            on_event=progress,
        )
    progress.close()
    index = None
    if write_report:
        from rankscope.report import write_experiment_report, write_index

        for o in outcomes:
            o.report = str(write_experiment_report(st, o.experiment, o.preset))
        index = str(write_index(st))
    if opts.as_json:
        payload = [o.as_dict() for o in outcomes]
        _print_json(payload[0] if len(payload) == 1 else payload)
    else:
        for o in outcomes:
            typer.echo(_claims_text(o))
            typer.echo("")
        typer.echo("details of a claim: rankscope show-claim ID CLAIM")
        typer.echo(summary_line(outcomes, index))
    failed_runs = any(s == "failed" for o in outcomes for s in o.statuses.values())
    if any(o.failed for o in outcomes) or failed_runs:
        raise typer.Exit(code=1)


@app.command("run")
@with_run_options()
def run_cmd(exp_id: Annotated[str, typer.Argument(help="Experiment id")], opts: RunOptions) -> None:
    """Run an experiment (skipping runs already stored) and check its claims."""
    _reproduce([exp_id], opts, write_report=False)


@app.command("reproduce")
@with_run_options()
def reproduce_cmd(
    exp_ids: Annotated[list[str] | None, typer.Argument(help="Experiment ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every registered experiment.")] = False,
    *,
    opts: RunOptions,
) -> None:
    """Run experiments, check every claim, and write the HTML report."""
    from rankscope.experiments.registry import all_experiments

    if all_ and exp_ids:
        raise _usage("give experiment ids or --all, not both")
    ids = list(all_experiments()) if all_ else list(exp_ids or [])
    if not ids:
        raise _usage(f"name experiment ids or pass --all; valid ids: {sorted(all_experiments())}")
    _reproduce(ids, opts, write_report=True)


@app.command("sweep")
@with_run_options(skip=("seeds",))
def sweep_cmd(
    exp_id: Annotated[str, typer.Argument(help="Experiment id")],
    grid: Annotated[list[str], typer.Option("--grid", help="key=v1,v2 (repeatable).")],
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per grid point.")] = 1,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", help="A numeric run-summary field to tabulate and plot (repeatable)."
        ),
    ] = None,
    *,
    opts: RunOptions,
) -> None:
    """Run a grid of configs x seeds, then tabulate it; a killed sweep resumes where it stopped."""
    from rankscope.cli.progress import Progress

    _check_counts(seeds, opts.workers, opts.dask_workers, seeds_flag="--seeds (per grid point)")
    exp = _experiment(exp_id)
    device = resolve_device(opts.device)
    from rankscope.experiments.config import apply_overrides, config_to_dict
    from rankscope.sweep.grid import expand_grid, parse_grid

    try:
        base = exp.preset(opts.preset)
        if opts.overrides:
            base = apply_overrides(base, opts.overrides)
        spec = parse_grid(grid)
        configs = expand_grid(base, spec)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    from rankscope.sweep.runner import make_jobs, run_jobs
    from rankscope.sweep.summary import summarize_sweep, sweep_id, write_sweep_manifest

    st = _store(opts.store)
    points = []
    for c in configs:
        flat = _flatten(config_to_dict(c))
        points.append(
            ({k: flat.get(k) for k in spec}, make_jobs(exp, c, list(range(seeds)), "sweep", device))
        )
    jobs = [j for _, js in points for j in js]
    progress = Progress(f"sweep {exp_id}")
    with _interruptible(st.root), _store_errors(), _executor(opts, len(jobs)) as ex:
        run_jobs(jobs, st, executor=ex, on_event=progress)
    progress.close()
    grid_lists = {k: list(v) for k, v in spec.items()}
    try:
        summary = summarize_sweep(
            exp,
            st,
            [(params, [j.run_id for j in js]) for params, js in points],
            preset=opts.preset,
            grid=grid_lists,
            seeds=seeds,
            metrics=metrics or (),
            sweep=sweep_id(exp_id, opts.preset, grid_lists, seeds, opts.overrides or ()),
        )
    except KeyError as exc:
        raise _usage(exc.args[0]) from None
    write_sweep_manifest(st, summary)
    from rankscope.report.sweeps import write_sweep_report

    page = write_sweep_report(st, summary)
    from rankscope.report import write_index

    write_index(st)  # the index lists every sweep
    infos = {r.run_id: r for r in st.runs(exp_id)}
    rows = [
        {
            "run_id": j.run_id,
            "seed": j.seed,
            "status": infos[j.run_id].status,
            "config": params,
        }
        for params, js in points
        for j in js
    ]
    if opts.as_json:
        _print_json(
            {"experiment": exp_id, "sweep": summary.as_dict(), "runs": rows, "report": str(page)}
        )
    else:
        from rankscope.sweep.summary import grid_table_text

        typer.echo(grid_table_text(summary))
        typer.echo(f"report: {page}")
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(code=1)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
    """Write the static HTML report from the store (figures are redrawn only when stale)."""
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
    from rankscope.report import write_experiment_report, write_index, write_run_report

    with _store_errors():
        try:
            if target is None:
                for exp_id, p in st.evaluated():
                    if preset is None or p == preset:
                        write_experiment_report(st, exp_id, p)
                from rankscope.report.sweeps import write_all_sweep_reports

                write_all_sweep_reports(st)
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
    from rankscope.cli.analyze import analyze_command

    app.command("analyze")(analyze_command)


_register_analyze()


def _register_compress() -> None:
    from rankscope.cli.compress import compress_command

    app.command("compress")(compress_command)


_register_compress()
