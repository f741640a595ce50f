"""A dependency-free progress bar on stderr: count, files/s and MB/s.

On a terminal the bar redraws in place (at most ``min_interval`` apart); on a pipe or a log file
it writes a plain line every ``line_interval`` seconds instead, so captured output stays short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

MB = 1e6


def human_bytes(n: float) -> str:
    """Decimal units, like ``du --si``: 950 B, 12.3 kB, 96.1 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress over ``total`` items (files) that carry a byte count each."""

    def __init__(self, total: int, unit: str = "files", stream: TextIO | None = None,
                 enabled: bool = True, min_interval: float = 0.1, line_interval: float = 10.0,
                 width: int = 24, clock=time.perf_counter):
        self.total = total
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.tty = enabled and bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval
        self.line_interval = line_interval
        self.width = width
        self._clock = clock
        self.done = 0
        self.nbytes = 0
        self.start = clock()
        # a terminal shows the bar at once; a pipe gets its first line after line_interval
        self._last_draw = -float("inf") if self.tty else self.start
        self._drawn = False

    # -- numbers -------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return self._clock() - self.start

    def rates(self) -> tuple[float, float]:
        """(items/s, MB/s) averaged since the start."""
        elapsed = max(self.elapsed(), 1e-9)
        return self.done / elapsed, self.nbytes / MB / elapsed

    def line(self) -> str:
        """The status line as it is drawn, without control characters."""
        per_s, mb_s = self.rates()
        frac = self.done / self.total if self.total else 1.0
        filled = round(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        text = (f"[{bar}] {self.done}/{self.total} {self.unit} {frac * 100:3.0f}% | "
                f"{per_s:.1f} {self.unit}/s | {mb_s:.1f} MB/s")
        if 0 < self.done < self.total and per_s > 0:
            text += f" | ETA {_hms((self.total - self.done) / per_s)}"
        return text

    # -- drawing -------------------------------------------------------------------------------

    def advance(self, n: int = 1, nbytes: int = 0) -> None:
        self.done += n
        self.nbytes += nbytes
        self._maybe_draw(final=self.done >= self.total)

    def _maybe_draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        now = self._clock()
        interval = self.min_interval if self.tty else self.line_interval
        if not final and now - self._last_draw < interval:
            return
        if not self.tty and final:
            return  # the caller prints a summary; a pipe needs no final bar
        self._last_draw = now
        if self.tty:
            self.stream.write("\r" + self.line() + "\x1b[K")
            self._drawn = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """Print a message line (a warning) without garbling the bar."""
        if self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(message + "\n")
        if self.tty and self._drawn:
            self.stream.write(self.line() + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar's line so that what follows starts on a fresh line."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
