"""The cold-start ramp (``_transport/cold_start.py``): while a server has sent neither a
rate-limit header nor a 429, the requests in flight grow from ``START`` like TCP's slow start,
so the first 429 finds a handful in flight, not the whole pool. On the patched loop clock, then
over real sockets against FakeCloseServer's ``ingress`` model."""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from close_async import AsyncCloseClient, TokenBucket
from close_async._transport import http as _http
from close_async._transport.cold_start import DOUBLING, END, GAIN, START, ColdStart
from close_async._transport.pacer import Window
from close_async.testing import FakeCloseServer, RateLimitModel
from tests.support.clock import T0, FakeClock
from tests.support.pacer import cancel_all, granted, queue_up, report, spawn

LEAD_ID = "lead_" + "ColdStart".ljust(43, "0")


async def ramping(w: Window, clock: FakeClock, waiting: int) -> list[asyncio.Task[int]]:
    """The first success carries no headers (the ramp begins), ``waiting`` acquirers queued."""
    probe = await w.acquire()
    waiters = await queue_up(w, waiting, clock)
    w.release(probe, None, status=200, pause=None)
    await clock.settle()
    assert w.unpaced
    return waiters


async def test_the_first_success_without_headers_lets_only_start_go(clock: FakeClock) -> None:
    w = Window("g")
    waiters = await ramping(w, clock, 50)
    assert granted(waiters) == list(range(2, 2 + int(START)))  # before: all 50 at once
    assert w.in_flight == START
    assert w.try_acquire() is None  # newcomers queue behind them
    await cancel_all(waiters)


async def test_each_success_raises_the_cap_by_gain(clock: FakeClock) -> None:
    w = Window("g")
    waiters = await ramping(w, clock, 50)
    per_one_more = math.ceil(1 / GAIN)  # successes per request more in flight
    for i in range(per_one_more):  # the oldest in flight answers, one at a time
        w.release(granted(waiters)[i], None, status=200, pause=None)
        await clock.settle()
    # Each answer freed its slot (8 again), and the successes added one more.
    assert w.in_flight == START + 1
    assert len(granted(waiters)) == START + per_one_more + 1
    await cancel_all(waiters)


async def test_the_cap_doubles_with_time_so_hanging_requests_hold_nobody(
    clock: FakeClock,
) -> None:
    w = Window("g")
    waiters = await ramping(w, clock, 200)
    assert clock.pending() == [pytest.approx(T0 + DOUBLING * math.log2((START + 1) / START))]
    await clock.advance(DOUBLING)  # no answer at all: the cap doubled by time alone
    assert w.in_flight == 2 * START
    await clock.advance(DOUBLING * math.log2(END / START))  # past END: the ramp is over
    assert w.ramp.done
    assert len(granted(waiters)) == 200
    assert w.try_acquire() is not None  # and newcomers never wait
    await cancel_all(waiters)


async def test_the_ramp_never_refuses_for_max_wait(clock: FakeClock) -> None:
    # The ramp's wait is its own, not one the server asked for: max_wait=0 must not fail it.
    w = Window("g", max_wait=0.0)
    waiters = await ramping(w, clock, 20)
    await clock.advance(DOUBLING * math.log2(END / START))
    assert [t.exception() for t in waiters] == [None] * 20
    await cancel_all(waiters)


async def test_a_header_ends_the_ramp_at_once(clock: FakeClock) -> None:
    w = Window("g")
    waiters = await ramping(w, clock, 50)
    first = granted(waiters)[0]
    # What a lone client's report says: the server has counted at most the probe and the 8.
    w.release(first, report(remaining=191, reset=1.0, limit=200), status=200, pause=None)
    await clock.settle()
    assert w.ramp.done
    assert not w.unpaced
    assert len(granted(waiters)) == 50  # the header's budget paces now: room for all
    await cancel_all(waiters)


async def test_a_429_ends_the_ramp_at_once(clock: FakeClock) -> None:
    w = Window("g")
    waiters = await ramping(w, clock, 50)
    first = granted(waiters)[0]
    w.release(first, None, status=429, pause=0.5)
    assert w.ramp.done  # the pause and the learned rate pace from now on
    await clock.advance(0.5)
    assert len(granted(waiters)) > START
    await cancel_all(waiters)


async def test_a_429_before_the_first_success_means_no_ramp(clock: FakeClock) -> None:
    w = Window("g")
    probe = await w.acquire()
    w.release(probe, None, status=429, pause=0.1)
    assert w.ramp.done
    await clock.advance(0.1)
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)
    tickets = [await w.acquire() for _ in range(50)]  # never waits on a ramp
    assert len(tickets) == 50


def test_a_ramp_that_never_began_caps_nothing() -> None:
    ramp = ColdStart()
    ramp.answered(T0, 500, header=False)
    ramp.answered(T0, None, header=False)
    assert ramp.allows(T0, 10_000)
    assert not ramp.done
    assert ramp.cap(T0 + 1e9) == math.inf  # and no overflow however late


# Property: whatever the answers (successes, failures, 429s, headers) and the clock do, the
# ramp never has more in flight than its cap, a header or a 429 ends it at once, and whatever
# is still queued at the end goes once time passes (nothing hangs).
Step = tuple[str, int]
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "ok", "fail", "lost", "429", "header", "wait"]),
        st.integers(1, 40),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS)
def test_the_ramp_never_releases_more_than_its_cap(steps: list[Step]) -> None:
    asyncio.run(_drive(steps))


async def _drive(steps: list[Step]) -> None:
    with FakeClock(T0) as clock:
        w = Window("g")
        tasks = await ramping(w, clock, 0)
        out: collections.deque[int] = collections.deque()

        def check() -> None:
            for t in tasks:
                if t.done() and not t.cancelled() and t.result() not in handed:
                    handed.add(t.result())
                    out.append(t.result())
            if not w.ramp.done:
                assert w.in_flight <= math.ceil(w.ramp.cap(clock.loop.time())), w

        handed: set[int] = set()
        for kind, n in steps:
            if kind == "acquire":
                tasks += [spawn(w.acquire()) for _ in range(n)]
            elif kind == "wait":
                await clock.advance(n / 100)
            elif out:
                ticket = out.popleft()
                if kind in ("header", "429"):
                    info = report(remaining=5, reset=0.5) if kind == "header" else None
                    pause = 0.2 if kind == "429" else None
                    w.release(ticket, info, status=200 if kind == "header" else 429, pause=pause)
                    assert w.ramp.done
                else:
                    status = {"ok": 200, "fail": 500, "lost": None}[kind]
                    w.release(ticket, None, status=status, pause=None)
            await clock.settle()
            check()
        if w.unpaced:  # headers pace by their own rules (tests/transport/test_pacer*.py)
            for _ in range(100):  # a rate learned from a 429 may be slow, but never stuck
                while out:
                    w.release(out.popleft(), None, status=200, pause=None)
                await clock.advance(30.0)
                check()
            assert all(t.done() for t in tasks), w
        await cancel_all(tasks)


# --- over real sockets ------------------------------------------------------------------------


async def fan_out(server: FakeCloseServer, n: int) -> list[object]:
    async with AsyncCloseClient("k", base_url=server.base_url) as client:
        creates = [
            client.opportunities.create(lead_id=LEAD_ID, value=i, note=f"item-{i}")
            for i in range(n)
        ]
        server.reset()
        return await asyncio.wait_for(asyncio.gather(*creates, return_exceptions=True), 60)


async def test_an_ingress_first_429_finds_a_handful_in_flight_not_the_pool() -> None:
    # 40 per 0.5 s, 200 creates at once through the default pool of 100. Before the ramp, the
    # first success let the whole pool go: ~60 of it met 429s in the first window alone.
    model = RateLimitModel.preset("ingress", limit=40, window=0.5)
    async with FakeCloseServer(rate_limit=model) as server:
        results = await fan_out(server, 200)
        notes = collections.Counter(opp["note"] for opp in server.created)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert sorted(notes) == sorted(f"item-{i}" for i in range(200))  # none lost
    assert set(notes.values()) == {1}  # none duplicated
    # The ramp's burst (~8 + 40/16) plus the first pause's probes (<= 5), plus 0-2 a window.
    assert server.count_429 < 30, server.count_429


async def test_a_server_that_never_limits_gets_the_whole_pool_after_a_second_of_holding() -> None:
    # Requests that never answer (a server that never limits, answering slowly): the cap grows
    # by time alone while it holds requests back, and is over after 1 s of holding.
    with FakeClock() as clock:
        w = Window("g")
        probe = await w.acquire()
        w.release(probe, None, status=200, pause=None)  # headerless: the ramp begins
        tasks = [asyncio.ensure_future(w.acquire()) for _ in range(200)]
        await clock.settle()
        assert sum(t.done() for t in tasks) == START
        await clock.advance(DOUBLING * math.log2(END / START) + 0.01)
        sent = sum(t.done() for t in tasks)
        assert w.ramp.done
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sent == len(tasks)  # over: nothing caps them any more


async def test_idle_time_does_not_grow_the_cap() -> None:
    # A web backend's first create, a second of nothing, then a fan-out: the ramp still holds
    # it to START (counted from the first success, it would have been over, and all 50 gone).
    with FakeClock() as clock:
        w = Window("g")
        probe = await w.acquire()
        w.release(probe, None, status=200, pause=None)
        await clock.advance(1.0)
        tasks = [asyncio.ensure_future(w.acquire()) for _ in range(50)]
        await clock.settle()
        sent = sum(t.done() for t in tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert sent == START


# Taking the limiter's token before the ramp's turn piled token holders up behind the cap; each
# answer (or doubling) then let them go together: 10 requests within 10 ms with TokenBucket(50,
# burst=5). The turn comes first while the ramp caps (http.py), the token second.
RATE, BURST = 50.0, 5


async def test_the_ramp_never_sends_a_burst_above_the_users_token_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Timed where a request leaves (both its turn and its token held), not at the turn: a turn
    # only lets a request wait for its token, so turns granted together after a stalled loop
    # (7 within 10 ms, once, in CI) are no burst on the wire.
    starts: list[float] = []
    exchange = _http.exchange

    def recorded(*args: Any, **kwargs: Any) -> Any:
        starts.append(asyncio.get_running_loop().time())
        return exchange(*args, **kwargs)

    monkeypatch.setattr(_http, "exchange", recorded)
    async with (
        FakeCloseServer(rate_limit=None, latency=0.3) as server,  # no headers, slowish answers
        AsyncCloseClient("k", base_url=server.base_url, limiter=TokenBucket(RATE, BURST)) as c,
    ):
        await asyncio.gather(*[c.opportunities.create(lead_id=LEAD_ID, value=i) for i in range(80)])
    probe_answered = starts[0] + 0.3  # (the one-probe cold start before it is pre-existing)
    later = [t for t in starts if t > probe_answered + 0.05]
    worst = max(sum(a <= t < a + 0.01 for t in later) for a in later)
    assert worst <= BURST + RATE * 0.01 + 1, f"{worst} requests left within 10 ms"
