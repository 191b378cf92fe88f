"""Where a shared window's spread aims (pacer_shared's "Others' admissions"): at the earliest
end proven, so that no window's budget is left for after its real end; on the fake clock."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from close_async._transport.pacer import Window
from close_async._transport.pacer_shared import _MARGIN
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock
from tests.support.pacer import admissions, answer, cancel_all, spawn, whole


async def rolled_into_window_1(clock: FakeClock, last: float) -> Window:
    """A shared window whose window 0 ran until ``t0 + last`` at least (a request sent then
    was counted in it), rolled into window 1 at its latest end (no proof of an earlier one),
    7 left there after the first request: window 1 ends in ``[t0 + 1 + last, t0 + 2 + M]``
    (a whole-second window lasts 1 s, the margin counted once), its latest end t0 + 2 + M."""
    t0 = clock.now
    w = Window("g")
    answer(w, await w.acquire(), whole(9))  # our probe, alone
    a = await w.acquire()
    await clock.advance(0.1)
    answer(w, a, whole(5))  # 3 admissions not ours: shared
    assert w.shared
    await clock.advance(last - 0.1)
    b = await w.acquire()  # counted in window 0
    await clock.advance(0.01)
    answer(w, b, whole(0))  # the others spent the rest
    roll = w.reset_at
    assert roll is not None
    assert roll == pytest.approx(t0 + 1.0 + _MARGIN)  # no proof of an earlier end
    await clock.advance(roll + 0.01 - clock.now)
    first = await w.acquire()  # at once: the first of window 1
    await clock.advance(0.01)
    answer(w, first, whole(7))  # window 1: 2 of others' already
    assert w._end_lo == pytest.approx(t0 + 1 + last)
    assert w.reset_at == pytest.approx(roll + 1)  # the margin once, not again at each roll
    return w


async def test_a_shared_window_spends_its_budget_before_the_earliest_end_a_window_before_proves(
    clock: FakeClock,
) -> None:
    # Window 1 ends at t0 + 1.95 or later; its latest end, the roll plus a second, lies 0.05 s
    # after that: aimed at it, the spread left 5% of the budget for after the real end (the
    # ``shared`` fan-out: 6-14 of 200 unused).
    t0 = clock.now
    w = await rolled_into_window_1(clock, last=0.95)
    times = await admissions(w, clock, 7, t0 + 3.0)
    assert len(times) == 7  # the whole budget...
    assert times[-1] < t0 + 1.95  # ...before the earliest end window 0 proved
    assert len(set(times)) > 1  # spread, not a burst


async def test_a_shared_window_whose_end_is_known_only_roughly_aims_at_its_latest_end(
    clock: FakeClock,
) -> None:
    # Window 1 ends in [t0 + 1.6, t0 + 2 + M]: bounds 0.4 s apart, more than a tenth of the
    # window. Aimed at the earlier, the budget was squeezed into the time before it (an
    # earliest end carried from a cold start's burst: every window's budget in its first
    # 0.1 s; at 100 ms round trips 3.4-4.0% 429s instead of 2.4-2.5%).
    t0 = clock.now
    w = await rolled_into_window_1(clock, last=0.6)
    assert w.reset_at is not None
    times = await admissions(w, clock, 7, t0 + 3.0)
    assert len(times) == 7
    assert times[-1] > t0 + 1.85  # spread towards the latest end, t0 + 2 + M
    assert times[-1] < w.reset_at


async def late_for_the_earliest_end(clock: FakeClock) -> tuple[Window, int]:
    """Window 1 of ``rolled_into_window_1(last=0.95)``, past the aim (its earliest end less a
    round trip), with the one request sent since still in flight."""
    t0 = clock.now
    w = await rolled_into_window_1(clock, last=0.95)
    await clock.advance(t0 + 1.95 - clock.now)
    late = await w.acquire()
    return w, late


async def test_late_for_the_earliest_end_a_shared_window_sends_one_at_a_time(
    clock: FakeClock,
) -> None:
    # Past the aim the window may end at any moment: each answer tells whether it still runs
    # (what a stale budget said was left, sent at once, met 429s for a tenth of the requests).
    w, late = await late_for_the_earliest_end(clock)
    assert w.available == 6
    pending = [spawn(w.acquire()) for _ in range(3)]
    await clock.advance(0.03)  # the answer is slow, but the window still runs
    assert not any(task.done() for task in pending)
    answer(w, late, whole(5))
    await clock.settle()
    assert [task.done() for task in pending] == [True, False, False]
    await cancel_all(pending)


async def test_a_slow_answer_does_not_hold_a_shared_window_s_queue_past_its_roll(
    clock: FakeClock,
) -> None:
    # The one in flight past the aim has no answer before the latest end: the queue goes at
    # the roll (the new window's first request at once), not when the answer comes (waiting
    # on it alone, the queue was held up to the request timeout, 30 s).
    w, _late = await late_for_the_earliest_end(clock)
    roll = w.reset_at
    assert roll is not None
    times = await admissions(w, clock, 3, roll + 0.5)
    assert times
    assert times[0] == pytest.approx(roll)


class _Server:
    """A fixed window of ``limit`` per ``length`` seconds with whole-second resets (rounded
    up), its windows starting mid-second for the client; another key sends ``others`` a
    window into the first ``others_for`` windows, evenly (admitted while the window has room,
    as ours)."""

    def __init__(
        self, limit: int, start: float, others: int, others_for: int, length: float = 1.0
    ) -> None:
        self.limit, self.start, self.length = limit, start, length
        self.others, self.others_for = others, others_for
        self.counted: dict[int, int] = {}  # admissions by window, ours and the other key's
        self._theirs_sent: dict[int, int] = {}
        self.refused = 0

    def serve(self, now: float) -> tuple[int, RateLimitInfo]:
        index = math.floor((now - self.start) / self.length)
        if index < self.others_for:  # the other key's requests that arrived before ours
            due = math.floor((now - self.start - index * self.length) / self.length * self.others)
            arrived = due - self._theirs_sent.get(index, 0)
            self._theirs_sent[index] = due
            room = self.limit - self.counted.get(index, 0)
            self.counted[index] = self.counted.get(index, 0) + max(0, min(arrived, room))
        used = self.counted.get(index, 0)
        reset = float(math.ceil(self.start + (index + 1) * self.length - now))
        if used >= self.limit:
            self.refused += 1
            return 429, RateLimitInfo(self.limit, 0, reset, True)
        self.counted[index] = used + 1
        return 200, RateLimitInfo(self.limit, self.limit - used - 1, reset, True)


async def left_alone(
    clock: FakeClock, seed: int, length: float = 1.0
) -> tuple[_Server, Window, list[float]]:
    """Another key takes half the limit for 3 windows, then has no more to send; ours fans
    out 7 windows' worth of the rest (round trips of 5-20 ms)."""
    limit = 40
    loop, rnd = asyncio.get_running_loop(), random.Random(seed)
    server = _Server(limit, clock.now - 0.37, others=limit // 2, others_for=3, length=length)
    w = Window("a")
    done: list[float] = []

    async def create() -> None:
        while True:
            ticket = await w.acquire()
            await asyncio.sleep(rnd.uniform(0.0025, 0.01))  # on its way
            status, info = server.serve(loop.time())
            await asyncio.sleep(rnd.uniform(0.0025, 0.01))  # the answer on its way back
            w.release(ticket, info, status=status, pause=info.reset if status == 429 else None)
            if status != 429:
                done.append(loop.time())
                return

    n = 7 * limit - 3 * limit // 2
    tasks = [spawn(create()) for _ in range(n)]
    await clock.advance(12.0 * length, rounds=8)
    await cancel_all(tasks)
    assert len(done) == n
    assert w.shared
    return server, w, done


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
async def test_a_key_left_alone_on_a_shared_limit_fills_every_window_to_the_last(
    clock: FakeClock, seed: int
) -> None:
    # Every window after the first (begun before our first request) must be full up to our
    # last: the spread aimed at the latest end, a round trip per roll late, and left 4-8 of
    # 40 of each window ours spent alone for after its end.
    server, _w, done = await left_alone(clock, seed)
    last = math.floor(max(done) - server.start)
    full = range(1, last)
    assert [server.counted.get(i, 0) for i in full] == [server.limit] * len(full)
    assert server.refused <= 0.03 * len(done)


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed={s}")
async def test_windows_shorter_than_their_whole_second_reset_carry_no_earliest_end(
    clock: FakeClock, seed: int
) -> None:
    # 1.5 s windows announce reset=2 for their first half second. Their earliest end carried
    # 2 s on from the window before's, the aim fell after the real end: 27-31 of 40 sent in
    # each window ours spent alone (seeds 0-5), the rest after its end.
    server, w, done = await left_alone(clock, seed, length=1.5)
    assert not w._whole_windows
    last = math.floor((max(done) - server.start) / server.length)
    full = range(1, last)
    assert min(server.counted.get(i, 0) for i in full) >= 0.9 * server.limit
    assert server.refused <= 0.03 * len(done)
