"""A limit shared with another consumer (a second API key on the organisation's limit): the
rules of pacer_shared's "Others' admissions" section, on the fake loop clock."""

from __future__ import annotations

import asyncio

import pytest

from close_async._transport.pacer import Window
from close_async._transport.pacer_shared import _MARGIN
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock
from tests.support.pacer import (
    Simulation,
    admissions,
    answer,
    cancel_all,
    learned,
    report,
    spawn,
    uniform,
    whole,
)


async def others_seen(clock: FakeClock) -> Window:
    """A window whose second report, at ``t0 + 0.1``, counts 3 admissions not ours (whole-second
    resets: rolls are trusted from the first report, so others' admissions are looked for)."""
    w = Window("g")
    answer(w, await w.acquire(), whole(9))  # our probe, the only admission: alone
    a = await w.acquire()
    await clock.advance(0.1)
    # 5 admissions counted, 2 of them ours: 3 by someone sending into this window now.
    answer(w, a, whole(5))
    return w


async def test_admissions_not_ours_spread_the_rest_of_the_budget_over_the_time_left(
    clock: FakeClock,
) -> None:
    t0 = clock.now
    w = await others_seen(clock)
    assert (w.available, w.reset_at) == (5, pytest.approx(t0 + 1.0 + _MARGIN))
    times = await admissions(w, clock, 5, t0 + 1.0)
    assert len(times) == 5  # the whole budget, before the window ends...
    gaps = [b - a for a, b in zip([t0, *times[:-1]], times, strict=True)]
    assert min(gaps) > 0.1  # ...but spread over it: not the burst that meets the other's
    assert times[-1] < t0 + 1.0


@pytest.mark.parametrize(
    ("reset", "shared"), [(1.0, True), (3.0, False)], ids=["same-window", "later-window"]
)
async def test_a_report_counting_more_than_ours_is_others_only_if_of_the_same_window(
    clock: FakeClock, reset: float, shared: bool
) -> None:
    # 8 counted, 2 of them ours. In the window the probe reported (its end in [t0, t0 + 1 + M]):
    # others send now. Of a later window (its end from t0 + 2): it counts the window before
    # too, and says nothing of anyone now.
    w = Window("g")
    answer(w, await w.acquire(), whole(9))
    a = await w.acquire()
    await clock.advance(0.1)
    answer(w, a, whole(2, reset=reset))
    assert w.available == 2
    assert w.shared is shared


async def test_a_lone_client_with_consistent_reports_still_sends_its_budget_at_once(
    clock: FakeClock,
) -> None:
    # Nine of ours in flight over a roll (the server may or may not have counted each one), a
    # tenth sent at the roll: every report is one a lone client can get, so nothing is spread.
    w = Window("g")
    t0 = clock.now
    await learned(w, clock, remaining=9, reset=1.0)
    tickets = [await w.acquire() for _ in range(9)]  # the whole budget at once
    assert clock.now == t0
    late = await admissions(w, clock, 1, t0 + 1.0 + _MARGIN)  # the roll: 10 - 9 in flight
    assert late == [t0 + 1.0 + _MARGIN]
    await clock.advance(0.01)
    for i, ticket in enumerate(tickets):  # counted in the new window, one by one
        answer(w, ticket, report(remaining=9 - i, reset=0.98))
    answer(w, 11, report(remaining=0, reset=0.98))  # and the tenth: all ten ours
    await clock.advance(t0 + 2.5 - clock.now)  # the next roll: the whole limit, at once
    now = clock.now
    assert await admissions(w, clock, 10, now + 0.5) == [now] * 10


async def test_a_shared_window_rolls_as_soon_as_a_report_proves_it_ended(
    clock: FakeClock,
) -> None:
    # Whole-second resets: the window ends somewhere in [t0, t0 + 1 + M]. A report with more
    # left than one answered before its request left is of a later window (a fixed window only
    # goes down): it ended already, so the next goes now, not at the latest end.
    w = Window("g")
    t0 = clock.now
    first = await w.acquire()
    answer(w, first, whole(9))
    a = await w.acquire()
    await clock.advance(0.1)
    answer(w, a, whole(5))  # 3 admissions not ours: shared
    await clock.advance(0.05)
    pending = [spawn(w.acquire()) for _ in range(2)]  # spread: they leave one by one
    await clock.advance(0.4 - 0.15)
    b, c = (task.result() for task in pending)
    assert w._sent_at[c] > t0 + 0.1  # c left after the report of 5 left was read
    answer(w, b, whole(0))  # the others spent the rest: nothing left until the roll
    assert w.available <= 0
    await clock.advance(0.2)
    answer(w, c, whole(8))  # 8 left > 5: the server has rolled (its new window counted 2)
    now = clock.now
    assert now == pytest.approx(t0 + 0.6)
    assert w.reset_at is None or w.reset_at > now  # rolled
    times = await admissions(w, clock, 1, t0 + 1.0)
    assert times == [now]  # not at the latest end, t0 + 1 + M


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
async def test_two_keys_sharing_a_whole_second_limit_meet_few_429s_and_use_it(
    clock: FakeClock, seed: int
) -> None:
    # Ten workers per key, each key's reports showing the other's admissions: spread, the
    # keys meet in each window's reports. (Each bursting its whole budget at every roll: 6% of
    # requests answered 429 and 84-93% of the limit used, seeds 0-3.)
    limit = 40
    sim = Simulation(limit, 1.0, uniform(0.005, 0.02), uniform(0.005, 0.02), whole_seconds=True)
    sim.clients = 2
    t0 = clock.now
    await sim.run(clock, workers=20, windows=10, seed=seed)
    assert sim.rejected <= 0.03 * sum(sim.arrivals.values())
    full = sim.full_windows(t0, 10)
    admitted = sum(min(sim.arrivals[i], limit) for i in full)
    assert admitted >= 0.95 * limit * len(full)


async def test_a_key_left_alone_on_a_shared_limit_does_not_crawl_at_a_rate_learned_meanwhile(
    clock: FakeClock,
) -> None:
    # While another key drained the shared window, a 429 taught this one ~3 requests a second
    # (its own share). Once the other key stops, honest reports show the window mostly unused:
    # the budget paces again, not that rate regrowing (10 windows from 2/s to 200/s, measured).
    t0 = clock.now
    w = await others_seen(clock)
    w.learned.sent(t0)
    w.learned.succeeded()
    w.learned.throttled(t0, t0 + 0.1, 0.9)  # 3 of ours admitted in 1 s: 2.85/s
    assert w.learned.rate is not None
    assert w.learned.rate < 3.0
    await clock.advance(t0 + 1.5 - clock.now)  # rolled at t0 + 1 + M; the other key is gone
    b = await w.acquire()
    answer(w, b, report(remaining=9, reset=0.5))  # all but ours left: room
    times = await admissions(w, clock, 8, t0 + 2.0)
    assert len(times) == 8  # the budget, spread over what is left of the window


async def sent_within(w: Window, clock: FakeClock, seconds: float) -> int:
    """A request that the spread lets go within ``seconds``: its ticket."""
    task: asyncio.Task[int] = spawn(w.acquire())
    await clock.advance(seconds)
    assert task.done()
    return task.result()


async def test_a_first_report_counting_admissions_not_ours_spreads_the_first_window(
    clock: FakeClock,
) -> None:
    # Two keys starting together: each probe's report counts the other's probe too. Bursting
    # what it showed, each key sent nearly the whole limit at once (5% of a 2,000-create
    # fan-out answered 429, nearly all in the first window). The next window, a second report
    # having shown no one else sending since, goes at once again.
    w = Window("g")
    t0 = clock.now
    answer(w, await w.acquire(), whole(8))  # 2 counted: our probe and one not ours
    answer(w, await sent_within(w, clock, 0.2), whole(7))  # ours: still one not ours
    times = await admissions(w, clock, 7, t0 + 1.0)
    assert len(times) == 7  # the budget, before the window ends...
    assert len(set(times)) == 7  # ...one at a time
    roll = t0 + 1.0 + _MARGIN
    assert await admissions(w, clock, 3, roll + 0.5) == [roll] * 3  # 10 less 7 in flight


async def test_a_first_window_rolled_before_a_second_report_spreads_the_next_one_too(
    clock: FakeClock,
) -> None:
    # A fan-out begun just before a window's end: the probe's report counts one not ours, and
    # the next report already proves a new window (as much left: a success counted after the
    # probe's would say less). Nothing has told whether the other key still sends, so the new
    # window is spread too, and its far smaller room than a roll promised is the other key's
    # use, not a sign of a sliding window. Bursting it (or pacing it by slots, as sliding),
    # each key sent what its first report there showed: of one key's 98, 96 answered 429
    # (bench_fanout.py --models shared --offset 0.9).
    w = Window("g")
    t0 = clock.now
    answer(w, await w.acquire(), whole(8))  # 2 counted: our probe and one not ours
    answer(w, await sent_within(w, clock, 0.2), whole(8))  # as much left: a new window
    assert w.available == 8  # the new window's budget: 10 less the two counted in it
    assert w._cold_shared
    answer(w, await sent_within(w, clock, 0.2), whole(2))  # the other key spent 5 meanwhile
    assert w.refills  # still a fixed window
    times = await admissions(w, clock, 2, t0 + 1.2)
    assert len(times) == 2
    assert times[1] - times[0] > 0.1  # spread, not a burst


async def test_a_lone_client_of_a_token_bucket_is_never_taken_to_share_it(
    clock: FakeClock,
) -> None:
    # A bucket's decimal ``reset`` is the time until it is full: before the window's length is
    # known, our own admissions since its "start" look too few, and the reports seemed to count
    # someone else's (the bench's token_bucket model: ratio 0.94, was 0.98). Rolls not yet
    # trusted (decimal resets, no refill seen), nothing is read as others' admissions.
    limit, w, loop = 200, Window("g"), asyncio.get_running_loop()
    bucket = {"tokens": float(limit), "at": clock.now, "admitted": 0}

    async def worker() -> None:
        while True:
            ticket = await w.acquire()
            await asyncio.sleep(0.01)  # on its way: the bucket takes it on arrival
            now = loop.time()
            tokens = min(limit, bucket["tokens"] + (now - bucket["at"]) * limit)
            ok = tokens >= 1.0
            bucket.update(tokens=tokens - ok, at=now, admitted=bucket["admitted"] + ok)
            reset = (limit - tokens + ok) / limit if ok else (1.0 - tokens) / limit
            await asyncio.sleep(0.01)
            info = RateLimitInfo(limit, int(tokens - ok), reset, False)
            w.release(ticket, info, status=200 if ok else 429, pause=None if ok else reset)

    tasks = [spawn(worker()) for _ in range(100)]
    await clock.advance(3.0)
    await cancel_all(tasks)
    assert not w.shared
    assert not w._cold_shared
    assert bucket["admitted"] >= 0.95 * 3.0 * limit  # its full rate, at least
