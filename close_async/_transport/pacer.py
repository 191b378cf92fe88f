"""Pacing from the server's own ``RateLimit`` headers, one window per endpoint group.

Close does not publish its limits, but every response says how many requests are left in the
current window and when it resets. We keep that view and send only what it allows, so a fan-out of
thousands of creates meets almost no 429s:

- Cold start: until a response has told us the window, one request (a probe) is in flight at a
  time; a probe with no answer for ``PROBE_PATIENCE`` seconds lets one more go. Without this,
  ``asyncio.gather`` puts every request on the wire before the first header comes back and
  hundreds of them meet a 429.
- Budget: ``remaining`` from a report, minus the requests sent after the reporting one that are
  still in flight (the server cannot have counted those yet), minus every request sent since.
  Within a window the budget only goes down: a report that arrives late may be stale.
- When does the window end? A report's ``reset`` counts from the moment the server handled the
  request, which lies between sending it and reading the answer; so the end lies in
  ``[sent + reset, answered + reset]``. Reports whose intervals overlap speak of the same window
  (and narrow it); one that starts after ours ends speaks of a later window; one that ends before
  ours starts is stale. We roll to a new window only at the latest possible end: never early.
- After a roll the whole limit is available again, less what is still in flight, until a report
  from the new window says more. Until a roll has been seen to refill (``fixed``), a roll with
  decimal resets lets out only the free slots (``_held``) and one request more: a sliding
  window at its roll has freed only what left it. The first report of a request sent after the
  roll decides: room for a refill, a fixed window (the rest goes at once); far less room, or an
  end that soon, it is not fixed and from then on only the slots pace. So do three reports in
  a row, each of a later window and nearly spent: a token bucket's ``reset`` is the time until
  it is full, so no roll ever comes.
- Whole-second resets (``reset=1``): an integral ``reset`` may be rounded up, so the end lies in
  ``[sent + reset - 1, answered + reset]``, and we take windows to last the longest integral
  reset seen. The first report after a roll then ends the new window no later than the roll plus
  that length: the roll is never early, and it does not drift later by a round trip per window.
  (A 0.5 s window that announces ``reset=1`` is taken at its word: half its rate, no 429s.)
- A 429 pauses every request of the group until the reset the server asked for; repeated 429s
  that ask for (almost) nothing get a growing floor, ``ZERO_WAIT_FLOOR`` doubling per 429, so
  they do not turn into a burst.
- A server whose successful responses carry no rate-limit headers is not paced by headers.
- A 429 the headers did not predict (none sent, or ``remaining > 0``, or any 429 at all once
  the view said there was room) teaches a rate (``_adaptive.LearnedRate``): from then on every
  request also needs a token of that bucket, so the backlog after a pause leaves at the rate
  the server was seen to accept, not all at once.
- A wait longer than ``max_wait`` (the client's ``max_retry_wait``) is not sat out: every
  request waiting for it, queued or arriving later, raises ``RateLimitError`` with
  ``.retry_after`` at once, until the wait has passed.

Waiters are served first come, first served from a deque, with one timer for the next time-based
wake-up, so 10,000 queued requests cost O(1) per grant; a cancelled waiter is skipped when reached.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import math

from .adaptive import LearnedRate, too_long
from .held import Slots
from .ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# Fallback pause after a 429 that says nothing about when to come back.
_UNKNOWN_PAUSE = 1.0
# A cold-start probe that has had no answer for this long may be hanging: let another one go,
# rather than hold every request until the probe's own timeout.
PROBE_PATIENCE = 1.0
# Resets are sent rounded (to microseconds, or less): roll this much later to stay on the safe side.
_MARGIN = 0.002
# Reports in a row, each of a later window than the last and each nearly spent, that show a
# window is not fixed: a token bucket's first burst gives one per answer.
_MOVED_ON = 3


class Window:
    """What we know of one endpoint group's rate-limit window, and the queue waiting on it."""

    def __init__(self, group: str, *, max_wait: float = math.inf) -> None:
        self.group = group
        self.max_wait = max_wait
        self.learned = LearnedRate()
        self._whole_len = 0.0  # longest integral reset seen: a whole-second window's length
        self.limit: int | None = None
        self.available = 0
        self.reset_at: float | None = None  # latest possible end of the current window
        self._end_lo: float | None = None  # earliest possible end of the current window
        self._passed: tuple[float, float] | None = None  # bounds of the window we rolled past
        self.paused_until = 0.0
        self.unpaced = False  # the server sends no rate-limit headers
        self._honest = True  # no 429 has said remaining > 0 (the hidden model's lie)
        self.refills = True  # a roll restores the whole limit (a fixed window), until shown not
        self._window_len = 0.0  # longest reset seen: the window's length, at least
        self._window_max: float | None = None  # shortest gap between two ends: its length, at most
        self.fixed = False  # a roll was seen to refill the window: a fixed window, rolls trusted
        self.slots = Slots()  # for a window a roll does not refill: see _held
        self._moved_on = 0  # reports in a row that spoke of a later window, nearly spent
        self._roll_probe = False  # a roll not yet trusted lets one go whatever the slots say
        self._in_flight: list[int] = []  # send sequence numbers, ascending
        self._sent_at: dict[int, float] = {}
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

    def try_acquire(self) -> int | None:
        """A ticket at once if the window allows one more request now, else None."""
        if not self._waiters and self._can_send():
            return self._grant()
        return None

    async def acquire(self) -> int:
        """Wait until the window allows one more request; returns its ticket for :meth:`release`."""
        if not self._waiters and self._can_send():
            return self._grant()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        # _wake, not just _schedule: the queue may be free to go already (a pause just ended
        # and its timer has not run yet); arming nothing would leave it waiting forever.
        self._wake()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted, then cancelled before it could send: the slot and its budget go back.
                ticket = fut.result()
                self._discard(ticket)
                self._sent_at.pop(ticket, None)
                self.available += 1
            # A cancelled waiter still queued is skipped when _wake reaches it (O(1) now).
            self._wake()
            raise

    def release(
        self, ticket: int, info: RateLimitInfo | None, *, status: int | None, pause: float | None
    ) -> None:
        """Record the outcome of a request: what its response said about the window.

        ``status`` is None when no response came back; ``pause`` is the wait a 429 asked for.
        """
        now = asyncio.get_running_loop().time()
        sent = self._sent_at.pop(ticket, now)
        self._discard(ticket)
        reported = info is not None and info.remaining is not None and info.reset is not None
        if reported:
            assert info is not None
            self._learn(ticket, info, sent, now, admitted=status != 429)
            if not self.fixed and self.limit:
                self.slots.answered(now, self.limit, admitted=status != 429)
                before = bisect.bisect_left(self._in_flight, ticket)
                hold = self._window_len + _MARGIN
                assert info.remaining is not None
                self.slots.reported(now, hold, self.limit, info.remaining, before)
        elif status is not None and 200 <= status < 300 and self.limit is None and not self.unpaced:
            self.unpaced = True
            logger.debug("%s: responses carry no rate-limit headers; not pacing", self.group)
        if status is not None and 200 <= status < 300:
            self.learned.succeeded()
            if (
                self._honest
                and self.limit
                and info is not None
                and info.remaining is not None
                and 2 * info.remaining >= self.limit
            ):
                self.learned.room()
        if status == 429:
            wait = pause if pause is not None else info.reset if info is not None else None
            wait = _UNKNOWN_PAUSE if wait is None else wait
            end = self.reset_at
            if (
                info
                and info.whole_seconds
                and end is not None
                and now + wait - 1 <= end < now + wait
            ):
                wait = end - now  # a rounded-up reset: the reports knew this window's end closer
            # The headers foresaw it if they are good and this is the first 429 since they were.
            foreseen = not self.unpaced and not (info and info.remaining)
            self._honest = self._honest and not (info and info.remaining)
            wait = self.learned.refused(sent, now, wait, foreseen=foreseen)
            until = now + wait
            if until > self.paused_until:
                self.paused_until = until
                logger.debug("%s: 429, pausing all requests for %.3fs", self.group, until - now)
            if self.limit is not None:
                # The window is spent until then: roll no earlier.
                self.available = 0
                self.reset_at = max(self.reset_at or until, until)
                self._end_lo = min(self._end_lo or until, until)
        self._wake()

    def _learn(
        self, ticket: int, info: RateLimitInfo, sent: float, now: float, *, admitted: bool
    ) -> None:
        limit, remaining, reset = info.limit, info.remaining, info.reset
        assert remaining is not None
        assert reset is not None
        whole_seconds = info.whole_seconds
        self.unpaced = False
        if limit is not None and limit > 0:
            self.limit = limit
        elif self.limit is None:
            self.limit = remaining + 1 + len(self._in_flight)
        self._window_len = max(self._window_len, reset)
        lo, hi = sent + reset, now + reset + _MARGIN
        whole = whole_seconds and reset > 0
        if whole:  # maybe rounded up: the end lies up to a second earlier
            self._whole_len = max(self._whole_len, reset)
            lo -= 1.0
        uncounted = len(self._in_flight) - bisect.bisect_right(self._in_flight, ticket)
        estimate = remaining - uncounted
        # A report that replaces the view cannot tell which requests sent before it the server
        # has counted: on separate connections they may reach it after the reporter.
        fresh = remaining - len(self._in_flight)
        if self.reset_at is None or self._end_lo is None:
            if self._passed is None:  # the first report of all
                self.available, self._end_lo, self.reset_at = fresh, lo, hi
                return
            passed_lo, passed_hi = self._passed
            if admitted and sent >= passed_hi and self.refills and not self.fixed:
                # Admitted, sent after the roll: a fixed window would have refilled, its end a
                # window on. Far less room, or an end that soon: sliding, or a bucket. (A 429
                # says only that someone filled it: with headers only on 429s, all do.)
                if estimate < (self.available + 1) // 2 or hi < passed_lo + self._window_len:
                    self._not_fixed()
                else:
                    self.fixed = True
            if hi < passed_lo + self._window_len:
                return  # ends before the window after the passed one can: a late report from it
            self.available = min(self.available, estimate)
            if lo > passed_hi:  # certainly the new window: now we know when it ends
                if not self.refills:
                    self.available = estimate
                if whole and now < passed_lo + self._whole_len:
                    # The one after the passed window, which ended by passed_hi (we rolled no
                    # earlier): it ends by passed_hi + its length, whatever this report's rounding.
                    hi = min(hi, passed_hi + self._whole_len + _MARGIN)
                self._bound_window(hi - passed_lo)
                self._end_lo, self.reset_at = lo, hi
        elif lo > self.reset_at:  # certainly a later window than ours
            # A window that moves on before we roll, nearly spent, report after report: no
            # fixed window ends that often (a token bucket's reset is the time until it is full).
            spent = admitted and estimate < (self.limit + 1) // 2
            self._moved_on = self._moved_on + 1 if spent else 0
            if self.refills and not self.fixed and self._moved_on >= _MOVED_ON:
                self._not_fixed()
            self._bound_window(hi - self._end_lo)
            self.available, self._end_lo, self.reset_at = fresh, lo, hi
        elif hi >= self._end_lo:  # overlapping: the same window, now known more closely
            self._moved_on = 0
            self.available = min(self.available, estimate)
            self._end_lo, self.reset_at = max(self._end_lo, lo), min(self.reset_at, hi)
        # else: a stale report from an earlier window

    def _trusts_rolls(self) -> bool:
        """Rolls refill the window: seen to (``fixed``), or taken on trust for whole-second
        resets, which pin the end closer than answer + window (a sliding window or a bucket
        of Close's sends decimal resets)."""
        return self.fixed or self._whole_len > 0

    def _not_fixed(self) -> None:
        self.refills = False
        logger.debug("%s: not a fixed window; pacing by slots", self.group)

    def _slot_at(self, now: float) -> float | None:
        """When a slot is free (``now`` if one is), None if only an answer can free one."""
        assert self.limit is not None
        hold = self._window_len + _MARGIN
        others = not self.refills  # in a fixed window the reports' budget sees to them
        return self.slots.free_at(now, hold, self.limit, in_flight=self.in_flight, others=others)

    def _bound_window(self, gap: float) -> None:
        """Two windows' ends lie at most ``gap`` apart: the window is no longer than that."""
        if self._window_max is None or gap < self._window_max:
            self._window_max = gap

    def _can_send(self) -> bool:
        now = asyncio.get_running_loop().time()
        if now < self.paused_until:
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
            return True
        if self.limit is None:  # cold start: one probe at a time, unless it seems stuck
            return not self._in_flight or now >= self._probe_at + PROBE_PATIENCE
        if not self.refills:
            return self._slot_at(now) == now
        header = self._header_allows(now)
        return header and (self._trusts_rolls() or self._roll_probe or self._slot_at(now) == now)

    def _header_allows(self, now: float) -> bool:
        """The budget of the current window (rolling to the next one when it has ended)."""
        if self.reset_at is not None and now >= self.reset_at:
            self.available = (self.limit or 0) - len(self._in_flight)
            self._roll_probe = not self._trusts_rolls()
            self._passed = (self._end_lo or self.reset_at, self.reset_at)
            self.reset_at = self._end_lo = None
        elif self.reset_at is None and not self._in_flight and self.available <= 0:
            # Spent, and nothing in flight can tell us when the window ends: wait a whole window
            # past the last known end, when a new one has certainly begun.
            passed_lo, passed_hi = self._passed or (now, now)
            longest = self._window_len if self._window_max is None else self._window_max
            self._end_lo = passed_lo + self._window_len
            self.reset_at = passed_hi + longest
            return self._header_allows(now) if self.reset_at <= now else False
        return self.available > 0

    def _grant(self) -> int:
        now = asyncio.get_running_loop().time()
        if self.limit is None and not self.unpaced:
            self._probe_at = now
        self.learned.sent(now)
        self._roll_probe = False
        self._seq += 1
        self._in_flight.append(self._seq)
        self._sent_at[self._seq] = now
        self.available -= 1
        return self._seq

    def _discard(self, ticket: int) -> None:
        i = bisect.bisect_left(self._in_flight, ticket)
        if i < len(self._in_flight) and self._in_flight[i] == ticket:
            del self._in_flight[i]

    def _wake(self) -> None:
        while self._waiters and (self._waiters[0].done() or self._can_send()):
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
        asked = True  # a wait the server asked for (a pause, a reset), not one of our own
        if self.paused_until > now:
            when: float | None = self.paused_until
        elif self.limit is None and not self.unpaced:
            when = self._probe_at + PROBE_PATIENCE if self._in_flight else None
            asked = False
        else:
            when = self._room_at(now)
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
            return now
        if self.refills and self.available <= 0:
            return self.reset_at  # the roll (which lets at least one go)
        if self.refills and (self._trusts_rolls() or self._roll_probe):
            return now
        return self._slot_at(now)

    def _refuse(self, wait: float) -> None:
        """The queue would wait longer than ``max_wait``: every waiter raises now, with the wait."""
        logger.debug("%s: the server asks for %.3fs, over max_wait: refusing", self.group, wait)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(too_long(wait, self.max_wait))

    def _on_timer(self) -> None:
        self._timer = None
        self._wake()


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

    def __repr__(self) -> str:
        return f"<Pacer {list(self._windows.values())!r}>"
