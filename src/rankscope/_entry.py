"""Console entry point: fixes the thread policy before numpy or torch is imported."""

from __future__ import annotations

import sys


def main() -> None:
    from rankscope import threads

    n = threads.requested_threads(default=1)
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            n = int(sys.argv[i + 1]) if sys.argv[i + 1].isdigit() else n
        elif arg.startswith("--threads="):
            val = arg.split("=", 1)[1]
            n = int(val) if val.isdigit() else n
    threads.set_blas_env(n)
    threads.set_threads(n)
    from rankscope.cli import app

    app()
