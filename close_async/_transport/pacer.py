"""Pacing from the server's own ``RateLimit`` headers, one window per endpoint group.

Close does not publish its limits, but every response says how many requests are left in the
current window and when it resets. We keep that view and send only what it allows, so a fan-out of
thousands of creates meets almost no 429s:

- Cold start: until a response has told us the window, one request (a probe) is in flight at a
  time; a probe with no answer for ``PROBE_PATIENCE`` seconds lets one more go. Without this,
  ``asyncio.gather`` puts every request on the wire before the first header comes back and
  hundreds of them meet a 429.
- The window's budget and end come from the reports (``pacer_window.WindowView``, the base
  class): never more than ``remaining`` allows, and a roll at the latest possible end, or
  sooner once a report proves the window ended. A window that others use too (their admissions
  show in the reports, ``pacer_shared``) has its budget spread over the time left instead.
- A 429 pauses every request of the group until the reset the server asked for; repeated 429s
  that ask for (almost) nothing get a growing floor, ``ZERO_WAIT_FLOOR`` doubling per 429, so
  they do not turn into a burst.
- A server whose successful responses carry no rate-limit headers is not paced by headers;
  until a 429 or a header, the requests in flight ramp up from a few (``cold_start``).
- A 429 that says ``remaining > 0`` after about as many requests as we sent shows the limit
  really enforced, ``limit - remaining`` (``adaptive.HiddenLimit``): every report is read as
  of it from then on, so the window's budget paces, at that limit.
- A 429 the headers did not predict (none sent, or any 429 at all once the view said there
  was room) teaches a rate (``adaptive.LearnedRate``): from then on every
  request also needs a token of that bucket, so the backlog after a pause leaves at the rate
  the server was seen to accept, not all at once. A shared window drops such a rate once
  honest reports show it mostly unused (it measured our share while another key drained it),
  unless a 429 came without the window's count.
- Waiting for a turn, ``aclose()`` and ``max_wait``: ``pacer_queue.WaitQueue``, a base class.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from collections.abc import Callable

from .adaptive import HiddenLimit, LearnedRate
from .cold_start import ColdStart
from .pacer_queue import WaitQueue
from .pacer_resume import EarlyEnd, rounded_up
from .pacer_window import WindowView
from .ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# Fallback pause after a 429 that says nothing about when to come back.
_UNKNOWN_PAUSE = 1.0
# A cold-start probe that has had no answer for this long may be hanging: let another one go,
# rather than hold every request until the probe's own timeout.
PROBE_PATIENCE = 1.0


class Window(WindowView, WaitQueue):
    """What we know of one endpoint group's rate-limit window, and the queue waiting on it."""

    def __init__(self, group: str, *, max_wait: float = math.inf) -> None:
        WindowView.__init__(self, group)
        WaitQueue.__init__(self, max_wait)
        self.learned = LearnedRate()
        self.hidden = HiddenLimit()  # a stricter limit than announced, once a 429 showed one
        self.paused_until = 0.0
        self.unpaced = False  # the server sends no rate-limit headers
        self.ramp = ColdStart()  # while unpaced, until a 429 or a header: see cold_start
        self._honest = True  # no 429 has said remaining > 0 (the hidden model's lie)
        self._bare_429 = False  # a 429 without the window's count (an ingress before the app)
        self._sent_at: dict[int, float] = {}
        self._seq = 0
        self._probe_at = 0.0  # when the last cold-start probe left
        self._early: EarlyEnd | None = None  # a whole-second pause that may end early

    def __repr__(self) -> str:
        return (
            f"<Window {self.group} limit={self.limit} available={self.available} "
            f"in_flight={len(self._in_flight)} waiters={len(self._waiters)} "
            f"paused_until={self.paused_until:.3f}>"
        )

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def ramping(self) -> bool:
        """Before the server has said anything of its limit: the cold start's probe or ramp,
        which cap the requests in flight (the caller takes its turn here before a limiter's
        token, which would otherwise pile up behind the cap and leave in a burst)."""
        return self.limit is None and not self.ramp.done

    def give_back(self, ticket: int) -> None:
        """A granted ticket whose request was never sent: its slot and budget go back."""
        self._discard(ticket)
        self._sent_at.pop(ticket, None)
        self.available += 1
        if self._early is not None:  # a probe that never left: another may go
            self._early.lost(ticket, asyncio.get_running_loop().time())
        self._wake()

    def release(
        self, ticket: int, info: RateLimitInfo | None, *, status: int | None, pause: float | None
    ) -> None:
        """Record the outcome of a request: what its response said about the window.

        ``status`` is None when no response came back; ``pause`` is the wait a 429 asked for.
        """
        now = asyncio.get_running_loop().time()
        sent = self._sent_at.pop(ticket, now)
        self._discard(ticket)
        # A 429 saying remaining > 0 shows the limit really enforced: read reports as of it.
        info, explained = self.hidden.seen(info, status, now, available=self.available)
        if status != 429:
            self._counted(now)
        reported = info is not None and info.remaining is not None and info.reset is not None
        if reported:
            assert info is not None
            self.unpaced = False
            self._report(ticket, info, sent, now, status=status)
        elif status is not None and 200 <= status < 300 and self.limit is None and not self.unpaced:
            self.unpaced = True
            logger.debug("%s: responses carry no rate-limit headers; not pacing", self.group)
        if not self.ramp.done:  # (no call once it is over: on every request's path)
            self.ramp.answered(now, status, header=reported)
        if self._early is not None and status != 429:
            if status is None:
                self._early.lost(ticket, now)
            elif ticket == self._early.probe:
                self._resume(self._early.admitted(sent))
        if status is not None and 200 <= status < 300:
            self.learned.succeeded()
            if (
                self._honest
                and self.limit
                and info is not None
                and info.remaining is not None
                and 2 * info.remaining >= self.limit
            ):
                if self.shared and self.learned.rate is not None and not self._bare_429:
                    # Honest headers pace a shared window (its budget, spread): a rate learned
                    # while another key drained it measured our share, not the limit. Regrown
                    # from it (room()), the key left alone crawled: 2 -> 200/s took 10 windows.
                    # Not once a 429 came without the count: an ingress before an honest app
                    # refuses what the app never counts, so its 2xx always show room.
                    self.learned = LearnedRate()
                else:
                    self.learned.room()
        if status == 429:
            wait = pause if pause is not None else info.reset if info is not None else None
            wait = _UNKNOWN_PAUSE if wait is None else wait
            wait = self._known_end(info, now, wait)
            # The headers foresaw it if they are good and this is the first 429 since they were.
            foreseen = not self.unpaced and not (info and info.remaining)
            self._honest = self._honest and not (info and info.remaining)
            self._bare_429 = self._bare_429 or info is None or info.remaining is None
            early = self._early
            if early is not None:  # a pause already probing for its early end: no new evidence
                early.refused(ticket, sent, now, wait)
                self.paused_until = max(now, early.next)
                self._wake()
                return
            rounded = self.limit is None and rounded_up(pause) and wait <= self.max_wait
            wait = self.learned.refused(
                sent, now, wait, foreseen=foreseen, defer=rounded, explained=explained
            )
            until = now + wait
            if rounded:
                self._early = early = EarlyEnd(sent, now, wait)
                until = early.next
            if until > self.paused_until:
                self.paused_until = until
                logger.debug("%s: 429, pausing all requests for %.3fs", self.group, until - now)
            self._spent_until(until)
        self._wake()

    def _can_send(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now < self.paused_until:
            return False
        if self._early is not None:  # a whole-second pause, ending early: one probe at a time
            if now >= self._early.latest:
                self._resume(self._early.latest)
            elif self._early.probe is not None:
                return False
        # The learned token last: the window's bookkeeping (a roll, the end of a spent window
        # with nothing in flight) must run whatever the bucket says. Checked first, a spent
        # window never learned when to end, _schedule() armed no timer, and the queue hung
        # (found by tests/test_pacer_invariant.py's property test).
        if not self._window_allows(now):
            return False
        return self.learned.rate is None or self.learned.ready_at(now) <= now

    def _window_allows(self, now: float) -> bool:
        """Whether the window (not the learned rate) allows one more request now."""
        if self.unpaced:
            return self.ramp.done or self.ramp.allows(now, len(self._in_flight))
        if self.limit is None:  # cold start: one probe at a time, unless it seems stuck
            return not self._in_flight or now >= self._probe_at + PROBE_PATIENCE
        if not self.refills:
            return self._slot_at(now) == now
        if not self._header_allows(now) or self._spread_at(now) > now:
            return False
        return self._trusts_rolls() or self._roll_probe or self._slot_at(now) == now

    def _resume(self, end: float) -> None:
        """The pause of ``_early`` is over; the window ended at about ``end``."""
        self._early = None
        self.learned.resumed(end)
        logger.debug("%s: the whole-second pause ended early, at about %.3f", self.group, end)

    def _grant(self) -> int:
        now = asyncio.get_running_loop().time()
        if self._early is not None:
            self._early.probe = self._seq + 1
        if self.limit is None and not self.unpaced:
            self._probe_at = now
        self.learned.sent(now)
        self._roll_probe = False
        self._seq += 1
        self._in_flight.append(self._seq)
        self._sent_at[self._seq] = now
        self._last_sent = now
        self.available -= 1
        return self._seq

    def _discard(self, ticket: int) -> None:
        i = bisect.bisect_left(self._in_flight, ticket)
        if i < len(self._in_flight) and self._in_flight[i] == ticket:
            del self._in_flight[i]

    def _schedule(self) -> None:
        """Arm one timer for the next moment time alone could unblock the queue."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        asked = True  # a wait the server asked for (a pause, a reset), not one of our own
        if self.paused_until > now:
            when: float | None = self.paused_until
        elif self._early is not None and self._early.probe is not None:
            when, asked = self._early.latest, False  # the probe's answer, or the latest end
        elif self.limit is None and not self.unpaced:
            when = self._probe_at + PROBE_PATIENCE if self._in_flight else None
            asked = False
        else:
            when, asked = self._room_at(now), not self.unpaced  # unpaced: the ramp's own wait
            spread = self._spread_at(now)  # a shared window's own pacing, never refused
            if when is not None and spread > when:
                when, asked = spread, False
            if when is not None and self.learned.rate is not None:
                # Room, but no token yet: maybe one by now, the clock having moved since
                # _can_send looked (then call_soon; arming nothing would strand the queue).
                ready = self.learned.ready_at(now)
                if ready > when:  # the learned rate's own pacing, not a wait the server asked
                    when, asked = ready, False
        if when is None and not self._in_flight:
            # Nothing in flight to answer, so only time can unblock the queue: arming nothing
            # would hang it. Not reached (tests/test_pacer_invariant.py); a safety net.
            logger.warning("%s: pacer stranded its queue, polling: %r", self.group, self)
            when, asked = now + PROBE_PATIENCE, False
        if when is None:
            return  # only a response can unblock the queue now
        if asked and when - now > self.max_wait:
            self._refuse(when - now)
            return
        if when > now:
            self._timer = loop.call_at(when, self._on_timer)
        else:  # overdue (a reset, a pause, a probe's patience): wake up now
            self._timer = loop.call_soon(self._on_timer)  # type: ignore[assignment]

    def _room_at(self, now: float) -> float | None:
        """When the window could next have room by time alone (None: only an answer can tell)."""
        if self.unpaced:
            return now if self.ramp.done else self.ramp.room_at(now, len(self._in_flight))
        if self.refills and self.available <= 0:
            return self.reset_at  # the roll (which lets at least one go)
        if self.refills and (self._trusts_rolls() or self._roll_probe):
            return now
        return self._slot_at(now)


class Pacer:
    """The windows of one client, by endpoint group (Close limits each group separately)."""

    def __init__(self, *, max_wait: float = math.inf) -> None:
        self.max_wait = max_wait
        self._windows: dict[str, Window] = {}

    def window(self, group: str) -> Window:
        window = self._windows.get(group)
        if window is None:
            window = self._windows[group] = Window(group, max_wait=self.max_wait)
        return window

    def fail(self, error: Callable[[], BaseException]) -> None:
        """Every request waiting in any window raises an ``error()`` now (``Window.fail``)."""
        for window in self._windows.values():
            window.fail(error)

    def __repr__(self) -> str:
        return f"<Pacer {list(self._windows.values())!r}>"
