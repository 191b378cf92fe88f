"""Tests for _transport.limiter.TokenBucket, driven by a fake loop clock (no real sleeping)."""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Coroutine
from typing import Any

import pytest

from close_async._transport.limiter import Limiter, TokenBucket
from tests.support.clock import T0, FakeClock

# --------------------------------------------------------------------------------------------
# Fake clock. Candidate for tests/conftest.py (as a `fake_clock` fixture yielding FakeClock).
# --------------------------------------------------------------------------------------------


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


async def queue(
    bucket: TokenBucket, n: int, log: list[Any] | None = None
) -> list[asyncio.Task[Any]]:
    """Start n acquirers and let them reach the queue, in index order (tasks first run in the
    order they were created)."""

    async def acquirer(i: int) -> None:
        await bucket.acquire()
        if log is not None:
            log.append(i)

    tasks = [spawn(acquirer(i)) for i in range(n)]
    await asyncio.sleep(0)
    return tasks


def fill_level(bucket: TokenBucket) -> str:
    match = re.search(r"tokens=(-?[\d.]+), waiters=(\d+)", repr(bucket))
    assert match is not None
    return f"{match[1]}/{match[2]}"


# --------------------------------------------------------------------------------------------
# The fake clock itself
# --------------------------------------------------------------------------------------------


async def test_fake_clock_drives_asyncio_timers() -> None:
    loop = asyncio.get_running_loop()
    with FakeClock(T0) as clock:
        sleeper = spawn(asyncio.sleep(3600))
        await clock.settle()
        assert clock.pending() == [T0 + 3600]
        await clock.advance(3599.999)
        assert not sleeper.done()
        await clock.advance(0.001)
        assert sleeper.done()
        assert loop.time() == pytest.approx(T0 + 3600)
    assert loop.time() != clock.now  # uninstalled


async def test_fake_clock_starts_at_the_real_time_by_default() -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    with FakeClock() as clock:
        assert before <= clock.now == loop.time()
        await clock.advance(0.5)
        assert loop.time() == clock.now


# --------------------------------------------------------------------------------------------
# Basic behaviour
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst"), [(1, 1), (4.0, 3), (0.5, 10), (250.0, 1)])
async def test_starts_full_then_waits_exactly_one_interval(rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst)
    with FakeClock(T0) as clock:
        for _ in range(burst):
            assert bucket.has_capacity()
            await bucket.acquire()  # never suspends: the bucket starts full
        assert clock.armed == 0
        assert not bucket.has_capacity()

        waiter = spawn(bucket.acquire())
        await clock.settle()
        # One timer, for exactly when the next token is due: no polling.
        assert clock.pending() == [pytest.approx(T0 + 1 / rate, abs=1e-9)]
        await clock.advance(0.999 / rate)
        assert not waiter.done()
        await clock.advance(0.001 / rate)
        assert waiter.done()
        assert clock.armed == 1


@pytest.mark.parametrize(("rate", "burst", "n"), [(1.0, 1, 10), (3.0, 5, 40), (40.0, 7, 100)])
async def test_a_crowd_is_admitted_as_fast_as_the_rate_allows(
    rate: float, burst: int, n: int
) -> None:
    bucket = TokenBucket(rate, burst)
    times: list[float] = []

    async def acquirer() -> None:
        await bucket.acquire()
        times.append(asyncio.get_running_loop().time())

    with FakeClock(T0) as clock:
        tasks = [spawn(acquirer()) for _ in range(n)]
        await clock.advance(n / rate)
        assert all(t.done() for t in tasks)
    expected = [T0] * burst + [T0 + k / rate for k in range(1, n - burst + 1)]
    assert times == pytest.approx(expected, abs=1e-9)


async def test_refills_while_idle_but_never_beyond_burst() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    with FakeClock(T0) as clock:
        for _ in range(3):
            await bucket.acquire()
        await clock.advance(0.75)  # 1.5 tokens back
        assert fill_level(bucket) == "1.50/0"
        await clock.advance(3600)
        assert fill_level(bucket) == "3.00/0"
        for _ in range(3):
            await bucket.acquire()
        assert not bucket.has_capacity()


# --------------------------------------------------------------------------------------------
# The guarantee: at most burst + rate * T admissions in any window of length T
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
async def test_never_more_than_burst_plus_rate_times_window(seed: int) -> None:
    rnd = random.Random(seed)
    rate = rnd.choice([rnd.uniform(0.2, 2), rnd.uniform(2, 100)])
    burst = rnd.randint(1, 25)
    bucket = TokenBucket(rate, burst)
    admitted: list[float] = []
    cancelled: set[asyncio.Task[None]] = set()

    async def acquirer() -> None:
        await bucket.acquire()
        admitted.append(asyncio.get_running_loop().time())

    def cancel(task: asyncio.Task[None]) -> None:
        if task.cancel():  # False if it had already finished
            cancelled.add(task)

    loop = asyncio.get_running_loop()
    with FakeClock(T0) as clock:
        tasks: list[asyncio.Task[None]] = []
        for _ in range(300):
            tasks.append(spawn(acquirer()))
            if rnd.random() < 0.05:  # cancel someone now, whatever state it is in
                cancel(rnd.choice(tasks))
            if rnd.random() < 0.1:  # or later: after a jump() this can hit a waiter that was
                # granted its token in the same loop iteration but has not resumed yet
                loop.call_at(clock.now + rnd.uniform(0, 3) / rate, cancel, rnd.choice(tasks))
            if rnd.random() < 0.6:  # arrivals about 3x faster than the rate...
                await clock.advance(rnd.expovariate(rate) / 2)
            if rnd.random() < 0.03:  # ...with lulls long enough to refill the bucket
                await clock.advance(rnd.uniform(0.5, 1.5) * burst / rate)
            if rnd.random() < 0.05:  # a loop that was too busy to run timers on time
                await clock.jump(rnd.uniform(0, 5) / rate)
        await clock.advance(300 / rate + 1)
        assert all(t.done() for t in tasks)  # nobody was stranded
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    # Every acquirer either got a token or was cancelled.
    n_cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    assert n_cancelled == len(cancelled)
    assert len(admitted) == 300 - n_cancelled
    assert admitted == sorted(admitted)
    # The tightest windows start and end on an admission, so checking all of them is exhaustive.
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            count = j - i + 1
            assert count <= burst + rate * (admitted[j] - start) + 1e-6, (i, j, rate, burst)
    # ...and the bucket is not needlessly slow: the crowd fills it to the limit at some point.
    assert any(
        j - i + 1 > burst + rate * (admitted[j] - admitted[i]) - 1
        for i in range(len(admitted))
        for j in range(i + burst, len(admitted))
    )


# --------------------------------------------------------------------------------------------
# Fairness
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drive", ["advance", "jump"])
async def test_waiters_are_served_first_come_first_served(drive: str) -> None:
    bucket = TokenBucket(rate=10, burst=20)
    order: list[int] = []
    with FakeClock(T0) as clock:
        for _ in range(20):
            await bucket.acquire()
        tasks = await queue(bucket, 50, order)
        if drive == "advance":
            await clock.advance(5)  # one grant per timer
        else:
            await clock.jump(10)  # refilled to the burst: 20 grants from one timer callback...
            assert order == list(range(20))
            await clock.advance(3)  # ...then one per timer again
        assert all(t.done() for t in tasks)
    assert order == list(range(50))


async def test_a_newcomer_cannot_jump_the_queue_even_when_a_token_is_free() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    order: list[int | str] = []
    with FakeClock(T0) as clock:
        await bucket.acquire()
        await queue(bucket, 1, order)  # waiter 0, due at t+1

        clock.now += 5  # a token is free, but the waiter's timer has not had a chance to run
        assert not bucket.has_capacity()  # it is spoken for
        newcomer = spawn(bucket.acquire())
        newcomer.add_done_callback(lambda _: order.append("newcomer"))
        await clock.settle()
        assert order == [0]
        assert not newcomer.done()
        await clock.advance(1)
        assert order == [0, "newcomer"]


async def test_cancelled_queued_waiter_is_skipped_and_costs_no_token() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    order: list[int] = []
    with FakeClock(T0) as clock:
        await bucket.acquire()
        tasks = await queue(bucket, 4, order)
        tasks[1].cancel()
        tasks[2].cancel()
        await clock.settle()
        assert fill_level(bucket) == "0.00/2"
        assert clock.armed == 1  # cancelling behind the head does not touch its timer
        await clock.advance(1)
        assert order == [0]
        await clock.advance(1)  # waiter 3 gets the next token: the cancelled ones took none
        assert order == [0, 3]
        assert tasks[1].cancelled()
        assert tasks[2].cancelled()


@pytest.mark.parametrize("behind", [0, 1, 3])
async def test_cancelled_head_does_not_stall_the_queue(behind: int) -> None:
    bucket = TokenBucket(rate=2, burst=1)
    order: list[int] = []
    with FakeClock(T0) as clock:
        await bucket.acquire()
        tasks = await queue(bucket, 1 + behind, order)
        assert clock.pending() == [T0 + 0.5]
        tasks[0].cancel()
        await clock.settle()
        # With nobody left the timer is disarmed; otherwise it stands, for the new head.
        assert clock.pending() == ([T0 + 0.5] if behind else [])
        await clock.advance(0.5 * max(behind, 1))
        assert order == list(range(1, 1 + behind))
        assert bucket.has_capacity() is (behind == 0)


async def test_token_granted_to_a_waiter_cancelled_before_it_resumed_goes_to_the_next() -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate=1, burst=1)
    order: list[int] = []
    with FakeClock(T0) as clock:
        await bucket.acquire()
        tasks = await queue(bucket, 3, order)
        # Fires right after the bucket's timer, in the same loop iteration: waiter 0 has been
        # handed its token but its task has not run yet.
        loop.call_at(T0 + 1.000001, tasks[0].cancel)
        await clock.jump(1.000001)

        assert tasks[0].cancelled()
        assert order == [1]  # got waiter 0's token at once, instead of at T0 + 2
        assert clock.pending() == [pytest.approx(T0 + 2.000001)]  # and no token was minted
        await clock.advance(0.999)
        assert order == [1]
        await clock.advance(0.001001)
        assert order == [1, 2]
        assert fill_level(bucket) == "0.00/0"


async def test_token_given_back_with_nobody_waiting_refills_the_bucket() -> None:
    loop = asyncio.get_running_loop()
    bucket = TokenBucket(rate=1, burst=2)
    with FakeClock(T0) as clock:
        await bucket.acquire()
        await bucket.acquire()
        (task,) = await queue(bucket, 1)  # due at t+1, when the bucket has refilled to 1
        loop.call_at(T0 + 1.000001, task.cancel)  # cancelled right after being granted
        await clock.jump(1.000001)
        assert task.cancelled()
        assert fill_level(bucket) == "1.00/0"  # not 0.00: the token was given back
        assert clock.pending() == []


async def test_early_timer_is_re_armed_not_honoured() -> None:
    # asyncio runs a timer once it is due within the clock resolution (1 ns), i.e. possibly a
    # hair early: the bucket must re-check instead of trusting the timer.
    bucket = TokenBucket(rate=1, burst=1)
    with FakeClock(T0) as clock:
        await bucket.acquire()
        (task,) = await queue(bucket, 1)
        await clock.jump(1 - 5e-10)
        assert not task.done()
        await clock.advance(1e-9)
        assert task.done()


# --------------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------------


async def test_ten_thousand_waiters_with_one_timer_at_a_time() -> None:
    bucket = TokenBucket(rate=1000, burst=10)
    order: list[int] = []
    with FakeClock(T0) as clock:
        tasks = await queue(bucket, 10_000, order)
        assert fill_level(bucket) == "0.00/9990"
        assert clock.armed == 1  # only the head has a timer, whatever the queue length
        await clock.advance(5, rounds=2)
        assert len(clock.pending()) == 1
        await clock.advance(5, rounds=2)
        assert all(t.done() for t in tasks)
        assert clock.armed == 9990  # exactly one timer per token waited for: no polling
    assert order == list(range(10_000))


async def test_cancelling_ten_thousand_waiters_is_cheap() -> None:
    bucket = TokenBucket(rate=1, burst=1)
    order: list[int] = []
    with FakeClock(T0) as clock:
        await bucket.acquire()
        tasks = await queue(bucket, 10_000, order)
        for task in reversed(tasks[:-1]):  # the worst order for a list.remove() approach
            task.cancel()
        await clock.settle()
        assert fill_level(bucket) == "0.00/1"
        await clock.advance(1)
        assert order == [9999]
        assert clock.armed == 1


# --------------------------------------------------------------------------------------------
# API surface
# --------------------------------------------------------------------------------------------


async def test_async_with_takes_a_token_and_keeps_it() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    with FakeClock(T0):
        async with bucket as entered:
            assert entered is None
        assert fill_level(bucket) == "1.00/0"
        with pytest.raises(KeyError):
            async with bucket:
                raise KeyError("boom")  # propagates; the token is spent anyway
        assert not bucket.has_capacity()


def test_token_bucket_is_a_limiter() -> None:
    limiter: Limiter = TokenBucket(1, 1)  # statically, for mypy
    assert isinstance(limiter, Limiter)  # and at runtime


async def test_repr_shows_live_state() -> None:
    bucket = TokenBucket(rate=2, burst=3)
    assert repr(bucket) == "TokenBucket(rate=2.0, burst=3, tokens=3.00, waiters=0)"
    with FakeClock(T0) as clock:
        await bucket.acquire()
        assert repr(bucket) == "TokenBucket(rate=2.0, burst=3, tokens=2.00, waiters=0)"
        await clock.advance(0.125)
        assert repr(bucket) == "TokenBucket(rate=2.0, burst=3, tokens=2.25, waiters=0)"
        await bucket.acquire()
        await bucket.acquire()
        tasks = await queue(bucket, 2)
        assert repr(bucket) == "TokenBucket(rate=2.0, burst=3, tokens=0.25, waiters=2)"
        for task in tasks:
            task.cancel()
        await clock.settle()
        assert repr(bucket) == "TokenBucket(rate=2.0, burst=3, tokens=0.25, waiters=0)"


@pytest.mark.parametrize("rate", [3, 7, 10, 13, 0.3])
async def test_repr_of_an_empty_bucket_never_shows_minus_zero(rate: float) -> None:
    bucket = TokenBucket(rate, burst=2)
    with FakeClock(T0):
        await bucket.acquire()
        await bucket.acquire()
        assert "tokens=0.00," in repr(bucket)


def test_construct_and_inspect_outside_a_loop_then_use_across_loops() -> None:
    bucket = TokenBucket(rate=1000, burst=1)  # no running loop here
    assert bucket.has_capacity()
    assert "tokens=1.00" in repr(bucket)
    asyncio.run(bucket.acquire())  # binds to this loop, real clock
    asyncio.run(bucket.acquire())  # idle, so it rebinds; waits up to 1 ms of real time


def test_waiters_from_another_loop_are_refused() -> None:
    bucket = TokenBucket(rate=0.001, burst=1)
    first = asyncio.new_event_loop()
    second = asyncio.new_event_loop()
    try:
        first.run_until_complete(bucket.acquire())
        waiter = first.create_task(bucket.acquire())
        first.run_until_complete(asyncio.sleep(0))
        with pytest.raises(RuntimeError, match="waiters on another event loop"):
            second.run_until_complete(bucket.acquire())
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            first.run_until_complete(waiter)
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        pytest.param(0, 1, "rate .* got 0", id="rate-zero"),
        pytest.param(-1.5, 1, r"rate .* got -1\.5", id="rate-negative"),
        pytest.param(math.nan, 1, "rate .* got nan", id="rate-nan"),
        pytest.param(math.inf, 1, "rate .* got inf", id="rate-inf"),
        pytest.param(True, 1, "rate .* got True", id="rate-bool"),
        pytest.param("10", 1, "rate .* got '10'", id="rate-str"),
        pytest.param(None, 1, "rate .* got None", id="rate-none"),
        pytest.param(1, 0, "burst .* got 0", id="burst-zero"),
        pytest.param(1, -3, "burst .* got -3", id="burst-negative"),
        pytest.param(1, 2.0, r"burst .* got 2\.0", id="burst-float"),
        pytest.param(1, 1.5, r"burst .* got 1\.5", id="burst-fractional"),
        pytest.param(1, True, "burst .* got True", id="burst-bool"),
        pytest.param(1, math.inf, "burst .* got inf", id="burst-inf"),
    ],
)
def test_invalid_arguments_are_rejected(rate: Any, burst: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(rate, burst)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        pytest.param(1, 1, id="ints"),
        pytest.param(1e-6, 1, id="one-per-11-days"),
        pytest.param(1e6, 10**6, id="huge"),
    ],
)
def test_valid_arguments_are_accepted(rate: float, burst: int) -> None:
    assert TokenBucket(rate, burst).has_capacity()
