"""A one-line progress bar on stderr, shown only on a terminal (never in logs or pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30
_MIN_INTERVAL = 0.1


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < _MIN_INTERVAL and done < self.total):
            return
        self._last = now
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * _WIDTH)
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction:4.0%} "
            f"{_human(done)}/{_human(self.total)} {_human(rate)}/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
