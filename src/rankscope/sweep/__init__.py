"""rankscope.sweep: grids, executors (inline, process pool, Dask) and the run driver."""

from rankscope.sweep.executors import InlineExecutor, make_executor
from rankscope.sweep.grid import expand_grid, parse_grid
from rankscope.sweep.runner import (
    Job,
    Outcome,
    make_jobs,
    reproduce,
    reproduce_many,
    run_experiment,
    run_jobs,
)

__all__ = [
    "InlineExecutor",
    "Job",
    "Outcome",
    "expand_grid",
    "make_executor",
    "make_jobs",
    "parse_grid",
    "reproduce",
    "reproduce_many",
    "run_experiment",
    "run_jobs",
]
