"""An import's progress on stderr, shared by ``close-async import`` and ``close-async demo``.

On a terminal: one line redrawn in place, at most 10 times a second, fitted to the terminal's
width::

    [##########---------] 1200/2000  1195 created, 2 failed, 3 unknown  331/s  ETA 0:02

Elsewhere (a log, a pipe, CI): a plain line every 2 seconds and a last one at the end. Quiet:
nothing.

The rate counts only rows this run finished: rows skipped as created by an earlier run (a
resume skips thousands in a second) do not inflate it. It is measured over the last 10 seconds,
so a pause for a rate limit shows in the ETA, and the ETA stays ``--`` until a second has passed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .import_summary import ImportSummary

_REDRAW = 0.1  # seconds between redraws of the bar
_PLAIN_EVERY = 2.0  # seconds between plain lines
_RATE_WINDOW = 10.0  # the rate is measured over this many seconds
_MIN_SPAN = 1.0  # no rate (nor ETA) before this many seconds of samples


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` is on: ``$COLUMNS`` if set, else the size of that
    stream's own terminal (stdout may be a pipe while stderr is the screen), else 80."""
    with contextlib.suppress(KeyError, ValueError):
        return int(os.environ["COLUMNS"])
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # not a real file, or not a terminal
        columns = 0
    return columns or shutil.get_terminal_size().columns  # 0: a terminal that has no size set


def duration(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Called with the running ``ImportSummary`` after each row; ``finish()`` at the end."""

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        tty: bool | None = None,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._width = width
        self._clock = clock
        self._started = clock()
        self._samples: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._last_draw = -float("inf")
        self._drawn = 0  # length of the bar line on screen
        self._summary: ImportSummary | None = None

    def __call__(self, summary: ImportSummary) -> None:
        self._summary = summary
        now = self._clock()
        if now - self._last_draw >= (_REDRAW if self.tty else _PLAIN_EVERY):
            self._last_draw = now
            self._sample(now, summary)
            self._show(summary)

    def finish(self) -> None:
        """Show the final counts (and end the bar's line). Safe to call more than once."""
        summary, self._summary = self._summary, None
        if summary is not None:
            self._sample(self._clock(), summary)
            self._show(summary, final=True)
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    def rate(self) -> float | None:
        """Rows finished by this run per second over the last 10 s, or None (too early)."""
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 >= _MIN_SPAN else None

    def _sample(self, now: float, summary: ImportSummary) -> None:
        finished = _done(summary) - summary.skipped
        self._samples.append((now, finished))
        while len(self._samples) > 2 and now - self._samples[1][0] >= _RATE_WINDOW:
            self._samples.popleft()

    def _show(self, summary: ImportSummary, *, final: bool = False) -> None:
        if self.quiet:
            return
        done, rate = _done(summary), self.rate()
        elapsed = self._samples[-1][0] - self._started
        if rate is None and final and elapsed > 0:  # a short run: its average
            rate = (_done(summary) - summary.skipped) / elapsed
        left = max(0, self.total - done)
        speed = "--/s" if rate is None else f"{rate:.0f}/s"
        eta = duration(left / rate) if rate else ("0:00" if not left else "--")
        counts = (
            f"{summary.created} created, {len(summary.failed)} failed, "
            f"{len(summary.unknown)} unknown"
        )
        if summary.skipped:
            counts += f", {summary.skipped} already created"
        if not self.tty:
            self.stream.write(f"progress: {done}/{self.total} rows, {counts}, {speed}, ETA {eta}\n")
            self.stream.flush()
            return
        text = f" {done}/{self.total}  {counts}  {speed}  ETA {eta}"
        width = (self._width or terminal_width(self.stream)) - 1
        room = width - len(text) - 2
        if room >= 10:
            filled = room * min(done, self.total) // self.total if self.total else room
            text = f"[{'#' * filled}{'-' * (room - filled)}]{text}"
        line = text[:width]
        self.stream.write("\r" + line.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(line)


def _done(summary: ImportSummary) -> int:
    return summary.created + summary.skipped + len(summary.failed) + len(summary.unknown)
