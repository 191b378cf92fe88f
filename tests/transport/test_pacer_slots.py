"""Issue 11: windows that do not refill at a roll (sliding windows, token buckets) are paced by
slots (close_async._transport.pacer.Window._slot_at), on the patched loop clock.

A request holds one of ``limit`` slots from its send until a window's length after its answer.
The servers over real sockets are in test_pacer_servers.py; the benchmark is bench_fanout.py.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from close_async._transport.pacer import Window
from close_async._transport.pacer_shared import _MARGIN
from tests.support.clock import T0, FakeClock
from tests.support.pacer import admitted_at, cancel_all, granted, learned, queue_up, report


async def first_window(w: Window, clock: FakeClock) -> None:
    """limit 4, the probe answered at t0 (reset 1: the window ends by t0 + 1 + M); three more
    sent at t0 and answered at t0 + 0.25 with the window spent. They hold slots until
    t0 + 1.25 + M, the probe until t0 + 1 + M."""
    await learned(w, clock, limit=4, remaining=3, reset=1.0)
    tickets = [await w.acquire() for _ in range(3)]
    await clock.advance(0.25)
    for ticket in tickets:
        w.release(ticket, report(0, 0.75, 4), status=200, pause=None)


async def first_roll(w: Window, clock: FakeClock) -> tuple[list[asyncio.Task[int]], int]:
    """``first_window``, four waiters, the clock at the roll: the one request let out."""
    t0 = clock.now
    await first_window(w, clock)
    waiters = await queue_up(w, 4, clock)
    await clock.advance(t0 + 1.0 + _MARGIN - clock.now)
    (first,) = granted(waiters)
    await clock.advance(0.01)
    return waiters, first


async def test_a_first_roll_lets_out_the_free_slots_and_one_more_not_the_whole_limit(
    clock: FakeClock,
) -> None:
    # A sliding window at its first roll has freed only the probe's admission: a refill of
    # the whole limit would meet three 429s. Decimal resets: the roll is not yet trusted.
    w = Window("g")
    t0 = clock.now
    await first_window(w, clock)
    waiters = await queue_up(w, 4, clock)
    await clock.advance(t0 + 1.0 + _MARGIN - clock.now)
    assert granted(waiters) == [5]
    await cancel_all(waiters)


async def test_a_report_after_the_first_roll_showing_a_refill_releases_the_rest_at_once(
    clock: FakeClock,
) -> None:
    w = Window("g")
    waiters, first = await first_roll(w, clock)
    w.release(first, report(3, 0.99, 4), status=200, pause=None)  # a fixed window, refilled
    await clock.settle()
    assert w.fixed
    assert granted(waiters) == [5, 6, 7, 8]
    await cancel_all(waiters)


async def test_a_report_after_the_first_roll_showing_no_refill_paces_by_slots(
    clock: FakeClock,
) -> None:
    w = Window("g")
    t0 = clock.now
    waiters, first = await first_roll(w, clock)
    # sliding: full again, the oldest admission (sent at t0) leaves at t0 + 1.25
    w.release(first, report(0, 0.24, 4), status=200, pause=None)
    await clock.settle()
    assert (w.fixed, w.refills) == (False, False)
    assert granted(waiters) == [5]
    await clock.advance(t0 + 1.25 + _MARGIN - clock.now - 0.001)
    assert granted(waiters) == [5]
    await clock.advance(0.001)
    assert granted(waiters) == [5, 6, 7, 8]  # the three answered at t0 + 0.25 left the window
    await cancel_all(waiters)


async def test_a_429_after_the_first_roll_decides_nothing(clock: FakeClock) -> None:
    # With headers only on 429s every report says "spent": that is no sign of a sliding window.
    w = Window("g")
    waiters, first = await first_roll(w, clock)
    w.release(first, report(0, 0.99, 4), status=429, pause=None)
    assert (w.fixed, w.refills) == (False, True)
    await cancel_all(waiters)


async def test_429s_of_ever_later_windows_show_no_token_bucket(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, limit=10, remaining=9, reset=0.05)
    tickets = [await w.acquire() for _ in range(9)]
    for i, ticket in enumerate(tickets[:3]):
        await clock.advance(0.01)
        w.release(ticket, report(0, 0.7 + 0.1 * i, 10), status=429, pause=0.7 + 0.1 * i)
    assert w.refills


async def test_reports_of_ever_later_windows_nearly_spent_show_a_token_bucket(
    clock: FakeClock,
) -> None:
    # A bucket's reset is the time until it is full: every report of a draining bucket ends
    # later than the last, so no roll ever comes; three in a row turn pacing by slots on.
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=10, remaining=9, reset=0.05)
    tickets = [await w.acquire() for _ in range(9)]
    for i, ticket in enumerate(tickets[:3]):
        await clock.advance(0.01)
        w.release(ticket, report(2 - i, 0.7 + 0.1 * i, 10), status=200, pause=None)
    assert not w.refills
    for ticket in tickets[3:]:
        w.release(ticket, report(0, 1.0, 10), status=200, pause=None)
    # Every slot is held: the probe's (answered at t0) frees first, a window (1.0) after it.
    assert await admitted_at(w, clock, t0 + 3.0) == pytest.approx(t0 + 1.0 + _MARGIN)


async def test_slots_others_hold_by_the_server_s_count_are_not_ours_to_use(
    clock: FakeClock,
) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=10, remaining=9, reset=0.05)
    tickets = [await w.acquire() for _ in range(3)]
    for i, ticket in enumerate(tickets):
        await clock.advance(0.01)
        w.release(ticket, report(2 - i, 0.7 + 0.1 * i, 10), status=200, pause=None)
    assert not w.refills
    # Ours: the probe and three, 4 of 10 slots. The server counted all 10: six are someone
    # else's for a window from this report, so none is free for us until the probe's frees.
    assert await admitted_at(w, clock, t0 + 3.0) == pytest.approx(t0 + 0.9 + _MARGIN)


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 6),
    delays=st.lists(st.floats(0.0, 0.3), min_size=1, max_size=40),
)
def test_paced_by_slots_no_window_length_ever_sees_more_than_the_limit(
    limit: int, delays: list[float]
) -> None:
    # Whatever the answers' delays, the requests the server handled (between send and answer)
    # never number more than `limit` in any window-length span.
    async def run() -> list[tuple[float, float]]:
        with FakeClock(T0) as clock:
            w = Window("g")
            await learned(w, clock, limit=limit, remaining=limit - 1, reset=0.05)
            w.refills = False  # paced by slots, as after a sliding window's first roll
            w._window_len = 1.0
            spans: list[tuple[float, float]] = []
            loop = asyncio.get_running_loop()

            async def one(delay: float) -> None:
                ticket = await w.acquire()
                sent = loop.time()
                await asyncio.sleep(delay)
                w.release(ticket, report(0, 1.0, limit), status=200, pause=None)
                spans.append((sent, loop.time()))

            tasks = [asyncio.ensure_future(one(d)) for d in delays]
            for _ in range(len(delays) * 40 + 40):  # 1.5 s a request, in steps
                await clock.advance(0.05)
            assert all(t.done() for t in tasks)
            return spans

    spans = asyncio.run(run())
    # Each was handled somewhere in [sent, answered]. If limit + 1 were handled within 1 s, the
    # last sent of them left less than 1 s after every other's answer: never more than
    # limit - 1 answers within 1 s before a send.
    for sent, _ in spans:
        assert sum(1 for s, a in spans if s < sent and a + 1.0 > sent) < limit
