"""When an import's request really leaves, seen from aiohttp's own trace signals.

The journal writes ``sending`` from ``on_send``, before each attempt connects, so the record is
on disk before a byte can leave (and a full disk stops the request). aiohttp then says what the
attempt became: its headers went out (``left``: from now on the outcome may be unknown), or it
failed before that (refused, DNS, no free connection), or Close answered 429. In the last two
cases nothing was created and the row is recorded ``waiting``: an import killed while that row
backs off or waits out the 429 sends it again on the next run, instead of calling it unknown.

The row an attempt belongs to travels in a context variable: ``on_send`` and the trace callbacks
run in the same task, one request at a time.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import aiohttp

from ._journal import JournalWriteError

if TYPE_CHECKING:
    from ._client import AsyncCloseClient
    from ._journal import Journal

_row: ContextVar[int] = ContextVar("close_async_import_row", default=0)


class SendTracker:
    """Which rows' requests are out (``left``) and which were announced but never left."""

    def __init__(self, journal: Journal | None, client: AsyncCloseClient | None) -> None:
        self.journal = journal
        self.error: JournalWriteError | None = None
        self._announced: set[int] = set()
        self._left: set[int] = set()
        config = aiohttp.TraceConfig()
        config.on_request_headers_sent.append(self._headers_sent)
        config.on_request_end.append(self._end)
        config.on_request_exception.append(self._exception)
        # Without the traces (a caller's own session), every announced attempt counts as out.
        self.traced = client is not None and client._add_trace_config(config)

    def leaving(self, line: int) -> None:
        """Called from ``on_send``: this task's next request is for ``line``."""
        _row.set(line)
        self._announced.add(line)
        self._left.discard(line)

    def finished(self, line: int) -> None:
        self._announced.discard(line)
        self._left.discard(line)

    def left(self, line: int) -> bool:
        return line in self._left or (not self.traced and line in self._announced)

    def announced(self, line: int) -> bool:
        return line in self._announced

    async def _headers_sent(self, session: Any, ctx: Any, params: Any) -> None:
        line = _row.get()
        if line in self._announced:
            self._left.add(line)

    async def _end(self, session: Any, ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        if params.response.status == 429:
            self._never_sent(_row.get())

    async def _exception(self, session: Any, ctx: Any, params: Any) -> None:
        line = _row.get()
        if line not in self._left:
            self._never_sent(line)

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
