"""The queue of one group's window: who waits for its turn, and the one timer that wakes them.

``pacer.Window`` has this as a base class and decides when a request may go (``_can_send``,
``_grant``) and when time alone could let the next one go (``_schedule``, which arms
``_timer`` and calls ``_refuse``); this module only hands out the turns:

- ``aclose()`` fails every queued waiter at once (``Pacer.fail``): no task per wait.
- A wait longer than ``max_wait`` (the client's ``max_retry_wait``) is not sat out: every
  request waiting for it, queued or arriving later, raises ``RateLimitError`` with
  ``.retry_after`` at once, until the wait has passed.

Waiters are served first come, first served from a deque, with one timer for the next time-based
wake-up, so 10,000 queued requests cost O(1) per grant; a cancelled waiter is skipped when reached.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from .adaptive import too_long

logger = logging.getLogger("close_async")


class WaitQueue:
    """The requests waiting for one window's turn, first come, first served."""

    # The window's own (``pacer.Window``), called here.
    group: str
    _can_send: Callable[[], bool]
    _grant: Callable[[], int]
    give_back: Callable[[int], None]
    _schedule: Callable[[], None]

    def __init__(self, max_wait: float) -> None:
        self.max_wait = max_wait
        self._waiters: collections.deque[asyncio.Future[int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def try_acquire(self) -> int | None:
        """A ticket at once if the window allows one more request now, else None."""
        if not self._waiters and self._can_send():
            return self._grant()
        return None

    async def acquire(self) -> int:
        """Wait until the window allows one more request; returns its ticket for :meth:`release`."""
        if not self._waiters and self._can_send():
            return self._grant()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        # _wake, not just _schedule: the queue may be free to go already (a pause just ended
        # and its timer has not run yet); arming nothing would leave it waiting forever.
        self._wake()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.give_back(fut.result())  # granted, then cancelled before it could send
            else:
                self._wake()  # a cancelled waiter still queued is skipped when reached (O(1))
            raise

    def _wake(self) -> None:
        while self._waiters and (self._waiters[0].done() or self._can_send()):
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(self._grant())
        self._schedule()

    def _refuse(self, wait: float) -> None:
        """The queue would wait longer than ``max_wait``: every waiter raises now, with the wait."""
        logger.debug("%s: the server asks for %.3fs, over max_wait: refusing", self.group, wait)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(too_long(wait, self.max_wait))

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()

    def fail(self, error: Callable[[], BaseException]) -> None:
        """Every waiter raises an ``error()`` of its own now (the client was closed): so a
        request awaits :meth:`acquire` directly, with no task for a close to cancel (as
        ``slots.Slots.fail``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(error())
