"""A small stderr progress display driven by the runner's events (no dependency).

On a terminal: one live bar, redrawn in place (runs done, the fraction of the run in flight,
elapsed time, and what is happening now). Elsewhere (a log file, CI, a pipe): a few lines
only, when a quarter of the runs is done, and one per run that did not finish ``ok``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

_MILESTONES = (0.25, 0.5, 0.75, 1.0)


class Progress:
    """Renders runner events on stderr: a live bar on a TTY, a few plain lines otherwise."""

    def __init__(self, label: str, *, quiet: bool = False, stream=None, tty: bool | None = None):
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        if tty is None:
            tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.tty = bool(tty)
        self.total = 0
        self.done = 0
        self.fraction = 0.0
        self.stage = ""
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._next_milestone = 0
        self._live = False

    def _write(self, text: str, *, final: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
            self._live = not final
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self) -> str:
        todo = max(self.total, 1)
        frac = min((self.done + self.fraction) / todo, 1.0)
        width = 24
        filled = round(frac * width)
        elapsed = time.perf_counter() - self.t0
        stage = f"  {self.stage}" if self.stage else ""
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} runs  {elapsed:6.1f}s{stage}"
        )

    def _plain_milestones(self) -> None:
        """Without a terminal: one line each time another quarter of the runs is done."""
        crossed = False
        while (
            self._next_milestone < len(_MILESTONES)
            and self.total
            and (self.done >= _MILESTONES[self._next_milestone] * self.total - 1e-9)
        ):
            self._next_milestone += 1
            crossed = True
        if crossed:
            elapsed = time.perf_counter() - self.t0
            self._write(f"{self.label}: {self.done}/{self.total} runs done ({elapsed:.1f} s)")

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "plan":
            self.total = info["total"] - info["cached"]
            if info["cached"]:
                self._write(
                    f"{self.label}: {info['cached']} run(s) already in the store, "
                    f"{self.total} of {info['total']} to compute",
                    final=True,
                )
            elif self.total and not self.tty:
                self._write(f"{self.label}: {self.total} run(s) to compute")
        elif kind == "start":
            self.stage = f"seed {info.get('seed', '?')}"
            if self.tty:
                self._write(self._bar())
        elif kind == "progress":
            self.fraction = float(info["fraction"])
            now = time.perf_counter()
            if self.tty and now - self._last > 0.2:
                self._last = now
                self._write(self._bar())
        elif kind == "done":
            self.done = info["finished"]
            self.fraction = 0.0
            status = info["status"]
            if status != "ok":
                err = (info.get("error") or "").strip().splitlines()
                msg = f"{self.label}: seed {info['seed']} {status}" + (
                    f" ({err[-1]})" if err else ""
                )
                if self.tty:
                    self._write(msg, final=True)
                    self._write(self._bar())
                else:
                    self._write(msg)
            if self.tty:
                self._write(self._bar())
            else:
                self._plain_milestones()
        elif kind == "claims":
            self.stage = f"checking claims of {info.get('experiment', '')}"
            if self.tty:
                self._write(self._bar())

    def close(self) -> None:
        """End the live bar with a newline (nothing to do without a terminal)."""
        if self.tty and self._live and not self.quiet:
            self.stage = "done"
            self._write(self._bar(), final=True)
