"""Issue 11, "never hang": a Window with requests waiting and none in flight has a timer armed.

Nothing but time can then unblock the queue (no response is coming), so arming nothing hangs
it. The regression drives the state the fan-out against one organisation limit shared by two
keys reached (a spent window with nothing in flight while the learned bucket had no token);
the property test drives random sequences of acquires, answers, cancels and clock moves and
checks the invariant after every step, on the patched loop clock.
"""

from __future__ import annotations

import asyncio
import logging
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from close_async._transport import pacer as _pacer
from close_async._transport import pacer_shared as _pacer_shared
from close_async._transport.pacer import Window
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import T0, FakeClock
from tests.support.pacer import cancel_all, granted, report, spawn, unpaced_burst


def assert_not_stranded(w: Window) -> None:
    waiting = [f for f in w._waiters if not f.done()]
    if waiting and not w.in_flight:
        timer = w._timer
        assert timer is not None, (w, w.reset_at, w.learned)
        assert not timer.cancelled(), (w, w.reset_at, w.learned)


async def test_a_spent_window_with_nothing_in_flight_and_no_token_still_wakes_its_queue() -> None:
    with FakeClock(T0) as clock, mock.patch.object(_pacer.logger, "warning") as stranded:
        w = Window("g")
        await unpaced_burst(w, clock, ok=200, limited=100)  # a learned rate, then a pause
        assert w.learned.rate is not None
        await clock.advance(1.6)
        probe = await w.acquire()  # headers appear: 10 per 1 s window
        w.release(probe, report(9, 1.0), status=200, pause=None)
        await clock.advance(1.0 + 2 * _pacer_shared._MARGIN)  # the window rolls: 10 available
        waiters = [spawn(w.acquire()) for _ in range(11)]
        answered: set[int] = set()
        for _ in range(200):  # every grant's request fails without a response, at once
            await clock.advance(0.001)
            for ticket in granted(waiters):
                if ticket not in answered:
                    answered.add(ticket)
                    w.release(ticket, None, status=None, pause=None)
            if len(answered) == 10:
                break
        # Spent, nothing in flight, no end known, and the bucket just spent its token.
        assert len(answered) == 10
        assert w.in_flight == 0
        assert w.available <= 0
        assert_not_stranded(w)
        await clock.advance(3.0)  # a whole window past the last known end, at the latest
        assert len(granted(waiters)) == 11, (w, w.reset_at, w.learned)
        stranded.assert_not_called()
        await cancel_all(waiters)


def info_of(kind: str, limit: int, remaining: int, reset: float) -> RateLimitInfo | None:
    if kind == "none":
        return None
    return RateLimitInfo(limit, min(remaining, limit), reset, whole_seconds=kind == "whole")


step = st.one_of(
    st.tuples(st.just("acquire"), st.integers(1, 4)),
    st.tuples(st.just("advance"), st.floats(0.0005, 1.5)),
    st.tuples(
        st.just("answer"),
        st.integers(0, 10_000),  # which request in flight
        st.sampled_from([200, 200, 200, 429, 500, None]),
        st.sampled_from(["decimal", "whole", "none"]),
        st.integers(0, 3),  # remaining
        st.sampled_from([0.0, 0.01, 0.3, 0.5, 1.0, 2.0]),  # reset, and a 429's pause
    ),
    st.tuples(st.just("cancel"), st.integers(0, 10_000)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # found by this test before the fix: a 429 teaches a rate while the window is spent
    taught=False,
    limit=1,
    steps=[
        *[("acquire", 1)] * 4,
        ("answer", 0, 200, "decimal", 0, 0.0),
        ("advance", 1.0),
        ("answer", 0, 429, "decimal", 1, 0.0),
        ("answer", 0, 200, "decimal", 0, 0.0),
    ],
)
@given(
    taught=st.booleans(),
    limit=st.sampled_from([1, 2, 3, 10]),
    steps=st.lists(step, min_size=1, max_size=60),
)
def test_waiters_with_nothing_in_flight_always_have_a_timer_armed(
    taught: bool,
    limit: int,
    steps: list[tuple],  # type: ignore[type-arg]
) -> None:
    async def scenario() -> None:
        with FakeClock(T0) as clock, mock.patch.object(_pacer.logger, "warning") as stranded:
            w = Window("g", max_wait=30.0)
            if taught:  # a rate learned from 429s (unpaced), then headers may appear
                await unpaced_burst(w, clock, ok=30, limited=5)
            tasks: list[asyncio.Task[int]] = []
            answered: set[int] = set()
            for action, *args in steps:
                if action == "acquire":
                    tasks += [spawn(w.acquire()) for _ in range(args[0])]
                elif action == "advance":
                    await clock.advance(args[0])
                elif action == "answer" and w._in_flight:
                    ticket = w._in_flight[args[0] % len(w._in_flight)]
                    status, kind, remaining, reset = args[1:]
                    info = info_of(kind, limit, remaining, reset)
                    if status is None:
                        info = None
                    pause = reset if status == 429 else None
                    w.release(ticket, info, status=status, pause=pause)
                    answered.add(ticket)
                elif action == "cancel" and tasks:
                    tasks[args[0] % len(tasks)].cancel()
                await clock.settle()
                assert_not_stranded(w)
            stranded.assert_not_called()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())


def test_the_safety_net_logs_and_polls_if_the_invariant_ever_breaks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        with FakeClock(T0) as clock:
            w = Window("g")
            probe = await w.acquire()
            w.release(probe, report(0, 1.0), status=200, pause=None)
            # Force a state no event sequence reaches: spent, no end known, nothing in flight,
            # and a _window_allows that never rolls.
            with mock.patch.object(Window, "_window_allows", return_value=False):
                w.reset_at = w._end_lo = None
                waiter = spawn(w.acquire())
                await clock.settle()
                assert w._timer is not None
                assert clock.pending() == [pytest.approx(T0 + _pacer.PROBE_PATIENCE)]
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="close_async"):
        asyncio.run(scenario())
    assert "stranded its queue" in caplog.text


async def serve_for(w: Window, clock: FakeClock, seconds: float, remaining: int) -> int:
    """Answer every granted request at once with 200 and ``remaining`` of 100 left in a 1 s
    window, for ``seconds``; returns how many were sent."""
    waiters = [spawn(w.acquire()) for _ in range(400)]
    answered: set[int] = set()
    for _ in range(round(seconds / 0.01)):
        await clock.advance(0.01)
        for ticket in granted(waiters):
            if ticket not in answered:
                answered.add(ticket)
                w.release(ticket, report(remaining, 0.5, limit=100), status=200, pause=None)
    await cancel_all(waiters)
    return len(answered)


async def granted_within(w: Window, clock: FakeClock, seconds: float) -> int:
    """A ticket granted within ``seconds`` of the patched clock, moving it in small steps.

    Not ``asyncio.wait_for``: its timeout runs on the same patched clock, which only moves when
    the test moves it, so a grant waiting for a token would wait (and the test hang) forever."""
    task = spawn(w.acquire())
    for _ in range(round(seconds / 0.01)):
        await clock.settle()
        if task.done():
            return task.result()
        await clock.advance(0.01)
    await cancel_all([task])
    raise AssertionError(f"no grant within {seconds}s: {w!r} {w.learned!r}")


async def taught_a_trickle(w: Window, clock: FakeClock, remaining_on_429: int) -> None:
    """One success per epoch, then a 429: the rate of a key whose shared limit another key
    drains (a second 429 that says ``remaining_on_429`` teaches, the first only pauses)."""
    for _ in range(2):
        ok = await granted_within(w, clock, 1.0)
        w.release(ok, report(99, 1.0, limit=100), status=200, pause=None)
        refused = await granted_within(w, clock, 1.0)
        info = report(remaining_on_429, 1.0, limit=100)
        w.release(refused, info, status=429, pause=1.0)
        await clock.advance(1.1)
    assert w.learned.rate is not None
    assert w.learned.rate < 2.0  # of 100 per second


async def test_a_rate_learned_from_a_drained_shared_limit_regrows_when_the_headers_show_room(
    clock: FakeClock,
) -> None:
    # Against one limit shared by two keys, the key that met the 429s learned 0.45/s of 200/s,
    # and its rate never rose above twice that: 1,000 creates pending for minutes.
    w = Window("g")
    await taught_a_trickle(w, clock, remaining_on_429=0)
    await serve_for(w, clock, 10.0, remaining=90)
    assert await serve_for(w, clock, 2.0, remaining=90) >= 100  # >= 50/s, was < 2/s


async def test_after_a_429_that_says_remaining_over_0_room_in_the_headers_does_not_regrow_it(
    clock: FakeClock,
) -> None:
    # A 429 while the header says remaining > 0 shows the header is not the real limit (a
    # hidden one), so "mostly unused" in later headers is no evidence of room. (This test hung
    # once: its helper waited for each grant with asyncio.wait_for on the patched clock, and
    # with a rate taught by the first 429 the second grant waits for a token the timer brings,
    # at a time only clock.advance reaches. The client was fine; the helper now advances.)
    w = Window("g")
    await taught_a_trickle(w, clock, remaining_on_429=1)
    rate = w.learned.rate
    assert rate is not None
    await serve_for(w, clock, 10.0, remaining=90)
    sent = await serve_for(w, clock, 2.0, remaining=90)
    assert w.learned.rate is not None
    assert w.learned.rate <= 2.0 * 1.02**12 * rate  # its own ceiling, GROWTH at most
    assert sent <= 2.0 * w.learned.rate + 2  # a trickle still: honest headers gave >= 100
