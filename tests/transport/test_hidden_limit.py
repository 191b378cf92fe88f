"""HiddenLimit (adaptive.py): what a 429 saying remaining > 0 may and may not teach."""

from __future__ import annotations

import asyncio

from close_async._transport.adaptive import HiddenLimit
from close_async._transport.pacer import Window
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock

LIMIT, LENGTH = 100, 1.0


class FixedWindowServer:
    """LIMIT per LENGTH-second window, windows starting at ``start``; answers instantly."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.counts: dict[int, int] = {}
        self.admitted = 0

    def answer(self, now: float) -> tuple[RateLimitInfo, int]:
        k = int((now - self.start) // LENGTH)
        reset = self.start + (k + 1) * LENGTH - now
        n = self.counts.get(k, 0)
        if n >= LIMIT:
            return RateLimitInfo(limit=LIMIT, remaining=0, reset=reset), 429
        self.counts[k] = n + 1
        self.admitted += 1
        return RateLimitInfo(limit=LIMIT, remaining=LIMIT - n - 1, reset=reset), 200


async def drive(w: Window, clock: FakeClock, server: FixedWindowServer, seconds: float) -> None:
    """A crowd of acquirers for ``seconds``: every grant is answered by the server at once."""
    tasks: list[asyncio.Task[int]] = []
    for _ in range(round(seconds / 0.005)):
        while sum(not t.done() for t in tasks) < 50:
            tasks.append(asyncio.get_running_loop().create_task(w.acquire()))
        await clock.settle()
        for t in [t for t in tasks if t.done()]:
            tasks.remove(t)
            if t.cancelled() or t.exception() is not None:
                continue
            info, status = server.answer(clock.now)
            pause = info.reset if status == 429 else None
            w.release(t.result(), info, status=status, pause=pause)
        await clock.advance(0.005)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_a_stray_429_with_remaining_early_in_a_window_does_not_pin_the_limit_for_minutes() -> None:
    asyncio.run(stray_429())


async def stray_429() -> None:
    # One refused by another limit (the organisation's, another key drained it) early in a
    # window: "limit 100, remaining 99". Read as a hidden limit of 1, it pinned the client at
    # 1-2 requests a window for hours (0.5%/s regrowth of a cap of 1).
    with FakeClock(1000.0) as clock:
        w = Window("g")
        server = FixedWindowServer(clock.now - 0.5)
        await drive(w, clock, server, 3.0)  # healthy: ~100 per window
        # Next window: its first request is refused by another limit (the organisation's, another
        # key drained it), with this group's headers: limit 100, remaining 99.
        await clock.advance(server.start + 4 * LENGTH - clock.now + 0.001)
        task = asyncio.get_running_loop().create_task(w.acquire())
        while not task.done():
            await clock.advance(0.005)
        ticket = task.result()
        w.release(
            ticket, RateLimitInfo(limit=LIMIT, remaining=99, reset=0.999), status=429, pause=None
        )
        await clock.advance(60.0)  # a minute later, the organisation's limit long recovered
        before = server.admitted
        await drive(w, clock, server, 5.0)
        sent = server.admitted - before
        # The server allows 500 in these 5 s; the client sent 5-10 on main (cap 1, then 2...).
        assert sent >= 250, (sent, repr(w), repr(w.hidden))


def test_a_429_saying_remaining_over_limit_sets_no_hidden_limit_of_1() -> None:
    hidden = HiddenLimit()
    info, _ = hidden.seen(RateLimitInfo(10, 15, 1.0), 429, 0.0, available=5)
    assert info is not None
    info, _ = hidden.seen(RateLimitInfo(10, 9, 1.0), 200, 60.0, available=8)
    assert info is not None
    assert info.limit == 10, (info, hidden)
