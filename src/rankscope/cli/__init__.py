"""The ``rankscope`` command line: list, show, run, reproduce, sweep, report, analyze.

The only layer that prints. Progress goes to stderr; with ``--json`` stdout carries exactly
one JSON document. Exit codes: 0 success (no hard claim failed), 1 a hard claim failed or a
run failed, 2 a usage error (unknown id, bad ``--set``, bad path).
"""

from __future__ import annotations

from rankscope.cli.app import app

__all__ = ["app"]
