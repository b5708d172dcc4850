"""A console progress bar for long steps that run on the driver (ingest, uploads).

Spark stages keep Spark's own console progress; this covers the local work around them. On a
terminal the bar redraws one line on standard error; when standard error is a file or a pipe
(logs, CI, Oozie) it writes one plain line at every tenth of the way instead, so that logs
stay short and readable.
"""
from __future__ import annotations

import sys
import threading
import time

WIDTH = 30


class ProgressBar:
    """Count ``total`` units of work under a ``label``.

    >>> with ProgressBar("ingest train", 60000) as bar:
    ...     for image in images:
    ...         write(image)
    ...         bar.advance()

    ``advance`` may be called from several threads. A total of 0 shows nothing.
    """

    def __init__(self, label: str, total: int, stream=None, unit: str = "files",
                 redraw_s: float = 0.2):
        self.label, self.total, self.unit = label, max(0, int(total)), unit
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.redraw_s = redraw_s
        self.done = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._tenths_shown = 0
        self._lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.close(finished=kind is None)

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done = min(self.total, self.done + count)
            if self.interactive:
                now = time.monotonic()
                if now - self._drawn_at >= self.redraw_s or self.done == self.total:
                    self._drawn_at = now
                    self.stream.write("\r" + self.line())
                    self.stream.flush()
            elif self.total:
                tenths = self.done * 10 // self.total
                if tenths > self._tenths_shown:
                    self._tenths_shown = tenths
                    self.stream.write(self.line() + "\n")
                    self.stream.flush()

    def close(self, finished: bool = True) -> None:
        """End the bar's line; an interrupted bar is left showing how far it got."""
        if self.interactive and self.total:
            self.stream.write("\r" + self.line() + ("\n" if finished else " (stopped)\n"))
            self.stream.flush()

    def line(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(fraction * WIDTH))
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = f", {_clock(left)} left" if left is not None and self.done < self.total else ""
        return (f"{self.label} [{'#' * filled}{'.' * (WIDTH - filled)}] "
                f"{self.done}/{self.total} {self.unit} {fraction:4.0%} "
                f"({rate:,.0f}/s{eta})")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
