"""When an import's request really leaves, seen from the client's own request body.

The journal writes ``sending`` from ``on_send``, before each attempt connects, so the record is
on disk before a byte can leave (and a full disk stops the request). The attempt then reports,
through ``_outcome.WATCH``, what it became: its body was handed to the socket (``left``: from now
on the outcome may be unknown), or it ended before that (refused, DNS, no free connection), or
Close answered 429. In the last two cases nothing was created and the row is recorded
``waiting``: an import killed while that row backs off or waits out the 429 sends it again on the
next run, instead of calling it unknown.

A pooled connection refused before writing (closing, idle past its keep-alive) is retried at once
on another inside the same attempt: it is not an ending, so the row stays announced and the
re-send counts as leaving. The watch works with any session, the caller's own included (aiohttp
trace signals, used before, needed the client's session and cost ~20 us of CPU per row).

The watch travels in a context variable: ``on_send`` and the attempt run in the same task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._journal import JournalWriteError
from ._outcome import WATCH

if TYPE_CHECKING:
    from ._journal import Journal


class SendTracker:
    """Which rows' requests are out (``left``) and which were announced but never left."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal
        self.error: JournalWriteError | None = None
        self._announced: set[int] = set()
        self._left: set[int] = set()

    def leaving(self, line: int) -> None:
        """Called from ``on_send``: this task's next attempt is for ``line``."""
        WATCH.set(_Attempt(self, line))
        self._announced.add(line)
        self._left.discard(line)

    def finished(self, line: int) -> None:
        self._announced.discard(line)
        self._left.discard(line)

    def left(self, line: int) -> bool:
        return line in self._left

    def announced(self, line: int) -> bool:
        return line in self._announced

    def _never_sent(self, line: int) -> None:
        if line not in self._announced:
            return
        self.finished(line)
        if self.journal is None:
            return
        try:
            self.journal.record(line, "waiting")
        except JournalWriteError as exc:
            self.error = exc


class _Attempt:
    """One attempt of one row's request (an ``_outcome.AttemptWatch``)."""

    __slots__ = ("line", "tracker")

    def __init__(self, tracker: SendTracker, line: int) -> None:
        self.tracker = tracker
        self.line = line

    def written(self) -> None:
        if self.line in self.tracker._announced:
            self.tracker._left.add(self.line)

    def ended(self, status: int | None, sent: bool) -> None:
        if status == 429 or not sent:
            self.tracker._never_sent(self.line)
