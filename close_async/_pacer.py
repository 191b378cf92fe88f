"""Pacing from the server's own ``RateLimit`` headers, one window per endpoint group.

Close does not publish its limits, but every response says how many requests are left in the
current window and when it resets. We keep that view and send only what it allows, so a fan-out of
thousands of creates meets almost no 429s:

- Cold start: until a response has told us the window, one request (a probe) is in flight at a
  time. Without this, ``asyncio.gather`` puts every request on the wire before the first header
  comes back and hundreds of them meet a 429.
- Known window: ``remaining`` from the latest report, minus the requests sent after the reporting
  one that are still in flight (the server cannot have counted those yet), minus every request sent
  since. Estimates only go down within a window: a report that arrives late may be stale.
- A report whose reset lies clearly later starts a new window; one whose reset lies clearly earlier
  is stale and ignored. When the reset time passes, the whole limit is available again, less what
  is still in flight.
- A 429 pauses every request of the group until the reset the server asked for.
- A server that sends no rate-limit headers at all is not paced.

Waiters are served first come, first served from a deque, with one timer for the next time-based
wake-up, so 10,000 queued requests cost O(1) per grant.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging

from ._ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# Fallback pause after a 429 that says nothing about when to come back.
_UNKNOWN_PAUSE = 1.0
# A cold-start probe that has had no answer for this long may be hanging: let another one go,
# rather than hold every request until the probe's own timeout.
PROBE_PATIENCE = 1.0


class Window:
    """What we know of one endpoint group's rate-limit window, and the queue waiting on it."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.limit: int | None = None
        self.available = 0
        self.reset_at: float | None = None  # loop time the current window ends, when known
        self.passed_reset: float | None = None  # the window end we last rolled past
        self.paused_until = 0.0
        self.unpaced = False  # the server sends no rate-limit headers
        self._window_len = 0.0  # longest reset seen: the window's length, roughly
        self._in_flight: list[int] = []  # send sequence numbers, ascending
        self._seq = 0
        self._probe_at = 0.0  # when the last cold-start probe left
        self._waiters: collections.deque[asyncio.Future[int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return (
            f"<Window {self.group} limit={self.limit} available={self.available} "
            f"in_flight={len(self._in_flight)} waiters={len(self._waiters)} "
            f"paused_until={self.paused_until:.3f}>"
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def acquire(self) -> int:
        """Wait until the window allows one more request; returns its ticket for ``release``."""
        if not self._waiters and self._can_send():
            return self._grant()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._schedule()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._discard(fut.result())  # granted, then cancelled: the slot goes back
            else:
                self._waiters.remove(fut)
            self._wake()
            raise

    def release(
        self, ticket: int, info: RateLimitInfo | None, *, status: int | None, pause: float | None
    ) -> None:
        """Record the outcome of a request: what its response said about the window.

        ``status`` is None when no response came back; ``pause`` is the wait a 429 asked for.
        """
        self._discard(ticket)
        now = asyncio.get_running_loop().time()
        if info is not None and info.remaining is not None and info.reset is not None:
            self._learn(ticket, info.limit, info.remaining, now + info.reset, info.reset)
        elif status is not None and status < 500 and status != 429 and self.limit is None:
            self.unpaced = True
            logger.debug("%s: responses carry no rate-limit headers; not pacing", self.group)
        if status == 429:
            wait = pause if pause is not None else info.reset if info and info.reset else None
            until = now + (wait if wait is not None else _UNKNOWN_PAUSE)
            if until > self.paused_until:
                self.paused_until = until
                logger.debug("%s: 429, pausing all requests for %.3fs", self.group, until - now)
            self.available = 0
            self.reset_at = max(self.reset_at or 0.0, until)
        self._wake()

    def _learn(
        self, ticket: int, limit: int | None, remaining: int, reset_at: float, reset: float
    ) -> None:
        self.unpaced = False
        if limit is not None and limit > 0:
            self.limit = limit
        elif self.limit is None:
            self.limit = remaining + 1 + len(self._in_flight)
        self._window_len = max(self._window_len, reset)
        tolerance = min(0.5, self._window_len / 4)
        # Requests sent after the reporting one may not have reached the server yet.
        uncounted = len(self._in_flight) - bisect.bisect_right(self._in_flight, ticket)
        estimate = remaining - uncounted
        if self.reset_at is None:
            if self.passed_reset is not None and reset_at < self.passed_reset + tolerance:
                return  # a late report from the window we already rolled past
            self.available, self.reset_at = estimate, reset_at
        elif reset_at > self.reset_at + tolerance:
            self.available, self.reset_at = estimate, reset_at  # a new window
        elif reset_at >= self.reset_at - tolerance:
            self.available = min(self.available, estimate)
            self.reset_at = max(self.reset_at, reset_at)
        # else: a stale report from an earlier window

    def _can_send(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now < self.paused_until:
            return False
        if self.unpaced:
            return True
        if self.limit is None:  # cold start: one probe at a time, unless it seems stuck
            return not self._in_flight or now >= self._probe_at + PROBE_PATIENCE
        if self.reset_at is not None and now >= self.reset_at:
            self.available = self.limit - len(self._in_flight)
            self.passed_reset, self.reset_at = self.reset_at, None
        elif self.reset_at is None and not self._in_flight and self.available <= 0:
            # Nothing in flight can tell us more (they all failed without a response).
            self.available = self.limit
        return self.available > 0

    def _grant(self) -> int:
        if self.limit is None and not self.unpaced:
            self._probe_at = asyncio.get_running_loop().time()
        self._seq += 1
        self._in_flight.append(self._seq)
        self.available -= 1
        return self._seq

    def _discard(self, ticket: int) -> None:
        i = bisect.bisect_left(self._in_flight, ticket)
        if i < len(self._in_flight) and self._in_flight[i] == ticket:
            del self._in_flight[i]

    def _wake(self) -> None:
        while self._waiters and self._can_send():
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(self._grant())
        self._schedule()

    def _schedule(self) -> None:
        """Arm one timer for the next moment time alone could unblock the queue."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        when = self.paused_until if self.paused_until > now else self.reset_at
        if self.limit is None and not self.unpaced and self.paused_until <= now:
            when = self._probe_at + PROBE_PATIENCE
        if when is not None and when > now:
            self._timer = loop.call_at(when, self._on_timer)
        elif self.paused_until <= now and self.reset_at is not None:
            self._timer = loop.call_soon(self._on_timer)  # type: ignore[assignment]

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()


class Pacer:
    """The windows of one client, by endpoint group (Close limits each group separately)."""

    def __init__(self) -> None:
        self._windows: dict[str, Window] = {}

    def window(self, group: str) -> Window:
        window = self._windows.get(group)
        if window is None:
            window = self._windows[group] = Window(group)
        return window

    def __repr__(self) -> str:
        return f"<Pacer {list(self._windows.values())!r}>"
