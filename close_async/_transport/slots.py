"""Requests in flight at once: a first-come, first-served gate lighter than asyncio.Semaphore.

The client holds one slot per request from before it takes a rate-limit token until its response
is read, so tokens and pacing budget go only to requests that can leave at once (and ``on_send``
fires when a request really leaves, not when it starts queueing for a connection)::

    if not slots.try_take():
        await slots.take()
    try:
        ...  # send the request
    finally:
        slots.give()

It is on every request's path: taking a free slot is a plain call (no coroutine, no future), and
a slot given back goes straight to the oldest waiter. ``asyncio.Semaphore`` cost about 2% of a
create's CPU in the bulk benchmark's profile (waiter bookkeeping, an ``async with`` per call).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["Slots"]


class Slots:
    """At most ``size`` holders at once; those that wait are served in arrival order."""

    __slots__ = ("_free", "_waiters", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size!r}")
        self.size = size
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        waiting = sum(not fut.done() for fut in self._waiters)  # cancelled ones leave lazily
        return f"<Slots free={self._free}/{self.size} waiters={waiting}>"

    @property
    def free(self) -> int:
        return self._free

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is queued before us."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot (call :meth:`try_take` first: this always queues when it fails)."""
        if self.try_take():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.give()  # handed a slot, then cancelled before using it: pass it on
            # (failed by fail(), then cancelled: it never held one; its error is retrieved)
            raise  # cancelled while queued: give() skips the cancelled future

    def fail(self, error: Callable[[], BaseException]) -> None:
        """Every waiter raises an ``error()`` of its own now (the client was closed).

        So a client awaits ``take()`` directly, with no task for a close to cancel: that task,
        made for every create that queued, was 4.4% of a bulk create's instructions
        (1,286,148 -> 1,229,899 per create, client and server, ``benchmarks/bulk_cpu.py``)."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_exception(error())

    def give(self) -> None:
        """Give a slot back: to the oldest waiter still waiting, else to the free pool."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
