"""Where one endpoint group's window ends, and how much of it is left: read from the reports.

``pacer.Window`` paces by this view (it is its base class); the view itself never waits. A
report is a response's ``RateLimit`` (``limit``, ``remaining``, ``reset``) and the times its
request was sent and answered:

- Budget: ``remaining`` from a report, minus the requests sent after the reporting one that are
  still in flight (the server cannot have counted those yet), minus every request sent since.
  Within a window the budget only goes down: a report that arrives late may be stale.
- When does the window end? A report's ``reset`` counts from the moment the server handled the
  request, which lies between sending it and reading the answer; so the end lies in
  ``[sent + reset, answered + reset]``. Reports whose intervals overlap speak of the same window
  (and narrow it); one that starts after ours ends speaks of a later window; one that ends before
  ours starts is stale. We roll to a new window at the latest possible end, never early by the
  bounds; sooner only on proof that it ended (``pacer_shared``: a report showing more left
  than one answered before its request left, or as much for a success).
- After a roll the whole limit is available again, less what is still in flight, until a report
  from the new window says more. Until a roll has been seen to refill (``fixed``), a roll with
  decimal resets lets out only the free slots (``held``) and one request more: a sliding
  window at its roll has freed only what left it. The first report of a request sent after the
  roll decides: room for a refill, a fixed window (the rest goes at once); far less room, or an
  end that soon, it is not fixed and from then on only the slots pace. So do three reports in
  a row, each of a later window and nearly spent: a token bucket's ``reset`` is the time until
  it is full, so no roll ever comes.
- Whole-second resets (``reset=1``): an integral ``reset`` may be rounded up, so the end lies in
  ``[sent + reset - 1, answered + reset]``, and we take windows to last the longest integral
  reset seen. The new window after a roll then ends no later than the roll plus that length,
  whatever its reports' rounding: the roll is never early, and it does not drift later, by a
  round trip or by the rounding margin, window after window (the margin is in the roll already).
  Nor earlier than the passed window's earliest end plus that length (``_carry_lo``): a
  report's own ``reset=1`` says only "after our send", but the window before was seen running
  until then. Only while no window has been seen shorter than that length (a window's end
  bound to less than it after the earliest end of the one before): 1.5 s windows announce
  ``reset=2``, and carried 2 s on their earliest end fell after the real one.
  (A 0.5 s window that announces ``reset=1`` is taken at its word: half its rate, no 429s.)
- Spent, with nothing in flight to report when it ends: the window is taken to end a whole
  window (the shortest gap seen between two ends) past the last known end.
- Others' admissions (another key, another process on the same limit) and the spread of a
  shared window's budget: ``pacer_shared.SharedView``, this view's base class.

Only ``loop.time()`` values are passed in, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

import bisect
import logging

from .held import Slots
from .pacer_shared import _MARGIN, SharedView
from .ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# Reports in a row, each of a later window than the last and each nearly spent, that show a
# window is not fixed: a token bucket's first burst gives one per answer.
_MOVED_ON = 3


class WindowView(SharedView):
    """What the reports say of one group's window: its limit, budget and end bounds."""

    def __init__(self, group: str) -> None:
        super().__init__()
        self.group = group
        self.limit: int | None = None
        self.available = 0
        self.reset_at: float | None = None  # latest possible end of the current window
        self._end_lo: float | None = None  # earliest possible end of the current window
        self._lo_proven = False  # _end_lo bounds the end closely, not just "after our send"
        self._whole_windows = True  # no two ends seen closer than _whole_len: carry it (below)
        self._passed: tuple[float, float] | None = None  # bounds of the window we rolled past
        self._whole_len = 0.0  # longest integral reset seen: a whole-second window's length
        self._window_len = 0.0  # longest reset seen: the window's length, at least
        self._window_max: float | None = None  # shortest gap between two ends: its length, at most
        self.refills = True  # a roll restores the whole limit (a fixed window), until shown not
        self.fixed = False  # a roll was seen to refill the window: a fixed window, rolls trusted
        self.slots = Slots()  # for a window a roll does not refill: see held
        self._moved_on = 0  # reports in a row that spoke of a later window, nearly spent
        self._roll_probe = False  # a roll not yet trusted lets one go whatever the slots say
        self._in_flight: list[int] = []  # send sequence numbers, ascending

    def _report(
        self, ticket: int, info: RateLimitInfo, sent: float, now: float, *, status: int | None
    ) -> None:
        """A response's report: the window's end and budget, and the slots it shows held."""
        remaining = info.remaining
        assert remaining is not None
        admitted = status != 429
        self._rtt += 0.1 * (now - sent - self._rtt)
        # The lowest remaining of those answered before this one left (a bisect over times).
        lows = self._lows
        before = bisect.bisect_right(lows, (sent, -1)) - 1 if lows else -1
        if admitted and before >= 0:
            # Counted after that one in the same window, a success would show less left (an
            # error maybe not: the server may not count it).
            low = lows[before][1]
            success = status is not None and 200 <= status < 300
            if remaining > low or (remaining == low and success):
                self._ended_before(now)
        current = self._learn(ticket, info, sent, now, admitted=admitted)
        if current and admitted:
            if not self._lows or remaining < self._lows[-1][1]:
                self._lows.append((now, remaining))
            if self.refills and not self.shared and self._trusts_rolls():
                self._spot_others(info, now)
            self._first = False  # the very first report is of the cold start, trusted or not
        if not self.fixed and self.limit:
            self.slots.answered(now, self.limit, admitted=admitted)
            before = bisect.bisect_left(self._in_flight, ticket)
            hold = self._window_len + _MARGIN
            self.slots.reported(now, hold, self.limit, remaining, before)

    def _known_end(self, info: RateLimitInfo | None, now: float, wait: float) -> float:
        """A 429's ``wait``, shorter if it is a rounded-up reset and the reports knew this
        window's end closer."""
        end = self.reset_at
        if info and info.whole_seconds and end is not None and now + wait - 1 <= end < now + wait:
            return end - now
        return wait

    def _spent_until(self, until: float) -> None:
        """A 429: a known window is spent until ``until``, so it rolls no earlier."""
        if self.limit is not None:
            self.available = 0
            self.reset_at = max(self.reset_at or until, until)
            self._end_lo = min(self._end_lo or until, until)

    def _slot_at(self, now: float) -> float | None:
        """When a slot is free (``now`` if one is), None if only an answer can free one."""
        assert self.limit is not None
        hold = self._window_len + _MARGIN
        others = not self.refills  # in a fixed window the reports' budget sees to them
        in_flight = len(self._in_flight)
        return self.slots.free_at(now, hold, self.limit, in_flight=in_flight, others=others)

    def _learn(
        self, ticket: int, info: RateLimitInfo, sent: float, now: float, *, admitted: bool
    ) -> bool:
        """Learn the window from a report; True if it speaks of the current window."""
        limit, remaining, reset = info.limit, info.remaining, info.reset
        assert remaining is not None
        assert reset is not None
        whole_seconds = info.whole_seconds
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
                self._lo_proven = not whole
                return True
            passed_lo, passed_hi = self._passed
            if admitted and sent >= passed_hi and self.refills and not self.fixed:
                # Admitted, sent after the roll: a fixed window would have refilled, its end a
                # window on. Far less room, or an end that soon: sliding, or a bucket. (A 429
                # says only that someone filled it: with headers only on 429s, all do.)
                # (Less room is no evidence where another key shares the limit, or may: it
                # spent it.)
                others = self.shared or self._cold_shared
                less = estimate < (self.available + 1) // 2 and not others
                if less or hi < passed_lo + self._window_len:
                    self._not_fixed()
                else:
                    self.fixed = True
            if hi < passed_lo + self._window_len:
                return False  # ends before the window after the passed one can: a late report
            self.available = min(self.available, estimate)
            if lo >= passed_hi:  # certainly the new window: now we know when it ends
                if not self.refills:
                    self.available = estimate
                if whole:
                    # The window after the passed one, which ended by passed_hi (we rolled no
                    # earlier), ends by passed_hi + its length, whatever this report's rounding,
                    # and whichever window the report speaks of (one later ends later still).
                    # Not only for reports answered before passed_lo + the length, nor with the
                    # margin again (passed_hi holds it): either way the end drifted a round trip
                    # or 2 ms later a window, 0.2 s over 60 (test_pacer_window_carry.py).
                    hi = min(hi, passed_hi + self._whole_len)
                self._bound_window(hi - passed_lo)
                self._end_lo, self.reset_at = self._carry_lo(lo, hi, passed_lo, whole), hi
                return True
            return False  # maybe the passed window's
        if lo > self.reset_at:  # certainly a later window than ours
            # A window that moves on before we roll, nearly spent, report after report: no
            # fixed window ends that often (a token bucket's reset is the time until it is full).
            spent = admitted and estimate < (self.limit + 1) // 2
            self._moved_on = self._moved_on + 1 if spent else 0
            if self.refills and not self.fixed and self._moved_on >= _MOVED_ON:
                self._not_fixed()
            self._bound_window(hi - self._end_lo)
            lo = self._carry_lo(lo, hi, self._end_lo, whole)
            self.available, self._end_lo, self.reset_at = fresh, lo, hi
            self._forget_marks()  # the lows and others' count were of the window before
            return True
        if hi >= self._end_lo:  # overlapping: the same window, now known more closely
            self._moved_on = 0
            self.available = min(self.available, estimate)
            self._end_lo, self.reset_at = max(self._end_lo, lo), min(self.reset_at, hi)
            return True
        return False  # a stale report from an earlier window

    def _carry_lo(self, lo: float, hi: float, passed_lo: float, whole: bool) -> float:
        """The earliest end of a window after one that ended no earlier than ``passed_lo``.
        A whole-second report's own ``lo`` says only "after our send" (``reset=1`` is anything
        up to a second); but the window before ended at ``passed_lo`` or later, and this one
        lasts the whole reset: so no earlier than ``passed_lo`` plus it (never past ``hi``).
        Only while no window has been seen shorter than that (``_shorter``): 1.5 s windows
        announce ``reset=2``, and carried 2 s on from ``passed_lo`` their earliest end fell
        after the real one (a key alone on a shared limit sent 27-31 of 40 in each window,
        the rest after its end: test_pacer_shared_aim.py)."""
        if not whole:
            self._lo_proven = True  # sent + reset: at most a round trip early
            return lo
        self._shorter(hi, passed_lo)
        self._lo_proven = self._whole_windows
        return min(hi, max(lo, passed_lo + self._whole_len)) if self._whole_windows else lo

    def _shorter(self, hi: float, passed_lo: float) -> None:
        """A window ends by ``hi``, the one before it ended no earlier than ``passed_lo``: if
        that is less than the longest integral reset, windows do not last it, and no earliest
        end is carried a window on from then on (``_carry_lo``)."""
        if self._whole_len and hi - passed_lo < self._whole_len - _MARGIN:
            self._whole_windows = False

    def _trusts_rolls(self) -> bool:
        """Rolls refill the window: seen to (``fixed``), or taken on trust for whole-second
        resets, which pin the end closer than answer + window (a sliding window or a bucket
        of Close's sends decimal resets)."""
        return self.fixed or self._whole_len > 0

    def _not_fixed(self) -> None:
        self.refills = False
        logger.debug("%s: not a fixed window; pacing by slots", self.group)

    def _bound_window(self, gap: float) -> None:
        """Two windows' ends lie at most ``gap`` apart: the window is no longer than that."""
        if self._window_max is None or gap < self._window_max:
            self._window_max = gap

    def _header_allows(self, now: float) -> bool:
        """The budget of the current window (rolling to the next one when it has ended)."""
        if self.reset_at is not None and now >= self.reset_at:
            self.available = (self.limit or 0) - len(self._in_flight)
            self._roll_probe = not self._trusts_rolls()
            self._rolled_at = now  # a shared window's first request goes at its roll
            # The first report showed others, and the window ended before a second could
            # tell whether they still send: spread this one too (bursting it, two keys sent
            # twice the limit: 96 of 98 of one key's answered 429, bench_fanout --offset 0.9).
            self._cold_shared = self._cold_shared and self._spotted < 2
            self._forget_marks()
            if self._passed is not None:  # every report's bound of this end, and the last's
                self._shorter(self.reset_at, self._passed[0])
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
