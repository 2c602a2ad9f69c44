"""Console entry point: fixes the thread policy before numpy or torch is imported."""

from __future__ import annotations

import sys


def main() -> None:
    from rankscope import threads

    try:
        n = threads.requested_threads(default=1)
    except ValueError as exc:
        sys.stderr.write(f"rankscope: {exc}\n")
        raise SystemExit(2) from None
    for i, arg in enumerate(sys.argv):
        raw = None
        if arg == "--threads" and i + 1 < len(sys.argv):
            raw = sys.argv[i + 1]
        elif arg.startswith("--threads="):
            raw = arg.split("=", 1)[1]
        if raw is not None:
            if not raw.isdigit() or int(raw) < 1:
                sys.stderr.write(f"rankscope: --threads must be an integer >= 1, got {raw!r}\n")
                raise SystemExit(2)
            n = int(raw)
    # Environment only: torch reads OMP_NUM_THREADS for its intra-op pool and the BLAS
    # libraries read theirs when they load, so nothing heavy is imported here (a command
    # that needs torch imports it itself; --help and --version never do).
    threads.set_blas_env(n)
    from rankscope.cli import app

    app()
