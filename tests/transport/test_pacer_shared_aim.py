"""Where a shared window's spread aims (pacer_window's "Others' admissions"): at the earliest
end proven, so that no window's budget is left for after its real end; on the fake clock."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from close_async._transport.pacer import Window
from close_async._transport.pacer_window import _MARGIN
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock
from tests.support.pacer import admissions, answer, cancel_all, spawn


def whole(remaining: int, reset: float = 1.0, limit: int = 10) -> RateLimitInfo:
    """A report with a whole-second reset (maybe rounded up, as live Close sends them)."""
    return RateLimitInfo(limit, remaining, reset, True)


async def test_a_shared_window_spends_its_budget_before_the_earliest_end_a_window_before_proves(
    clock: FakeClock,
) -> None:
    # Window 0 runs at least until t0 + 0.85 (a request sent then was counted in it) and, a
    # whole-second window, lasts 1 s: window 1 ends at t0 + 1.85 or later. Its latest end, the
    # roll plus a second, lies 0.15 s after that: aimed at it, the spread left 15% of the
    # budget for after the real end (the ``shared`` fan-out: 6-14 of 200 unused).
    t0 = clock.now
    w = Window("g")
    answer(w, await w.acquire(), whole(9))  # our probe, alone
    a = await w.acquire()
    await clock.advance(0.1)
    answer(w, a, whole(5))  # 3 admissions not ours: shared
    assert w.shared
    await clock.advance(0.75)
    b = await w.acquire()  # sent at t0 + 0.85, counted in window 0
    await clock.advance(0.01)
    answer(w, b, whole(0))  # the others spent the rest
    roll = w.reset_at
    assert roll == pytest.approx(t0 + 1.0 + _MARGIN)  # no proof of an earlier end
    await clock.advance(roll + 0.01 - clock.now)
    first = await w.acquire()  # at once: the first of window 1
    await clock.advance(0.01)
    answer(w, first, whole(7))  # window 1: 2 of others' already
    times = await admissions(w, clock, 7, t0 + 3.0)
    assert len(times) == 7  # the whole budget...
    assert times[-1] < t0 + 1.85  # ...before the earliest end window 0 proved
    assert len(set(times)) > 1  # spread, not a burst


class _Server:
    """A fixed window of ``limit`` per second with whole-second resets, its windows starting
    mid-second for the client; another key sends ``others`` a window into the first
    ``others_for`` windows, evenly (admitted while the window has room, as ours)."""

    def __init__(self, limit: int, start: float, others: int, others_for: int) -> None:
        self.limit, self.start = limit, start
        self.others, self.others_for = others, others_for
        self.counted: dict[int, int] = {}  # admissions by window, ours and the other key's
        self._theirs_sent: dict[int, int] = {}
        self.refused = 0

    def serve(self, now: float) -> tuple[int, RateLimitInfo]:
        index = math.floor(now - self.start)
        if index < self.others_for:  # the other key's requests that arrived before ours
            due = math.floor((now - self.start - index) * self.others)
            arrived = due - self._theirs_sent.get(index, 0)
            self._theirs_sent[index] = due
            room = self.limit - self.counted.get(index, 0)
            self.counted[index] = self.counted.get(index, 0) + max(0, min(arrived, room))
        used = self.counted.get(index, 0)
        reset = float(math.ceil(self.start + index + 1 - now))
        if used >= self.limit:
            self.refused += 1
            return 429, RateLimitInfo(self.limit, 0, reset, True)
        self.counted[index] = used + 1
        return 200, RateLimitInfo(self.limit, self.limit - used - 1, reset, True)


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
async def test_a_key_left_alone_on_a_shared_limit_fills_every_window_to_the_last(
    clock: FakeClock, seed: int
) -> None:
    # Another key takes half the limit for 3 windows, then has no more to send; ours fans
    # out 7 windows' worth of the rest. Every window after the first (begun before our first
    # request) must be full up to our last: the spread aimed at the latest end, a round trip
    # per roll late, and left 4-8 of 40 of each window ours spent alone for after its end.
    limit = 40
    loop, rnd = asyncio.get_running_loop(), random.Random(seed)
    server = _Server(limit, start=clock.now - 0.37, others=limit // 2, others_for=3)
    w = Window("a")
    done: list[float] = []

    async def create() -> None:
        while True:
            ticket = await w.acquire()
            await asyncio.sleep(rnd.uniform(0.005, 0.02))  # on its way
            status, info = server.serve(loop.time())
            await asyncio.sleep(rnd.uniform(0.005, 0.02))  # the answer on its way back
            w.release(ticket, info, status=status, pause=info.reset if status == 429 else None)
            if status != 429:
                done.append(loop.time())
                return

    n = 7 * limit - 3 * limit // 2
    tasks = [spawn(create()) for _ in range(n)]
    await clock.advance(12.0, rounds=8)
    await cancel_all(tasks)
    assert len(done) == n
    assert w.shared
    last = math.floor(max(done) - server.start)
    full = range(1, last)
    assert [server.counted.get(i, 0) for i in full] == [limit] * len(full)
    assert server.refused <= 0.03 * n
