"""``FakeClock``: the running loop's clock, frozen and moved by hand."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from contextvars import Context
from typing import Any


class FakeClock:
    """Take over the running loop's clock: ``loop.time()`` returns ``now``, which only moves
    when the test says so.

    Shadowing the bound methods with instance attributes is enough: asyncio's event loop asks
    ``self.time()`` when deciding which ``call_at`` handles are due (and how long to block in
    select), and ``call_later``/``asyncio.sleep`` go through ``self.call_at``. ``call_at`` is
    wrapped only to learn the deadlines, so ``advance()`` can stop at each one in order.

    Caveat: asyncio runs a timer once it is due within the clock resolution (1 ns). Parking the
    frozen clock less than that before a deadline makes code that re-checks the time (like
    TokenBucket) re-arm its timer on every loop iteration until the clock moves again.
    """

    def __init__(self, start: float | None = None) -> None:
        # None: start at the loop's real time, so timers armed before install, or left behind
        # after uninstall, keep their meaning.
        self.start = start
        self.now = 0.0
        self.armed = 0  # number of call_at/call_later calls while installed
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._seq = itertools.count()

    def __enter__(self) -> FakeClock:
        self.loop = loop = asyncio.get_running_loop()
        self.now = loop.time() if self.start is None else self.start
        real_call_at = loop.call_at

        def call_at(
            when: float,
            callback: Callable[..., object],
            *args: Any,
            context: Context | None = None,
        ) -> asyncio.TimerHandle:
            handle = real_call_at(when, callback, *args, context=context)
            heapq.heappush(self._timers, (when, next(self._seq), handle))
            self.armed += 1
            return handle

        setattr(loop, "time", lambda: self.now)  # noqa: B010 (mypy forbids assigning methods)
        setattr(loop, "call_at", call_at)  # noqa: B010
        return self

    def __exit__(self, *exc_info: object) -> None:
        delattr(self.loop, "time")
        delattr(self.loop, "call_at")

    def pending(self) -> list[float]:
        """Deadlines of timers that are armed and not yet due."""
        return sorted(w for w, _, h in self._timers if w > self.now and not h.cancelled())

    async def settle(self, rounds: int = 4) -> None:
        """Let ready callbacks, due timers and the tasks they wake run, without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, rounds: int = 4) -> None:
        """Move time forward, stopping at every timer deadline on the way, so each callback
        sees ``loop.time()`` equal to its deadline, as with a real (but instant) clock.
        ``rounds`` loop iterations are run at each stop (see ``settle``)."""
        target = self.now + seconds
        timers = self._timers
        while True:
            await self.settle(rounds)  # first, so timers armed by tasks that just started are known
            while timers and (timers[0][0] <= self.now or timers[0][2].cancelled()):
                heapq.heappop(timers)  # already due (so already run by settle) or cancelled
            if not timers or timers[0][0] > target:
                break
            self.now = timers[0][0]
        self.now = target
        await self.settle(rounds)

    async def jump(self, seconds: float) -> None:
        """Move time forward in one go, like a loop that was blocked: every overdue timer then
        runs in the same iteration, in deadline order."""
        self.now += seconds
        await self.settle()


T0 = 1000.0  # fake start time: round, so that deadlines in assertions read easily
