"""A whole-second window's latest end, carried a window on at each roll (pacer_window's
"Whole-second resets"): it must not drift later window by window; on the fake clock."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from close_async._transport.pacer import Window
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock
from tests.support.pacer import cancel_all, spawn


class _Fixed:
    """A fixed window of ``limit`` a second, starting ``start``, its resets rounded up to
    whole seconds (``reset=1`` all through a window): only the first report's answer bounds
    where a window ends."""

    def __init__(self, limit: int, start: float) -> None:
        self.limit, self.start = limit, start
        self.counted: dict[int, int] = {}

    def serve(self, now: float) -> tuple[int, RateLimitInfo]:
        index = math.floor(now - self.start)
        used = self.counted.get(index, 0)
        reset = float(math.ceil(self.start + index + 1 - now))
        if used >= self.limit:
            return 429, RateLimitInfo(self.limit, 0, reset, True)
        self.counted[index] = used + 1
        return 200, RateLimitInfo(self.limit, self.limit - used - 1, reset, True)

    def end_of(self, at: float) -> float:
        return self.start + math.floor(at - self.start) + 1


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
async def test_a_whole_second_window_s_latest_end_does_not_drift_later_roll_by_roll(
    clock: FakeClock, seed: int
) -> None:
    # Each roll carried the passed window's latest end a second on plus the rounding margin
    # again: 2 ms later a window, so after ~30 windows the bounds lay a tenth of a window
    # apart and a shared window's spread fell back to its latest end (a 6,000-create shared
    # fan-out: 0.968 of the rate).
    loop, rnd = asyncio.get_running_loop(), random.Random(seed)
    server = _Fixed(20, clock.now - 0.37)
    w = Window("g")
    lateness: list[float] = []

    async def create() -> None:
        while True:
            ticket = await w.acquire()
            await asyncio.sleep(rnd.uniform(0.0005, 0.002))
            status, info = server.serve(loop.time())
            await asyncio.sleep(rnd.uniform(0.0005, 0.002))
            w.release(ticket, info, status=status, pause=info.reset if status == 429 else None)
            if w.reset_at is not None:
                lateness.append(w.reset_at - server.end_of(loop.time()))
            if status != 429:
                return

    tasks = [spawn(create()) for _ in range(20 * 60)]
    await clock.advance(62.0, rounds=8)
    await cancel_all(tasks)
    assert len(lateness) > 1000
    early, late = lateness[:100], lateness[-100:]
    assert min(lateness) >= 0  # never rolls early
    assert max(late) <= max(early) + 0.005  # within a round trip of where it began
