"""The pacer tests' tools: drive a ``Window`` by hand on the fake clock, and a simulation of a
fixed-window server in front of a crowd of acquirers (latencies from a seeded Random), who may
be split between several clients (API keys) sharing the server's one limit."""

from __future__ import annotations

import asyncio
import collections
import math
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from close_async._transport.pacer import Window
from close_async._transport.ratelimit import RateLimitInfo
from tests.support.clock import FakeClock


def spawn(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


def report(remaining: int, reset: float, limit: int | None = 10) -> RateLimitInfo:
    return RateLimitInfo(limit=limit, remaining=remaining, reset=reset)


def whole(remaining: int, reset: float = 1.0, limit: int = 10) -> RateLimitInfo:
    """A report with a whole-second reset (maybe rounded up, as live Close sends them)."""
    return RateLimitInfo(limit, remaining, float(reset), whole_seconds=True)


async def queue_up(window: Window, n: int, clock: FakeClock) -> list[asyncio.Task[int]]:
    """n acquirers, queued in index order (tasks first run in the order they were created)."""
    tasks = [spawn(window.acquire()) for _ in range(n)]
    await clock.settle()
    return tasks


def granted(tasks: list[asyncio.Task[int]]) -> list[int]:
    return [t.result() for t in tasks if t.done() and not t.cancelled()]


async def learned(
    window: Window,
    clock: FakeClock,
    *,
    limit: int | None = 10,
    remaining: int = 9,
    reset: float = 1.0,
    rtt: float = 0.0,
) -> None:
    """The cold-start probe goes out now and comes back ``rtt`` later with the first report:
    the window then ends in ``[now + reset, now + rtt + reset + _MARGIN]``."""
    ticket = await window.acquire()
    if rtt:
        await clock.advance(rtt)
    window.release(ticket, report(remaining, reset, limit), status=200, pause=None)


async def cancel_all(tasks: list[asyncio.Task[Any]]) -> list[Any]:
    for task in tasks:
        task.cancel()
    return await asyncio.gather(*tasks, return_exceptions=True)


async def admitted_at(window: Window, clock: FakeClock, until: float) -> float | None:
    """Queue one acquirer and run the clock up to ``until``: when was it admitted?"""
    loop = asyncio.get_running_loop()
    admitted: list[float] = []

    async def acquirer() -> None:
        await window.acquire()
        admitted.append(loop.time())

    task = spawn(acquirer())
    await clock.advance(until - clock.now)
    await cancel_all([task])
    return admitted[0] if admitted else None


async def admissions(window: Window, clock: FakeClock, n: int, until: float) -> list[float]:
    """Queue ``n`` acquirers and run the clock up to ``until``: when was each admitted?
    (Their tickets stay in flight; those not admitted by then are cancelled.)"""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def acquirer() -> None:
        await window.acquire()
        times.append(loop.time())

    tasks = [spawn(acquirer()) for _ in range(n)]
    await clock.advance(until - clock.now)
    await cancel_all(tasks)
    return times


def answer(window: Window, ticket: int, info: RateLimitInfo) -> None:
    window.release(ticket, info, status=200, pause=None)


async def unpaced_burst(
    w: Window, clock: FakeClock, ok: int, limited: int, pause: float = 1.5
) -> None:
    """A server without headers lets ``ok`` of a burst through in 0.1 s, then answers the
    ``limited`` still in flight with 429s asking for 1.5 s (a decimal wait, not rounded: the
    pause is taken in full; whole-second ones end early, see test_pacer_resume.py)."""
    probe = await w.acquire()
    w.release(probe, None, status=200, pause=None)  # no headers: unpaced, everyone goes
    w.ramp.done = True  # (as when the cold-start ramp is over: test_cold_start.py)
    tickets = [await w.acquire() for _ in range(ok - 1 + limited)]
    await clock.advance(0.1)
    for ticket in tickets[: ok - 1]:
        w.release(ticket, None, status=200, pause=None)
    for ticket in tickets[ok - 1 :]:
        w.release(ticket, None, status=429, pause=pause)


# --- the simulation ---------------------------------------------------------------------------

Latency = Callable[[random.Random], float]


@dataclass
class Simulation:
    """``limit`` requests per ``window`` seconds on the server's clock, windows aligned to a
    start that falls mid-window for the client. A request reaches the server ``uplink`` after
    it is sent (in send order when ``in_order``, else whenever its own latency says), is
    counted there, and its response comes back ``downlink`` later."""

    limit: int
    window: float
    uplink: Latency
    downlink: Latency
    in_order: bool = True
    think: Latency | None = None  # pause of each worker between requests
    whole_seconds: bool = False  # reports round reset up to whole seconds, like live Close
    clients: int = 1  # pacers (API keys, one Window each) sharing the limit; workers round-robin
    observe: Callable[[Window], None] | None = None  # called with the pacer after each report
    # results
    arrivals: collections.Counter[int] = field(default_factory=collections.Counter)
    rejected: int = 0
    events: list[str] = field(default_factory=list)
    late_reports: int = 0  # of a window older than one reported before
    late_reports_that_raised_the_budget: int = 0
    start: float = 0.0
    pacers: list[Window] = field(default_factory=list)

    async def run(self, clock: FakeClock, *, workers: int, windows: int, seed: int) -> None:
        loop = asyncio.get_running_loop()
        rnd = random.Random(seed)
        pacers = [Window("sim") for _ in range(self.clients)]
        self.pacers = pacers
        self.start = clock.now - 0.37 * self.window
        stop_at = clock.now + windows * self.window
        in_transit: collections.deque[asyncio.Future[tuple[int, RateLimitInfo, int]]]
        in_transit = collections.deque()
        newest_reported = -1

        def deliver(
            fut: asyncio.Future[tuple[int, RateLimitInfo, int]],
            answer: tuple[int, RateLimitInfo, int],
        ) -> None:
            if not fut.done():  # its worker may have been cancelled at the end of the run
                fut.set_result(answer)

        def serve(fut: asyncio.Future[tuple[int, RateLimitInfo, int]]) -> None:
            now = loop.time()
            idx = math.floor((now - self.start) / self.window)
            reset = self.start + (idx + 1) * self.window - now
            self.arrivals[idx] += 1
            if self.whole_seconds:
                reset = float(math.ceil(reset))
            if self.arrivals[idx] > self.limit:
                self.rejected += 1
                answer = (429, RateLimitInfo(self.limit, 0, reset, self.whole_seconds), idx)
            else:
                remaining = self.limit - self.arrivals[idx]
                info = RateLimitInfo(self.limit, remaining, reset, self.whole_seconds)
                answer = (200, info, idx)
            loop.call_later(self.downlink(rnd), deliver, fut, answer)

        async def worker(pacer: Window) -> None:
            nonlocal newest_reported
            while loop.time() < stop_at:
                if self.think is not None:
                    await asyncio.sleep(self.think(rnd))
                ticket = await pacer.acquire()
                self.events.append("send")
                fut: asyncio.Future[tuple[int, RateLimitInfo, int]] = loop.create_future()
                if self.in_order:
                    in_transit.append(fut)
                    loop.call_later(self.uplink(rnd), lambda: serve(in_transit.popleft()))
                else:
                    loop.call_later(self.uplink(rnd), serve, fut)
                status, info, idx = await fut
                self.events.append("report")
                available, in_flight = pacer.available, pacer.in_flight
                pause = info.reset if status == 429 else None
                pacer.release(ticket, info, status=status, pause=pause)
                if self.observe is not None:
                    self.observe(pacer)
                if idx < newest_reported:
                    self.late_reports += 1
                    handed_out = pacer.in_flight - (in_flight - 1)  # to waiters, by release()
                    if pacer.available + handed_out > available:
                        self.late_reports_that_raised_the_budget += 1
                newest_reported = max(newest_reported, idx)

        tasks = [spawn(worker(pacers[i % self.clients])) for i in range(workers)]
        await clock.advance(windows * self.window, rounds=8)
        outcomes = await cancel_all(tasks)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes), outcomes

    def end_of(self, at: float) -> float:
        """The end of the server window running at ``at``."""
        return self.start + (math.floor((at - self.start) / self.window) + 1) * self.window

    def full_windows(self, clock_start: float, windows: int) -> list[int]:
        """Server windows that lie wholly inside the run, by index."""
        first = math.ceil((clock_start - self.start) / self.window)
        last = math.floor((clock_start + windows * self.window - self.start) / self.window)
        return list(range(first, last))

    def used(self, clock_start: float, windows: int) -> float:
        """Arrivals over the windows wholly inside the run, as a share of what they allow."""
        full = self.full_windows(clock_start, windows)
        assert len(full) >= windows - 1
        return sum(self.arrivals[i] for i in full) / (self.limit * len(full))


def fixed(seconds: float) -> Latency:
    return lambda rnd: seconds


def uniform(low: float, high: float) -> Latency:
    return lambda rnd: rnd.uniform(low, high)


def exponential(mean: float) -> Latency:
    return lambda rnd: rnd.expovariate(1 / mean)
