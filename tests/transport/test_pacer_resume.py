"""Issue 11: a whole-second pause that no report bounds ends early (close_async._pacer_resume).

The ingress's HTML 429s carry only ``Retry-After: 1``, rounded up: the window may end at once.
Driven on the patched loop clock: one probe at a time, the gap doubling per refusal (up to
``MAX_GAP``), the first
admitted probe ending the pause, the latest possible end ending it in any case, and the rate
learned over the pause as it really was.
"""

from __future__ import annotations

import asyncio

import pytest

from close_async._transport.adaptive import BACKOFF, BURST_SECONDS
from close_async._transport.pacer import Window
from close_async._transport.pacer_resume import FIRST_GAP, MAX_GAP
from tests.support.clock import T0, FakeClock
from tests.support.pacer import cancel_all, granted, queue_up, unpaced_burst


async def ingress_burst(w: Window, clock: FakeClock, ok: int, limited: int) -> None:
    """No headers: ``ok`` of a burst sent at T0 pass within 0.1 s, the ``limited`` rest meet
    an HTML 429 with only "Retry-After: 1"."""
    await unpaced_burst(w, clock, ok, limited, pause=1.0)


async def test_a_whole_second_429_without_reports_lets_one_probe_go_soon(clock: FakeClock) -> None:
    w = Window("g")
    await ingress_burst(w, clock, ok=100, limited=20)
    assert w.learned.rate is None  # learned when the pause ends, over its real length
    waiters = await queue_up(w, 50, clock)
    await clock.advance(FIRST_GAP - 1e-6)
    assert granted(waiters) == []
    await clock.advance(1e-6)
    assert len(granted(waiters)) == 1  # one probe, the rest behind it
    await clock.advance(0.5)
    assert len(granted(waiters)) == 1  # still out: nobody follows it
    await cancel_all(waiters)


async def test_a_refused_probe_doubles_the_gap_and_an_admitted_one_ends_the_pause(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await ingress_burst(w, clock, ok=100, limited=20)
    waiters = await queue_up(w, 400, clock)
    await clock.advance(FIRST_GAP)
    (first,) = granted(waiters)
    w.release(first, None, status=429, pause=1.0)  # not yet
    await clock.advance(2 * FIRST_GAP - 1e-6)
    assert granted(waiters) == [first]
    await clock.advance(1e-6)
    second = granted(waiters)[-1]
    assert second != first
    probe_sent = clock.now
    w.release(second, None, status=200, pause=None)  # the window has rolled
    # 100 admitted from the burst's send (T0) to the estimated end: midway between the last
    # refused send and the admitted probe's send. Not to T0 + 1.1 - 0.5, the rounded wait.
    end = ((T0 + 0.1 + FIRST_GAP) + probe_sent) / 2
    assert w.learned.rate == pytest.approx(BACKOFF * 100 / (end - T0), rel=0.02)
    await clock.advance(0.5)
    sent = len(granted(waiters)) - 2
    assert w.learned.rate is not None
    rate = w.learned.rate  # the backlog leaves at the learned rate (a burst's worth at most more)
    assert 0 < sent <= (0.5 * 1.02 + BURST_SECONDS) * rate + 2
    await cancel_all(waiters)


async def test_the_latest_possible_end_ends_the_pause_when_every_probe_is_refused(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await ingress_burst(w, clock, ok=100, limited=1)
    waiters = await queue_up(w, 50, clock)
    probes = 0
    while clock.now < T0 + 1.1 - 1e-9:
        await clock.advance(0.001)
        for ticket in granted(waiters)[probes:]:
            probes += 1
            w.release(ticket, None, status=429, pause=1.0)
    # From 0.125 s, 0.05 then every 0.1 s: ten probes in the second the server asked for.
    assert probes <= 1 + round(1.0 / MAX_GAP)
    await clock.advance(0.001)
    assert w._early is None
    assert w.learned.rate is not None
    await cancel_all(waiters)


async def test_a_probe_that_gets_no_answer_lets_the_next_one_go_at_once(clock: FakeClock) -> None:
    w = Window("g")
    await ingress_burst(w, clock, ok=100, limited=1)
    waiters = await queue_up(w, 10, clock)
    await clock.advance(FIRST_GAP)
    (first,) = granted(waiters)
    w.release(first, None, status=None, pause=None)  # the connection dropped
    await clock.settle()
    assert len(granted(waiters)) == 2
    await cancel_all(waiters)


async def test_a_decimal_or_over_long_wait_is_sat_out_in_full(clock: FakeClock) -> None:
    for pause in (0.7, 1.5):
        w = Window("g")
        probe = await w.acquire()
        w.release(probe, None, status=200, pause=None)
        a = await w.acquire()
        w.release(a, None, status=429, pause=pause)
        assert w._early is None
        assert w.paused_until == pytest.approx(clock.now + pause)
    w = Window("g", max_wait=5.0)
    a = await w.acquire()
    w.release(a, None, status=429, pause=10.0)  # over max_wait: refused, not probed
    assert w._early is None
    await asyncio.sleep(0)


@pytest.mark.parametrize("end", [0.3, 0.62, 0.95, 1.07], ids=lambda e: f"end=T0+{e:g}s")
async def test_the_first_pause_after_a_burst_ends_within_a_gap_of_the_window_end(
    clock: FakeClock, end: float
) -> None:
    # The window (unknown to the client) ends at T0 + end. With gaps doubling without bound
    # (0.05, 0.1, 0.2, 0.4 s) a window ending at T0 + 0.95 was found at T0 + 1.15 and its end
    # estimated at T0 + 0.75: the epoch after it measured 200/s as 175/s and the rate stayed low.
    w = Window("g")
    await ingress_burst(w, clock, ok=100, limited=1)
    waiters = await queue_up(w, 50, clock)
    answered = 0
    while w._early is not None and clock.now < T0 + 1.2:
        await clock.advance(0.001)
        for ticket in granted(waiters)[answered:]:
            answered += 1
            status = 200 if clock.now >= T0 + end else 429
            w.release(ticket, None, status=status, pause=1.0 if status == 429 else None)
    assert w._early is None
    assert clock.now <= T0 + end + MAX_GAP + 0.002  # the pause ended a gap after the window
    estimated = T0 + 100 / w.learned._best  # measured: 100 admitted from T0 to the estimate
    assert estimated == pytest.approx(T0 + end, abs=MAX_GAP / 2 + 0.002)
    await cancel_all(waiters)
