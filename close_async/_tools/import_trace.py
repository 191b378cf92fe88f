"""When an import's request really leaves: the client's own word, never a guess of ours.

The journal writes ``sending`` from ``on_send``, before each attempt goes on the wire, so the
record is on disk before a byte can leave (and a full disk stops the request). The client then
says what the attempt became (``on_sent``, from the moment ``RequestBody`` hands a body byte
to the socket: the same fact its ``may_have_succeeded`` rests on): it was written (``left``:
from now on the outcome may be unknown), or it ended having created nothing (never written:
refused, DNS, a pooled connection the client would not use; or Close answered 429). In the last
case the row is recorded ``waiting``: an import killed while that row backs off or waits out the
429 sends it again on the next run, instead of calling it unknown.

aiohttp's trace signals are not used: ``on_request_headers_sent`` fires before anything is
written, so a request the client then refused looked "left".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .journal import JournalWriteError

if TYPE_CHECKING:
    from .journal import Journal


class SendTracker:
    """Which rows' requests are out (``left``) and which were announced but never left."""

    def __init__(self, journal: Journal | None) -> None:
        self.journal = journal
        self.error: JournalWriteError | None = None
        self._out: dict[int, bool] = {}  # announced line -> whether its attempt has left

    def leaving(self, line: int) -> None:
        """Called from ``on_send``: the next attempt of ``line`` is about to go on the wire."""
        self._out[line] = False

    def sent(self, line: int, sent: bool) -> None:
        """Called from ``on_sent``: that attempt was written (True) or created nothing."""
        if sent:
            if line in self._out:
                self._out[line] = True
        else:
            self._never_sent(line)

    def finished(self, line: int) -> None:
        self._out.pop(line, None)

    def left(self, line: int) -> bool:
        return self._out.get(line, False)

    def announced(self, line: int) -> bool:
        return line in self._out

    def _never_sent(self, line: int) -> None:
        if line not in self._out:
            return
        self.finished(line)
        if self.journal is None:
            return
        try:
            self.journal.record(line, "waiting")
        except JournalWriteError as exc:
            self.error = exc
