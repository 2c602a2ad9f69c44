"""rankscope.report: figures and static HTML built from stored records (pure consumers)."""

from rankscope.report.html import (
    render_figures,
    write_experiment_report,
    write_index,
    write_run_report,
)

__all__ = ["render_figures", "write_experiment_report", "write_index", "write_run_report"]
