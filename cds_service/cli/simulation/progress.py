"""A progress bar on stderr: orders done, orders per second and the time left.

Drawn only on a terminal (a batch scheduler's log gets the final summary line instead), and at
most five times a second, so that drawing never costs the run anything measurable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

_WIDTH = 30


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        self.total = total
        self.done = 0
        self._stream = stream
        self._enabled = enabled
        self._clock = clock
        self._start = clock()
        self._drawn = float("-inf")
        self._interval = interval

    def rate(self) -> float:
        elapsed = self._clock() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``[#####-----]  1,234/10,000 orders  312 orders/s  0:00:28 left``."""
        fraction = self.done / self.total if self.total else 1.0
        filled = int(_WIDTH * min(1.0, fraction))
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        return (
            f"[{'#' * filled}{'-' * (_WIDTH - filled)}] {self.done:,}/{self.total:,} orders  "
            f"{rate:,.0f} orders/s  {_clock_text(left)} left"
        )

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self._enabled:
            return
        now = self._clock()
        if now - self._drawn >= self._interval or self.done >= self.total:
            self._drawn = now
            self._stream.write("\r" + self.line())
            self._stream.flush()

    def finish(self) -> None:
        if self._enabled:
            self._stream.write("\r" + self.line() + "\n")
            self._stream.flush()
