"""Tests for _transport.pacer: a Window driven directly with the fake loop clock (no HTTP).

Unit tests walk every rule of the module docstring, asserting who is admitted when rather than
the internals. The simulations (a crowd in front of a small fixed-window server) are in
test_pacer_simulation.py; defects they found are pinned here as regression tests.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from typing import Any

import pytest

from close_async._transport.cold_start import START
from close_async._transport.pacer import _UNKNOWN_PAUSE, PROBE_PATIENCE, Pacer, Window
from close_async._transport.pacer_shared import _MARGIN
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock
from tests.support.pacer import (
    admissions,
    admitted_at,
    answer,
    cancel_all,
    granted,
    learned,
    queue_up,
    report,
    spawn,
)

# --------------------------------------------------------------------------------------------
# Cold start: one probe at a time until the first report
# --------------------------------------------------------------------------------------------


async def test_cold_start_sends_one_probe_until_the_first_report(clock: FakeClock) -> None:
    w = Window("g")
    t0 = clock.now
    probe = await w.acquire()  # never suspends
    waiters = await queue_up(w, 3, clock)
    assert clock.pending() == [t0 + PROBE_PATIENCE]  # the only time-based wake-up
    await clock.advance(PROBE_PATIENCE - 0.001)
    assert granted(waiters) == []
    assert (w.limit, w.in_flight) == (None, 1)

    w.release(probe, report(remaining=9, reset=2.0), status=200, pause=None)
    await clock.settle()
    assert granted(waiters) == [2, 3, 4]
    assert (w.limit, w.available, w.in_flight) == (10, 9 - 3, 3)


async def test_try_acquire_grants_only_what_acquire_would_grant_at_once(clock: FakeClock) -> None:
    window = Window("opportunity")
    probe = window.try_acquire()
    assert probe is not None  # the cold-start probe
    assert window.try_acquire() is None  # one probe at a time
    waiter = spawn(window.acquire())
    await clock.settle()
    window.release(probe, report(remaining=9, reset=1.0), status=200, pause=None)
    await clock.settle()
    assert waiter.done()
    assert window.try_acquire() is not None  # room in the window, nobody queued
    window.available = 0
    assert window.try_acquire() is None
    queued = spawn(window.acquire())
    await clock.settle()
    window.available = 5
    assert window.try_acquire() is None  # never ahead of a queued acquirer
    await cancel_all([queued])


async def test_a_probe_unanswered_for_the_probe_patience_lets_one_more_go(
    clock: FakeClock,
) -> None:
    w = Window("g")
    t0 = clock.now
    await w.acquire()
    waiters = await queue_up(w, 4, clock)
    await clock.advance(PROBE_PATIENCE - 0.001)
    assert granted(waiters) == []
    await clock.advance(0.001)
    assert granted(waiters) == [2]  # one more, not everyone
    assert clock.pending() == [t0 + 2 * PROBE_PATIENCE]  # counted from the newest probe
    await clock.advance(PROBE_PATIENCE)
    assert granted(waiters) == [2, 3]
    assert w.in_flight == 3
    await cancel_all(waiters)


async def test_probe_patience_counts_from_the_newest_probe(clock: FakeClock) -> None:
    w = Window("g")
    t0 = clock.now
    probe = await w.acquire()
    waiters = await queue_up(w, 3, clock)
    await clock.advance(0.5)
    w.release(probe, None, status=None, pause=None)  # failed fast: the next probe goes now
    await clock.settle()
    assert granted(waiters) == [2]
    assert clock.pending() == [t0 + 0.5 + PROBE_PATIENCE]
    await clock.advance(PROBE_PATIENCE - 0.001)
    assert granted(waiters) == [2]
    await clock.advance(0.001)
    assert granted(waiters) == [2, 3]
    await cancel_all(waiters)


async def test_no_probe_patience_once_unpaced(clock: FakeClock) -> None:
    w = Window("g")
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)
    await clock.advance(5 * PROBE_PATIENCE)
    tickets = [await w.acquire() for _ in range(3)]  # no waiting, no timers
    assert clock.pending() == []
    assert len(tickets) == 3


@pytest.mark.parametrize(
    ("status", "info"),
    [
        pytest.param(None, None, id="no-response"),
        pytest.param(500, None, id="500-without-headers"),
        pytest.param(503, None, id="503-without-headers"),
        pytest.param(502, RateLimitInfo(10, None, 1.0), id="502-remaining-missing"),
        pytest.param(504, RateLimitInfo(10, 5, None), id="504-reset-missing"),
        # A proxy or gateway in front of the API answers without the API's headers.
        pytest.param(401, None, id="401-from-a-proxy"),
        pytest.param(403, None, id="403-from-a-proxy"),
        pytest.param(404, None, id="404-from-a-proxy"),
        pytest.param(413, None, id="413-from-a-proxy"),
        pytest.param(404, RateLimitInfo(10, None, 1.0), id="404-remaining-missing"),
        pytest.param(304, None, id="304-without-headers"),
    ],
)
async def test_a_probe_that_reports_nothing_hands_over_to_the_next_probe(
    clock: FakeClock, status: int | None, info: RateLimitInfo | None
) -> None:
    w = Window("g")
    probe = await w.acquire()
    waiters = await queue_up(w, 3, clock)
    w.release(probe, info, status=status, pause=None)
    await clock.settle()
    assert granted(waiters) == [2]  # still one at a time: not taken for an unpaced server
    assert (w.limit, w.unpaced, w.in_flight) == (None, False, 1)
    await cancel_all(waiters)


# --------------------------------------------------------------------------------------------
# A server whose successful responses carry no rate-limit headers is not paced
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "info"),
    [
        pytest.param(200, None, id="200"),
        pytest.param(201, None, id="201"),
        pytest.param(204, None, id="204"),
        pytest.param(299, None, id="299"),
        pytest.param(200, RateLimitInfo(10, None, 1.0), id="200-remaining-missing"),
        pytest.param(200, RateLimitInfo(10, 5, None), id="200-reset-missing"),
    ],
)
async def test_only_a_2xx_without_headers_turns_pacing_off(
    clock: FakeClock, status: int, info: RateLimitInfo | None
) -> None:
    w = Window("g")
    probe = await w.acquire()
    waiters = await queue_up(w, 50, clock)
    w.release(probe, info, status=status, pause=None)
    await clock.settle()
    assert w.unpaced
    assert granted(waiters) == list(range(2, 2 + int(START)))  # the cold-start ramp's cap
    await clock.advance(1.0)  # the ramp's cap has grown past them (test_cold_start.py)
    assert granted(waiters) == list(range(2, 52))  # everyone, in order
    more = await queue_up(w, 100, clock)
    await clock.advance(1.0)  # a second of holding back: the ramp is over
    assert len(granted(more)) == 100
    assert w.ramp.done
    for _ in range(100):
        await w.acquire()  # and newcomers never wait
    assert w.in_flight == 250


async def test_pacing_resumes_when_headers_appear(clock: FakeClock) -> None:
    w = Window("g")
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)
    tickets = [await w.acquire() for _ in range(4)]  # 2..5, all in flight
    w.release(tickets[0], report(remaining=3, reset=1.0), status=200, pause=None)
    assert not w.unpaced
    assert w.available == 3 - 3  # the three sent after the reporter are not counted yet
    waiter = spawn(w.acquire())
    await clock.advance(1.0)
    assert not waiter.done()  # the end may be as late as answered + reset + _MARGIN
    await clock.advance(_MARGIN)  # the window rolls: limit 10, 3 still in flight
    assert waiter.result() == 6
    assert w.available == 10 - 3 - 1


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(200, id="2xx-without-headers"),
        pytest.param(404, id="404-without-headers"),
        pytest.param(500, id="500-without-headers"),
        pytest.param(None, id="no-response"),
    ],
)
async def test_a_known_window_stays_paced_after_a_response_without_headers(
    clock: FakeClock, status: int | None
) -> None:
    w = Window("g")
    await learned(w, clock, limit=2, remaining=1)  # the probe took one of two
    ticket = await w.acquire()
    w.release(ticket, None, status=status, pause=None)
    assert not w.unpaced
    waiter = spawn(w.acquire())
    await clock.settle()
    assert not waiter.done()
    await cancel_all([waiter])


async def test_debug_log_when_pacing_is_turned_off(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="close_async")
    w = Window("leads")
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "leads: responses carry no rate-limit headers; not pacing")
    ]


# --------------------------------------------------------------------------------------------
# Learning the limit
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header_limit", "expected"),
    [
        pytest.param(25, 25, id="from-the-header"),
        pytest.param(None, 5 + 1 + 3, id="no-header:remaining+reporter+in-flight"),
        pytest.param(0, 5 + 1 + 3, id="zero-header-is-ignored"),
    ],
)
async def test_the_limit_comes_from_the_header_or_is_inferred(
    clock: FakeClock, header_limit: int | None, expected: int
) -> None:
    w = Window("g")
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)  # unpaced: several go out at once
    tickets = [await w.acquire() for _ in range(4)]
    w.release(tickets[0], report(5, 1.0, header_limit), status=200, pause=None)
    assert w.limit == expected


@pytest.mark.parametrize(
    ("header_limit", "expected"),
    [
        pytest.param(None, 10, id="missing-later:kept"),
        pytest.param(0, 10, id="zero-later:kept"),
        pytest.param(20, 20, id="changed-later:updated"),
    ],
)
async def test_a_known_limit_is_kept_unless_the_header_says_otherwise(
    clock: FakeClock, header_limit: int | None, expected: int
) -> None:
    w = Window("g")
    await learned(w, clock, limit=10, remaining=9)
    ticket = await w.acquire()
    w.release(ticket, report(3, 1.0, header_limit), status=200, pause=None)
    assert w.limit == expected


# --------------------------------------------------------------------------------------------
# The budget: remaining, minus in-flight requests sent after the reporter, minus sends since
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reporter", "expected"),
    [
        pytest.param(0, 5 - 4, id="first-sent:4-uncounted"),
        pytest.param(2, 5 - 2, id="middle:2-uncounted"),
        pytest.param(4, 4, id="last-sent:no-uncounted,cannot-raise"),
    ],
)
async def test_budget_subtracts_in_flight_requests_sent_after_the_reporter(
    clock: FakeClock, reporter: int, expected: int
) -> None:
    w = Window("g")
    await learned(w, clock, remaining=9)
    tickets = [await w.acquire() for _ in range(5)]
    assert w.available == 4
    w.release(tickets[reporter], report(remaining=5, reset=1.0), status=200, pause=None)
    assert w.available == expected


async def test_each_send_since_the_report_is_counted(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, limit=4, remaining=3)  # the probe took one of four
    for expected in (2, 1, 0):
        await w.acquire()
        assert w.available == expected
    waiter = spawn(w.acquire())
    await clock.settle()
    assert not waiter.done()
    await cancel_all([waiter])


async def test_within_a_window_the_budget_only_goes_down(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, limit=6, remaining=5)  # the probe took one of six
    a, b = await w.acquire(), await w.acquire()  # available 3
    w.release(b, report(remaining=3, reset=1.0, limit=6), status=200, pause=None)  # all 3 ours
    assert w.available == 3
    # a reached the server before b: as it was counted, 4 were left; arriving late, it is stale
    w.release(a, report(remaining=4, reset=1.0, limit=6), status=200, pause=None)
    assert w.available == 3


# --------------------------------------------------------------------------------------------
# When does the window end? In [sent + reset, answered + reset + _MARGIN], never rolled early
# --------------------------------------------------------------------------------------------


async def test_an_exhausted_window_rolls_at_the_latest_possible_end(clock: FakeClock) -> None:
    # Sent at t0, answered at t0 + 0.5, reset 3: the server handled it somewhere in between,
    # so the window ends somewhere in [t0 + 3, t0 + 3.5] (+ _MARGIN for the reset's rounding).
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, remaining=0, reset=3.0, rtt=0.5)
    assert w.reset_at == t0 + 0.5 + 3.0 + _MARGIN
    waiter = spawn(w.acquire())
    await clock.settle()
    assert clock.pending() == [t0 + 0.5 + 3.0 + _MARGIN]  # one timer, nothing earlier
    await clock.advance(3.0 + _MARGIN - 0.001)
    assert not waiter.done()
    await clock.advance(0.001)
    assert waiter.done()


# A window known to end in [t0 + 1.0, t0 + 1.25 + M] (probe sent at t0, answered at t0 + 0.25,
# reset 1.0), a budget of 5; then a request sent at t0 + 0.25 is answered at t0 + 0.5 with a
# report whose end lies in [t0 + 0.25 + reset, t0 + 0.5 + reset + M]. Expected: the budget
# (None: the report's remaining), and the new end [earliest, latest] as offsets from t0.
M = _MARGIN
CLASSIFIED = [
    # name, reset, (budget, earliest, latest)
    ("overlapping:narrows-the-earliest-end", 0.875, (None, 1.125, 1.25 + M)),
    ("overlapping:narrows-the-latest-end", 0.625, (None, 1.0, 1.125 + M)),
    ("overlapping:barely-at-the-earliest-end", 0.5 - M + 0.001, (None, 1.0, 1.001)),
    ("overlapping:barely-at-the-latest-end", 1.0, (None, 1.25, 1.25 + M)),
    ("later:starts-after-the-latest-end", 1.125, ("report", 1.375, 1.625 + M)),
    ("later:just-past-the-latest-end", 1.0 + 2 * M, ("report", 1.25 + 2 * M, 1.5 + 3 * M)),
    ("stale:ends-before-the-earliest-end", 0.25, (5, 1.0, 1.25 + M)),
    ("stale:just-before-the-earliest-end", 0.5 - M - 0.001, (5, 1.0, 1.25 + M)),
]


@pytest.mark.parametrize("remaining", [6, 2], ids=lambda r: f"remaining={r}")
@pytest.mark.parametrize(
    ("reset", "expected"),
    [pytest.param(reset, expected, id=name) for name, reset, expected in CLASSIFIED],
)
async def test_a_report_is_overlapping_later_or_stale_by_its_end_interval(
    clock: FakeClock,
    reset: float,
    expected: tuple[int | str | None, float, float],
    remaining: int,
) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=7, remaining=6, reset=1.0, rtt=0.25)  # our probe, alone
    ticket = await w.acquire()  # budget 5
    await clock.advance(0.25)
    w.release(ticket, report(remaining, reset, limit=7), status=200, pause=None)

    budget, earliest, latest = expected
    # A report of the same window saying 2 left counts 5, 3 more than ours, but with decimal
    # resets and no roll yet seen to refill, that is no proof of others (a lone client of a
    # token bucket reads so): not shared, nothing spread. (Whole-second or fixed windows:
    # test_pacer_shared.) 6 left of the same window counts fewer than ours, higher than the
    # budget: it stays 5; of a later window it counts the reporter alone, and replaces it.
    if budget is None:  # overlapping: the same window, so the budget only goes down
        budget = min(5, remaining)
    elif budget == "report":  # a later window: its report replaces the budget, even upwards
        budget = remaining
    assert w.available == budget
    assert w._end_lo == pytest.approx(t0 + earliest, abs=1e-9)
    assert w.reset_at == pytest.approx(t0 + latest, abs=1e-9)
    assert not w.shared
    assert not w._cold_shared
    # and, as behaviour: the budget goes out at once, all of it before the latest end, the
    # next request at the latest end
    now = clock.now
    times = await admissions(w, clock, budget, t0 + latest - 0.0005)
    assert len(times) == budget
    # at once, as far as the slots go: the probe and this request hold 2 of the 7 until a
    # window after their answers (no roll has been seen to refill the window: see held)
    at_once = min(budget, 7 - 2)
    assert times[:at_once] == [now] * at_once
    assert all(t > now for t in times[at_once:])
    assert await admitted_at(w, clock, t0 + latest - 0.0005) is None
    assert await admitted_at(w, clock, t0 + latest + 1e-6) == pytest.approx(t0 + latest)


async def test_overlapping_reports_narrow_the_end_and_keep_the_lowest_budget(
    clock: FakeClock,
) -> None:
    # Three reports of one server window ending at t0 + 2 (offsets from t0 below).
    w = Window("g")
    t0 = clock.now
    end = t0 + 2.0
    a = await w.acquire()  # sent at 0, handled at 0.1, answered at 0.5
    await clock.advance(0.5)
    w.release(a, report(9, end - (t0 + 0.1)), status=200, pause=None)
    assert (w._end_lo, w.reset_at) == pytest.approx((t0 + 1.9, t0 + 2.4 + M))
    b = await w.acquire()  # sent at 0.5, handled at 0.55, answered at 0.8
    c = await w.acquire()  # sent at 0.5, handled at 0.6, answered at 0.7
    await clock.advance(0.2)
    w.release(c, report(7, end - (t0 + 0.6)), status=200, pause=None)  # [1.9, 2.1 + M]
    assert w.available == 7
    assert (w._end_lo, w.reset_at) == pytest.approx((t0 + 1.9, t0 + 2.1 + M))
    await clock.advance(0.1)
    w.release(b, report(8, end - (t0 + 0.55)), status=200, pause=None)  # [1.95, 2.25 + M]
    assert w.available == 7  # b's 8 is older news
    assert (w._end_lo, w.reset_at) == pytest.approx((t0 + 1.95, t0 + 2.1 + M))
    assert w._end_lo is not None
    assert w.reset_at is not None
    assert w._end_lo <= end <= w.reset_at  # the truth stays inside


async def test_the_roll_comes_as_soon_as_the_end_is_certain_and_never_before(
    clock: FakeClock,
) -> None:
    # A server window ending at `end`; the probe learns it, then n requests go out at once, each
    # handled after a random uplink and answered after a random downlink, so their reports
    # arrive out of order. The end is certain at min(handled + downlink) + reset = end +
    # min(downlink) (+ _MARGIN): the next request must be admitted exactly then.
    loop = asyncio.get_running_loop()
    reordered = 0
    for seed in range(40):
        rnd = random.Random(seed)
        w = Window("g")
        t0 = clock.now
        end = t0 + rnd.uniform(1.0, 2.0)
        n = rnd.randint(1, 8)
        probe = await w.acquire()
        up, down = rnd.uniform(0, 0.2), rnd.uniform(0, 0.2)
        await clock.advance(up + down)
        w.release(probe, report(n, end - (t0 + up), limit=n + 1), status=200, pause=None)
        tickets = [await w.acquire() for _ in range(n)]
        assert w.available == 0
        handled = [clock.now + rnd.uniform(0, 0.2) for _ in tickets]
        downlinks = [down] + [rnd.uniform(0, 0.2) for _ in tickets]
        for rank, i in enumerate(sorted(range(n), key=handled.__getitem__)):
            # remaining as the server saw it: the probe and `rank` others were counted before
            info = report(n - 1 - rank, end - handled[i], limit=n + 1)
            loop.call_at(handled[i] + downlinks[i + 1], answer, w, tickets[i], info)
        answered = [handled[i] + downlinks[i + 1] for i in range(n)]
        reordered += answered != sorted(answered)
        admitted = await admitted_at(w, clock, end + 1.0)
        assert admitted is not None, seed
        assert admitted >= end, seed  # never early
        assert admitted == pytest.approx(end + min(downlinks) + _MARGIN, abs=1e-9), seed
    assert reordered >= 20


# --------------------------------------------------------------------------------------------
# The roll at the latest possible end
# --------------------------------------------------------------------------------------------


async def test_at_the_roll_the_whole_limit_less_what_is_in_flight_is_available(
    clock: FakeClock,
) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=4, remaining=3, reset=1.0)
    a, b, _c = [await w.acquire() for _ in range(3)]
    waiters = await queue_up(w, 5, clock)
    assert clock.pending() == [t0 + 1.0 + _MARGIN]  # one timer, at the latest possible end
    w.release(a, None, status=None, pause=None)  # a failed: 2 still in flight
    await clock.advance(1.0 + _MARGIN - 0.001)
    assert granted(waiters) == []
    await clock.advance(0.001)
    assert granted(waiters) == [5, 6]  # 4 - 2 in flight
    assert (w.available, w.reset_at) == (0, None)
    w.release(b, None, status=None, pause=None)
    await clock.settle()
    assert granted(waiters) == [5, 6]  # the roll is not repeated
    await cancel_all(waiters)


async def test_the_roll_also_happens_on_acquire_with_nobody_waiting(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, limit=3, remaining=0, reset=1.0)
    assert clock.pending() == []  # nobody waits: no timer
    await clock.advance(5)
    await w.acquire()  # does not suspend
    assert (w.available, w.reset_at) == (2, None)


async def _rolled(w: Window, clock: FakeClock) -> tuple[int, int]:
    """limit 5, the window ends in [t0 + 1, t0 + 1 + M]; `late` is sent at t0, the roll comes
    at t0 + 1 + M and `fresh` goes out right after it: budget 5 - 2 = 3."""
    await learned(w, clock, limit=5, remaining=4, reset=1.0)  # our probe counted, alone
    late = await w.acquire()
    await clock.advance(1.0 + _MARGIN)
    fresh = await w.acquire()
    assert (w.available, w.reset_at) == (3, None)
    return late, fresh


async def test_after_the_roll_a_report_certainly_from_the_new_window_gives_its_end(
    clock: FakeClock,
) -> None:
    # `fresh` left after the roll: its window ends after the one we rolled past, certainly.
    w = Window("g")
    t0 = clock.now
    late, fresh = await _rolled(w, clock)
    await clock.advance(0.198)  # answered at t0 + 1.2; handled at t0 + 1.1, the end at t0 + 2
    w.release(fresh, report(4, 0.9, 5), status=200, pause=None)
    assert w.reset_at == pytest.approx(t0 + 1.2 + 0.9 + _MARGIN)
    assert w.available == 3  # 4 left says the report: the roll's budget only goes down
    w.release(late, None, status=None, pause=None)
    for _ in range(3):
        await w.acquire()
    assert await admitted_at(w, clock, t0 + 2.1) is None
    assert await admitted_at(w, clock, t0 + 2.2) == pytest.approx(t0 + 2.1 + _MARGIN)


async def test_after_the_roll_a_report_that_may_be_from_either_window_only_lowers_the_budget(
    clock: FakeClock,
) -> None:
    # `late` left before the roll but reached the server only at t0 + 1.05, in the new window
    # (ending at t0 + 2): from its interval [t0 + 0.95, t0 + 2.05 + M] that cannot be told.
    w = Window("g")
    late, fresh = await _rolled(w, clock)
    await clock.advance(0.098)
    w.release(late, report(3, 0.95, 5), status=200, pause=None)
    assert w.available == 3 - 1  # fresh was sent after it: not counted yet
    assert w.reset_at is None  # the end is still unknown
    w.release(fresh, None, status=None, pause=None)


async def test_after_the_roll_a_report_ending_before_the_passed_window_is_ignored(
    clock: FakeClock,
) -> None:
    # Defensive: such a report needs a negative reset, which the header parser never produces.
    w = Window("g")
    late, _fresh = await _rolled(w, clock)
    w.release(late, report(0, -0.5, 5), status=200, pause=None)
    assert (w.available, w.reset_at) == (3, None)


async def test_after_the_roll_a_late_report_from_the_passed_window_is_ignored(
    clock: FakeClock,
) -> None:
    w = Window("g")
    late, _fresh = await _rolled(w, clock)
    await clock.advance(0.098)  # answered at t0 + 1.1; handled at t0 + 0.9, the end at t0 + 1
    w.release(late, report(0, 0.1, 5), status=200, pause=None)
    assert (w.available, w.reset_at) == (3, None)  # the old window's "0 left" is not ours


# --------------------------------------------------------------------------------------------
# Spent, nothing in flight, the end unknown: wait a whole window past the last known end
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(None, id="no-response"),
        pytest.param(500, id="5xx-without-headers"),
        pytest.param(200, id="2xx-without-headers"),
    ],
)
async def test_spent_with_nothing_in_flight_waits_a_whole_window_past_the_last_known_end(
    clock: FakeClock, status: int | None
) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=2, remaining=1, reset=1.0)  # ends in [t0 + 1, t0 + 1 + M]
    a = await w.acquire()
    await clock.advance(1.0 + _MARGIN)
    b = await w.acquire()  # rolls: 2 - 1 in flight, then this one: nothing left, no end known
    waiters = await queue_up(w, 3, clock)
    assert clock.pending() == []  # only a response can unblock it...
    w.release(a, None, status=status, pause=None)
    await clock.settle()
    assert granted(waiters) == []  # ...and b may still tell us when the window ends
    assert clock.pending() == []
    await clock.advance(0.5)
    w.release(b, None, status=status, pause=None)  # nothing left to tell us
    await clock.settle()
    wake = t0 + 1.0 + _MARGIN + 1.0  # the last known latest end + the longest reset seen
    assert clock.pending() == [wake]
    await clock.advance(wake - clock.now - 0.001)
    assert granted(waiters) == []
    await clock.advance(0.001)
    assert granted(waiters) == [4, 5]  # a new window has begun: the whole limit
    await cancel_all(waiters)


async def test_spent_with_nothing_in_flight_rolls_at_once_when_a_whole_window_has_passed(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await learned(w, clock, limit=2, remaining=1, reset=1.0)
    a = await w.acquire()
    w.release(a, None, status=None, pause=None)
    await clock.advance(1.0 + _MARGIN)
    b = await w.acquire()
    c = await w.acquire()  # the roll's budget, spent
    waiters = await queue_up(w, 3, clock)
    await clock.advance(3.0)  # b and c hang for longer than a window, then fail
    w.release(b, None, status=None, pause=None)
    w.release(c, None, status=None, pause=None)
    await clock.settle()
    assert granted(waiters) == [5, 6]
    await cancel_all(waiters)


async def test_spent_with_nothing_in_flight_waits_until_the_spent_window_has_ended(
    clock: FakeClock,
) -> None:
    # Server windows of 1 s ending at t0 + 0.5, t0 + 1.5, t0 + 2.5; limit 2.
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=2, remaining=1, reset=0.5)  # ends in [0.5, 0.5 + M]
    await clock.advance(0.5 + _MARGIN)
    a = await w.acquire()  # after the roll; it reaches the server 62.5 ms later
    await clock.advance(0.0625)
    w.release(a, report(1, (t0 + 1.5) - clock.now, 2), status=200, pause=None)
    b = await w.acquire()
    w.release(b, report(0, (t0 + 1.5) - clock.now, 2), status=200, pause=None)
    assert w.reset_at == pytest.approx(t0 + 1.5 + _MARGIN)  # the end is known to within M
    await clock.advance(t0 + 1.5 + _MARGIN - clock.now)
    c, d = await w.acquire(), await w.acquire()  # the new window's whole limit...
    await clock.advance(0.1)
    w.release(c, None, status=500, pause=None)  # ...counted by the server, but no headers
    w.release(d, None, status=500, pause=None)
    admitted = await admitted_at(w, clock, t0 + 3.0)
    assert admitted is not None
    assert admitted >= t0 + 2.5  # not while the spent window [1.5, 2.5) still runs


# --------------------------------------------------------------------------------------------
# A report that replaces the view (the first, or one of a later window) and requests in flight
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["first-report", "later-window"])
async def test_a_replacing_report_counts_earlier_requests_in_flight_as_unseen(
    clock: FakeClock, case: str
) -> None:
    w = Window("g")
    if case == "first-report":
        hung = await w.acquire()  # the first probe hangs on its way to the server...
        await clock.advance(PROBE_PATIENCE)
        reporter = await w.acquire()  # ...the second one is answered first: only it was counted
        w.release(reporter, report(9, 1.0), status=200, pause=None)
    else:
        await learned(w, clock, remaining=9, reset=1.0)  # ends in [t0 + 1, t0 + 1 + M]
        await clock.advance(0.9)
        hung = await w.acquire()  # on its way to the server...
        reporter = await w.acquire()  # ...when this one, sent after it, reaches the next window
        await clock.advance(0.2)
        w.release(reporter, report(9, 0.9), status=200, pause=None)
    assert w.in_flight == 1  # `hung` may still land in the reported window: 10 - 2 left
    assert w.available == 8
    w.release(hung, None, status=None, pause=None)


# --------------------------------------------------------------------------------------------
# 429: everyone pauses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pause", "info", "paused", "admitted"),
    [
        pytest.param(2.0, None, 2.0, 2.0, id="the-pause-asked-for"),
        pytest.param(None, report(0, 3.0), 3.0, 3.0 + M, id="no-pause:the-ratelimit-reset"),
        pytest.param(2.0, report(0, 3.0), 2.0, 3.0 + M, id="pause-shorter-than-the-reset"),
        pytest.param(None, None, _UNKNOWN_PAUSE, _UNKNOWN_PAUSE, id="nothing-said:fallback"),
        pytest.param(
            None, RateLimitInfo(10, 0, None), _UNKNOWN_PAUSE, _UNKNOWN_PAUSE, id="no-reset:fallback"
        ),
        # Zero means now: no pause, the window still ends when it was known to.
        pytest.param(None, report(0, 0.0), 0.0, 0.5 + M, id="zero-reset:honoured"),
        pytest.param(0.0, None, 0.0, 0.5 + M, id="zero-pause:honoured"),
    ],
)
async def test_a_429_pauses_everyone_for_the_wait_it_asks(
    clock: FakeClock,
    pause: float | None,
    info: RateLimitInfo | None,
    paused: float,
    admitted: float,
) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, remaining=9, reset=0.5)  # ends in [t0 + 0.5, t0 + 0.5 + M]
    a, _b = await w.acquire(), await w.acquire()
    w.release(a, info, status=429, pause=pause)
    assert w.paused_until == t0 + paused
    waiters = await queue_up(w, 12, clock)  # there is a budget, but newcomers queue too
    assert len(clock.pending()) == 1  # one timer
    await clock.advance(admitted - 0.001)
    assert granted(waiters) == []
    await clock.advance(0.001)
    assert granted(waiters) == list(range(4, 4 + 9))  # the roll: limit 10 less b in flight
    await cancel_all(waiters)


async def test_a_429_shorter_than_the_known_end_waits_for_the_end(clock: FakeClock) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, remaining=9, reset=5.0)
    a = await w.acquire()
    w.release(a, None, status=429, pause=2.0)
    waiter = spawn(w.acquire())
    await clock.advance(4.999 + _MARGIN)
    assert not waiter.done()
    assert clock.pending() == [t0 + 5.0 + _MARGIN]  # one timer, re-armed for the end
    await clock.advance(0.001)
    assert waiter.done()


async def test_a_429_after_the_roll_resumes_at_its_end_despite_requests_in_flight(
    clock: FakeClock,
) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=5, remaining=0, reset=1.0)
    await clock.advance(1.0 + _MARGIN)
    a, _b = await w.acquire(), await w.acquire()  # rolls: no end known now
    w.release(a, None, status=429, pause=2.0)
    waiters = await queue_up(w, 6, clock)
    assert clock.pending() == pytest.approx([t0 + 1.0 + _MARGIN + 2.0])
    await clock.advance(1.999)
    assert granted(waiters) == []
    await clock.advance(0.001)  # the pause's end is the window's: 5 less b in flight
    assert granted(waiters) == [4, 5, 6, 7]
    await cancel_all(waiters)


async def test_a_shorter_429_does_not_cut_a_longer_pause(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="close_async")
    w = Window("grp")
    t0 = clock.now
    await learned(w, clock, remaining=9, reset=0.5)
    a, b = await w.acquire(), await w.acquire()
    w.release(a, None, status=429, pause=5.0)
    w.release(b, None, status=429, pause=1.0)
    assert w.paused_until == t0 + 5.0
    assert [r.getMessage() for r in caplog.records] == ["grp: 429, pausing all requests for 5.000s"]
    waiter = spawn(w.acquire())
    await clock.advance(4.999)
    assert not waiter.done()
    await clock.advance(0.001)
    assert waiter.done()


@pytest.mark.parametrize("pause", [0.5, 1.5, 3.25], ids=lambda p: f"pause={p:g}s")
async def test_a_429_during_cold_start_holds_the_next_probe_to_its_end(
    clock: FakeClock, pause: float
) -> None:
    w = Window("g")
    t0 = clock.now
    probe = await w.acquire()
    waiters = await queue_up(w, 3, clock)
    w.release(probe, None, status=429, pause=pause)
    assert not w.unpaced  # a 429 without headers says nothing about pacing...
    assert w.reset_at is None  # ...nor about a window we know nothing of
    assert clock.pending() == [t0 + pause]  # the pause, not the probe's patience
    await clock.advance(pause - 0.001)
    assert granted(waiters) == []
    await clock.advance(0.001)
    assert granted(waiters) == [2]  # then one probe again, not a budget
    assert clock.pending() == [t0 + pause + PROBE_PATIENCE]
    await cancel_all(waiters)


async def test_a_429_with_headers_during_cold_start_learns_the_window(clock: FakeClock) -> None:
    w = Window("g")
    t0 = clock.now
    probe = await w.acquire()
    waiters = await queue_up(w, 12, clock)
    w.release(probe, report(0, 2.0), status=429, pause=None)
    assert (w.limit, w.paused_until) == (10, t0 + 2.0)
    await clock.advance(2.0 + _MARGIN - 0.001)
    assert granted(waiters) == []
    await clock.advance(0.001)
    assert granted(waiters) == list(range(2, 12))  # the whole limit
    await cancel_all(waiters)


async def test_a_429_pauses_an_unpaced_server_too(clock: FakeClock) -> None:
    w = Window("g")
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)
    a = await w.acquire()
    w.release(a, None, status=429, pause=1.5)  # a decimal wait is not rounded: taken in full
    waiters = await queue_up(w, 20, clock)
    await clock.advance(1.499)
    assert granted(waiters) == []
    await clock.advance(0.001)
    # Issue 11: the backlog then leaves at the rate the server was seen to accept (one success
    # per second here), not all at once.
    assert len(granted(waiters)) == 1
    await clock.advance(25.0)
    assert len(granted(waiters)) == 20


# --------------------------------------------------------------------------------------------
# The queue: first come, first served, one timer
# --------------------------------------------------------------------------------------------


async def test_waiters_are_served_first_come_first_served(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, limit=10, remaining=0, reset=1.0)
    order: list[int] = []

    async def acquirer(i: int) -> None:
        await w.acquire()
        order.append(i)

    tasks = [spawn(acquirer(i)) for i in range(25)]
    await clock.advance(1.0 + _MARGIN)
    assert order == list(range(10))
    await clock.advance(1.0)  # no report: after the roll the rest wait for responses
    assert order == list(range(10))
    await cancel_all(tasks)


async def test_a_newcomer_cannot_jump_the_queue_when_the_end_passed_unnoticed(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await learned(w, clock, limit=10, remaining=0, reset=1.0)
    head = spawn(w.acquire())
    await clock.settle()
    clock.now += 2  # a busy loop: the end passed, the timer has not run yet
    newcomer = spawn(w.acquire())  # queues behind the head, and arms an immediate wake-up
    await clock.settle()
    assert head.result() < newcomer.result()


async def test_thousands_of_waiters_share_one_timer(clock: FakeClock) -> None:
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, limit=10, remaining=0, reset=1.0)
    waiters = await queue_up(w, 3_000, clock)
    assert clock.pending() == [t0 + 1.0 + _MARGIN]
    armed = clock.armed
    await clock.advance(1.0 + _MARGIN)
    assert len(granted(waiters)) == 10
    assert clock.pending() == []  # the rest wait for responses, not for time
    assert clock.armed == armed  # and nothing was armed to find that out
    await cancel_all(waiters)


# --------------------------------------------------------------------------------------------
# Cancellation
# --------------------------------------------------------------------------------------------


async def test_a_cancelled_head_of_the_queue_leaves_it(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, limit=2, remaining=0, reset=1.0)
    waiters = await queue_up(w, 3, clock)
    waiters[0].cancel()
    await clock.settle()
    assert "waiters=2" in repr(w)
    await clock.advance(1.0 + _MARGIN)
    assert waiters[0].cancelled()
    assert granted(waiters) == [2, 3]  # the cancelled one took no slot


async def test_cancelled_waiters_inside_the_queue_are_skipped_when_reached(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await learned(w, clock, limit=3, remaining=0, reset=1.0)
    waiters = await queue_up(w, 5, clock)
    waiters[1].cancel()
    waiters[3].cancel()
    await clock.settle()
    assert "waiters=5" in repr(w)  # left where they are (O(1) cancel)...
    await clock.advance(1.0 + _MARGIN)
    assert [t.cancelled() for t in waiters] == [False, True, False, True, False]
    assert granted(waiters) == [2, 3, 4]  # ...and skipped: they take no slot
    assert "waiters=0" in repr(w)


async def test_a_waiter_cancelled_after_its_grant_gives_the_probe_back(clock: FakeClock) -> None:
    w = Window("g")
    probe = await w.acquire()
    waiters = await queue_up(w, 2, clock)
    w.release(probe, None, status=None, pause=None)  # grants waiter 0...
    waiters[0].cancel()  # ...which is cancelled before it resumes
    await clock.settle()
    assert waiters[0].cancelled()
    assert granted(waiters) == [3]  # the next probe went out at once
    assert w.in_flight == 1


async def test_a_waiter_cancelled_after_its_grant_gives_its_budget_back(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await learned(w, clock, limit=2, remaining=1, reset=1.0)
    a = await w.acquire()  # available 0
    waiter = spawn(w.acquire())
    await clock.settle()
    w.release(a, report(remaining=1, reset=2.0), status=200, pause=None)  # a later window
    assert w.available == 0  # its 1 left granted to the waiter...
    waiter.cancel()  # ...which is cancelled before it resumes: nothing was sent
    await clock.settle()
    assert waiter.cancelled()
    assert (w.available, w.in_flight) == (1, 0)
    newcomer = spawn(w.acquire())
    await clock.settle()
    assert newcomer.done()
    await cancel_all([newcomer])


async def test_a_waiter_cancelled_while_a_release_hands_out_slots_is_skipped(
    clock: FakeClock,
) -> None:
    # release() -> _wake() reaches the cancelled future before its task has run its handler:
    # the handler must let CancelledError through (no ValueError from a removal).
    w = Window("g")
    probe = await w.acquire()
    waiters = await queue_up(w, 2, clock)
    waiters[0].cancel()  # cancelled, but its task has not run yet...
    w.release(probe, None, status=None, pause=None)  # ...when the slot is handed out
    await clock.settle()
    assert granted(waiters[1:]) == [2]
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]


class CountingDeque(collections.deque[asyncio.Future[int]]):
    """A deque that charges every operation the elements it may visit: 1 at either end, the
    whole length for anything that searches or shifts."""

    def __init__(self) -> None:
        super().__init__()
        self.visits = 0

    def _scan(self) -> None:
        self.visits += len(self)

    def append(self, x: asyncio.Future[int]) -> None:
        self.visits += 1
        super().append(x)

    def appendleft(self, x: asyncio.Future[int]) -> None:
        self.visits += 1
        super().appendleft(x)

    def popleft(self) -> asyncio.Future[int]:
        self.visits += 1
        return super().popleft()

    def __getitem__(self, i: Any) -> Any:
        k = i % len(self)  # from the nearer end
        self.visits += 1 + min(k, len(self) - 1 - k)
        return super().__getitem__(i)

    def __iter__(self) -> Any:
        self._scan()
        return super().__iter__()

    def __contains__(self, x: object) -> bool:
        self._scan()
        return super().__contains__(x)

    def __delitem__(self, i: Any) -> None:
        self._scan()
        super().__delitem__(i)

    def remove(self, x: asyncio.Future[int]) -> None:
        self._scan()
        super().remove(x)

    def index(self, x: Any, *args: Any) -> int:
        self._scan()
        return super().index(x, *args)

    def count(self, x: Any) -> int:
        self._scan()
        return super().count(x)

    def insert(self, i: int, x: asyncio.Future[int]) -> None:
        self._scan()
        super().insert(i, x)

    def rotate(self, n: int = 1) -> None:
        self._scan()
        super().rotate(n)


async def test_cancelling_ten_thousand_queued_waiters_costs_o1_each(clock: FakeClock) -> None:
    # In reverse order: a removal from the queue would scan it whole every time (n^2 / 2 =
    # 5e7 visits); skipping lazily costs a few visits per cancel.
    n = 10_000
    w = Window("g")
    await learned(w, clock, limit=10, remaining=0, reset=1.0)
    await clock.advance(1.0 + _MARGIN)
    tickets = [await w.acquire() for _ in range(10)]  # the window spent, its end unknown
    w._waiters = queue = CountingDeque()
    waiters = await queue_up(w, n, clock)
    queue.visits = 0
    for i, task in enumerate(reversed(waiters[1:])):
        task.cancel()
        if i % 100 == 99:
            await asyncio.sleep(0)  # their handlers run while the head still waits
    await asyncio.sleep(0)
    assert queue.visits <= 10 * n
    assert len(queue) == n  # nothing searched for, nothing removed
    waiters[0].cancel()
    await clock.settle()
    assert len(queue) == 0  # the head went, and every cancelled one after it
    assert queue.visits <= 20 * n
    assert all(t.cancelled() for t in waiters)
    newcomer = spawn(w.acquire())
    for ticket in tickets:
        w.release(ticket, None, status=None, pause=None)
    await clock.advance(1.0 + _MARGIN)
    assert newcomer.result() == 12  # the first of the next window: nobody took a slot


# --------------------------------------------------------------------------------------------
# No busy loop
# --------------------------------------------------------------------------------------------


async def test_waiting_on_a_probe_after_a_cold_start_429_does_not_spin(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the pause the limit is still unknown: the wake-up must be the probe's patience,
    # not call_soon in a loop.
    w = Window("g")
    t0 = clock.now
    probe = await w.acquire()
    waiters = await queue_up(w, 2, clock)
    w.release(probe, None, status=429, pause=1.5)  # e.g. a legacy body's decimal rate_reset
    await clock.advance(1.5)
    assert granted(waiters) == [2]  # the next probe is out; waiter 1 waits for it
    assert clock.pending() == [t0 + 1.5 + PROBE_PATIENCE]

    wakeups = 0
    on_timer = w._on_timer

    def counting_on_timer() -> None:
        nonlocal wakeups
        wakeups += 1
        on_timer()

    monkeypatch.setattr(w, "_on_timer", counting_on_timer)
    await clock.settle(rounds=50)
    assert wakeups <= 1
    await cancel_all(waiters)


async def test_a_newcomer_does_not_disarm_an_overdue_probe_patience(clock: FakeClock) -> None:
    # The newcomer's _schedule() must arm an immediate wake-up for the overdue patience, not
    # leave the queue waiting for the probe's response.
    w = Window("g")
    await w.acquire()
    head = spawn(w.acquire())
    await clock.settle()
    clock.now += PROBE_PATIENCE + 0.5  # a busy loop: the patience timer has not run yet
    newcomer = spawn(w.acquire())
    await clock.settle()
    assert head.done()
    assert not newcomer.done()  # still one probe per patience
    await cancel_all([head, newcomer])


async def test_a_spent_window_with_requests_in_flight_arms_no_timer(clock: FakeClock) -> None:
    # Only a response can unblock the queue: no timer at all, so no spinning either.
    w = Window("g")
    await learned(w, clock, limit=2, remaining=0, reset=1.0)
    await clock.advance(1.0 + _MARGIN)
    a, b = await w.acquire(), await w.acquire()
    armed = clock.armed
    waiters = await queue_up(w, 3, clock)
    await clock.advance(5.0)
    assert (granted(waiters), clock.armed) == ([], armed)
    w.release(a, None, status=None, pause=None)
    w.release(b, None, status=None, pause=None)
    await cancel_all(waiters)


# --------------------------------------------------------------------------------------------
# Odds and ends
# --------------------------------------------------------------------------------------------


async def test_releasing_an_unknown_or_repeated_ticket_is_harmless(clock: FakeClock) -> None:
    w = Window("g")
    await learned(w, clock, remaining=9)
    a, b = await w.acquire(), await w.acquire()
    w.release(a, None, status=None, pause=None)
    w.release(a, None, status=None, pause=None)
    w.release(999, None, status=None, pause=None)
    w.release(0, None, status=None, pause=None)
    assert w.in_flight == 1
    w.release(b, None, status=None, pause=None)
    assert w.in_flight == 0


async def test_repr_shows_the_live_state(clock: FakeClock) -> None:
    w = Window("leads")
    assert repr(w) == (
        "<Window leads limit=None available=0 in_flight=0 waiters=0 paused_until=0.000>"
    )
    await learned(w, clock, limit=3, remaining=2)  # the probe took one of three
    await w.acquire()
    ticket = await w.acquire()
    waiters = await queue_up(w, 3, clock)
    assert repr(w) == (
        "<Window leads limit=3 available=0 in_flight=2 waiters=3 paused_until=0.000>"
    )
    w.release(ticket, None, status=429, pause=2.5)
    paused = f"{clock.now + 2.5:.3f}"
    assert repr(w) == (
        f"<Window leads limit=3 available=0 in_flight=1 waiters=3 paused_until={paused}>"
    )
    await cancel_all(waiters)


def test_pacer_keeps_one_window_per_group() -> None:
    pacer = Pacer()
    assert repr(pacer) == "<Pacer []>"
    leads = pacer.window("leads")
    opportunities = pacer.window("opportunities")
    assert pacer.window("leads") is leads
    assert pacer.window("opportunities") is opportunities
    assert leads is not opportunities
    assert (leads.group, opportunities.group) == ("leads", "opportunities")
    assert repr(pacer) == (
        "<Pacer [<Window leads limit=None available=0 in_flight=0 waiters=0 "
        "paused_until=0.000>, <Window opportunities limit=None available=0 in_flight=0 "
        "waiters=0 paused_until=0.000>]>"
    )


# --------------------------------------------------------------------------------------------
# Issue 11: no hang when a newcomer arrives between a pause's end and its timer
# --------------------------------------------------------------------------------------------


async def test_a_newcomer_after_an_unpaced_pause_ended_does_not_strand_the_queue(
    clock: FakeClock,
) -> None:
    # Before the fix, the newcomer's _schedule() cancelled the due pause timer and, with no
    # window end known (unpaced), armed nothing: 100 waiters, 0 in flight, forever.
    w = Window("g")
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)  # no headers: unpaced
    a = await w.acquire()
    w.release(a, None, status=429, pause=1.0)
    waiters = await queue_up(w, 100, clock)
    clock.now += 3.0  # a busy loop: the pause is over (a token saved) but its timer has not run
    newcomer = spawn(w.acquire())
    await clock.advance(10.0)  # the test's timeout, on the fake clock
    # It learned ~1 request/s from the 429 (one success in the second before it): the queue
    # drains at that rate, one timer at a time, instead of not at all.
    assert len(granted(waiters)) >= 8, w
    assert len(clock.pending()) == 1
    await cancel_all([*waiters, newcomer])


# --------------------------------------------------------------------------------------------
# fail(): the client was closed, every waiter raises at once
# --------------------------------------------------------------------------------------------


async def test_fail_wakes_every_paced_waiter_at_once_with_its_own_error(clock: FakeClock) -> None:
    pacer = Pacer()
    w = pacer.window("g")
    await learned(w, clock, remaining=0, reset=20.0)  # spent: the queue waits 20 s
    waiters = await queue_up(w, 3, clock)
    assert clock.pending()  # the roll's timer
    pacer.fail(lambda: RuntimeError("closed: not sent"))
    await clock.settle()
    errors = [t.exception() for t in waiters]
    assert all(isinstance(e, RuntimeError) and str(e) == "closed: not sent" for e in errors)
    assert len({id(e) for e in errors}) == 3  # one each: no shared traceback
    assert clock.pending() == []  # and the timer is gone
    assert (w.available, w.in_flight) == (0, 0)


async def test_a_waiter_failed_then_cancelled_gives_back_no_budget_it_never_had(
    clock: FakeClock,
) -> None:
    w = Window("g")
    await learned(w, clock, remaining=0, reset=20.0)
    waiter = spawn(w.acquire())
    await clock.settle()
    w.fail(lambda: RuntimeError("closed"))
    waiter.cancel()  # before it ran: its future already holds the error
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()  # cancelled as asked, not the error of a grant it never had
    assert (w.available, w.in_flight) == (0, 0)
