"""A small stderr progress display driven by the runner's events (no dependency)."""

from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Renders runner events as a one-line bar on stderr (plain lines when not a TTY)."""

    def __init__(self, label: str, *, quiet: bool = False, stream=None):
        self.label = label
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = 0
        self.done = 0
        self.fraction = 0.0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def _write(self, text: str, *, final: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self) -> str:
        todo = max(self.total, 1)
        frac = min((self.done + self.fraction) / todo, 1.0)
        width = 24
        filled = round(frac * width)
        elapsed = time.perf_counter() - self.t0
        return (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} runs  {elapsed:6.1f}s"
        )

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "plan":
            self.total = info["total"] - info["cached"]
            if info["cached"]:
                self._write(
                    f"{self.label}: {info['cached']} run(s) already in the store", final=True
                )
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
            msg = self._bar()
            if status != "ok":
                err = (info.get("error") or "").strip().splitlines()
                msg += f"  seed {info['seed']}: {status}" + (f" ({err[-1]})" if err else "")
                self._write(msg, final=True)
            elif self.tty:
                self._write(msg)
            else:
                self._write(msg, final=True)
        elif kind == "claims":
            self._write(self._bar() + "  checking claims", final=True)
