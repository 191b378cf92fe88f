"""In-process request rate limiting: a FIFO token bucket for asyncio.

``TokenBucket(rate, burst)`` admits at most ``burst + rate * T`` acquisitions in any window of
``T`` seconds. Callers that must wait are served strictly in arrival order::

    bucket = TokenBucket(rate=10, burst=20)  # 10 requests/s, bursts of up to 20

    async def fetch(session, url):
        async with bucket:  # or: await bucket.acquire()
            return await session.get(url)

Tokens are consumed on entry and never returned on exit: the limit is on how often requests
start, not on how many run at once.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Protocol, runtime_checkable

__all__ = ["Limiter", "TokenBucket"]


@runtime_checkable
class Limiter(Protocol):
    """What ``AsyncCloseClient(limiter=...)`` accepts: anything with these."""

    async def acquire(self) -> None:
        """Wait until one more request may be sent (called before every attempt)."""

    async def __aenter__(self) -> None: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class TokenBucket:
    """Refills ``rate`` tokens per second up to ``burst``; starts full; one token per acquire.

    Bound lazily to the running loop on first use, and only ever reads ``loop.time()``.
    """

    def __init__(self, rate: float, burst: int) -> None:
        # bool is an int subclass, so True would otherwise pass as rate=1 / burst=1.
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < math.inf:
            raise ValueError(f"rate must be a positive finite number per second, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst!r}")
        self._rate = float(rate)
        self._burst = burst
        self._interval = 1.0 / self._rate
        # Kept as "full at _anchor, _debt tokens taken since", not a float level refilled on
        # every call: no rounding error accumulates (a full bucket really gives `burst` tokens
        # at once), and a timer armed for _next_token_at() sees that same float when it fires.
        self._anchor = -math.inf
        self._debt = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Waiters cancelled while queued stay here until they reach the head, so cancelling
        # any of 10,000 waiters is O(1). Invariant: the head, if any, is a live waiter, except
        # between a cancellation and its task running acquire()'s cleanup.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None  # armed only while someone waits

    async def acquire(self) -> None:
        """Wait until a token is free and take it. Waiters are served first come, first served."""
        loop = self._bind()
        now = loop.time()
        if not self._waiters and now >= self._next_token_at():
            self._take(now)
            return
        fut = loop.create_future()
        self._waiters.append(fut)
        self._serve()
        try:
            await fut
        except asyncio.CancelledError:
            # fut.cancel() is False when the future was already resolved: we were granted a
            # token but cancelled before resuming. Nobody used it, so hand it back.
            if not fut.cancel() and not fut.cancelled():
                self._debt -= 1
            self._serve()
            raise

    def has_capacity(self) -> bool:
        """True if ``acquire()`` would return without waiting right now."""
        return not self._waiters and self._now() >= self._next_token_at()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        """Nothing to do: tokens pace request starts and are not given back on exit."""

    def __repr__(self) -> str:
        # Rounding can dip ~1e-13 below zero: clamp, so it never reads "-0.00".
        tokens = max(0.0, self._burst - max(0.0, self._full_at() - self._now()) * self._rate)
        waiters = sum(not fut.done() for fut in self._waiters)
        return (
            f"TokenBucket(rate={self._rate!r}, burst={self._burst}, "
            f"tokens={tokens:.2f}, waiters={waiters})"
        )

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Moving to a new loop is fine while idle (e.g. one bucket across asyncio.run()
            # calls); futures queued on another loop could never be resolved from this one.
            if self._waiters:
                raise RuntimeError(f"{self!r} has waiters on another event loop")
            self._loop = loop
        return loop

    def _now(self) -> float:
        # Before first use there is no loop to ask, but then _anchor is -inf: any value works.
        return 0.0 if self._loop is None else self._loop.time()

    def _full_at(self) -> float:
        return self._anchor + self._debt * self._interval

    def _next_token_at(self) -> float:
        return self._anchor + (self._debt - self._burst + 1) * self._interval

    def _take(self, now: float) -> None:
        if self._full_at() <= now:
            self._anchor, self._debt = now, 1
        else:
            self._debt += 1

    def _on_timer(self) -> None:
        self._timer = None
        self._serve()

    def _serve(self) -> None:
        """Grant tokens to the head of the queue while they last, then arm the head's timer."""
        assert self._loop is not None
        now = self._loop.time()
        waiters = self._waiters
        while waiters and (waiters[0].done() or now >= self._next_token_at()):
            fut = waiters.popleft()
            if not fut.done():  # else it was cancelled while queued: just drop it
                self._take(now)
                fut.set_result(None)
        # Every waiter needs exactly one token, so the head's deadline does not depend on who
        # the head is: arrivals and cancellations behind it leave the timer alone. asyncio may
        # fire a timer up to its clock resolution early; we then simply re-arm the same deadline.
        when = self._next_token_at() if waiters else None
        if self._timer is not None and self._timer.when() != when:
            self._timer.cancel()
            self._timer = None
        if when is not None and self._timer is None:
            self._timer = self._loop.call_at(when, self._on_timer)
