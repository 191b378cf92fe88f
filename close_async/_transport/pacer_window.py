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
  bounds; sooner only on proof that it ended (see "Others' admissions").
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
  reset seen. The first report after a roll then ends the new window no later than the roll plus
  that length: the roll is never early, and it does not drift later by a round trip per window.
  (A 0.5 s window that announces ``reset=1`` is taken at its word: half its rate, no 429s.)
- Spent, with nothing in flight to report when it ends: the window is taken to end a whole
  window (the shortest gap seen between two ends) past the last known end.
- Others' admissions (a second API key on the organisation's limit, another process with ours):
  ours in a window number at most those answered (not 429) since its earliest possible start,
  plus those in flight; a report counting more (``limit - remaining``) shows admissions not
  ours. A later report of the same window counting more than the fewest seen in it shows
  someone sending now, and the window is ``shared`` from then on. The very first report
  cannot tell use from before (another program, earlier) from another key starting with us
  (its probe): admissions not ours there spread that first window only. A shared window
  sends the first request at its roll and then spreads what is left of the budget evenly
  over the time left (its latest end, less a round trip), re-read from every report: the
  other's use shows in our reports before we spend it, where a burst at each roll made two
  keys send twice the limit into every window.
  Looked for only once rolls are trusted (below): till then decimal resets do not tell the
  window's length, so ours are undercounted (a lone token-bucket client seemed shared: 0.94).
  And a shared window whose rolls are trusted rolls as soon as a report proves it ended: one
  saying more is left than a report answered before its request left (a fixed window only goes
  down), rather than waiting for the latest end (up to a second late for whole-second resets).

Only ``loop.time()`` values are passed in, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

import bisect
import collections
import logging

from .held import Slots
from .ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# Resets are sent rounded (to microseconds, or less): roll this much later to stay on the safe side.
_MARGIN = 0.002
# Reports in a row, each of a later window than the last and each nearly spent, that show a
# window is not fixed: a token bucket's first burst gives one per answer.
_MOVED_ON = 3
# Admissions not ours (ours are bounded from above exactly) that grew by this much within a
# window: another consumer sending now (a second key on an organisation's limit). Growth, not
# a count: use before our first request (another program, earlier) is no one sending now.
_OTHERS = 1


class WindowView:
    """What the reports say of one group's window: its limit, budget and end bounds."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.limit: int | None = None
        self.available = 0
        self.reset_at: float | None = None  # latest possible end of the current window
        self._end_lo: float | None = None  # earliest possible end of the current window
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
        self.shared = False  # another consumer spends this window too: spread, not burst
        self._first = True  # no report of the current window seen yet, ever
        self._cold_shared = False  # the first report showed others: spread the first window
        self._outcomes: collections.deque[float] = collections.deque()  # answer times, not 429
        self._last_sent = 0.0  # the last send: spreading counts from it
        self._rolled_at = 0.0  # the last roll
        self._rtt = 0.0  # round trip of reports, smoothed: a shared window's last send leaves by
        # (answered, remaining) of this window's reports, each lower than all before it
        self._lows: list[tuple[float, int]] = []
        self._others_fewest: int | None = None  # this window's fewest admissions not ours

    def _report(
        self, ticket: int, info: RateLimitInfo, sent: float, now: float, *, admitted: bool
    ) -> None:
        """A response's report: the window's end and budget, and the slots it shows held."""
        remaining = info.remaining
        assert remaining is not None
        self._rtt += 0.1 * (now - sent - self._rtt)
        # The lowest remaining of those answered before this one left (a bisect over times).
        lows = self._lows
        before = bisect.bisect_right(lows, (sent, -1)) - 1 if lows else -1
        if admitted and before >= 0 and remaining > lows[before][1]:
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

    def _counted(self, now: float) -> None:
        """One of ours was answered at ``now``, not with a 429: the server may have counted it
        (a dropped connection too), in the window running then."""
        self._outcomes.append(now)
        if len(self._outcomes) > 4 * (self.limit or 0) + 8:
            self._outcomes.popleft()  # more than a window holds: too old to matter

    def _spot_others(self, info: RateLimitInfo, now: float) -> None:
        """A report of the current window counted more admissions than all of ours it could
        have counted (answered since the window's earliest possible start, or in flight):
        another consumer spends this limit, from now on spread the budget (``_spread_at``)."""
        if not info.limit or info.remaining is None or self._end_lo is None:
            return
        length = max(self._window_len, self._whole_len, self._window_max or 0.0)
        start = self._end_lo - length - _MARGIN
        outcomes = self._outcomes
        while outcomes and outcomes[0] < start - length:
            outcomes.popleft()
        ours = len(outcomes) - bisect.bisect_left(outcomes, start) + len(self._in_flight)
        others = info.limit - info.remaining - ours
        fewest = self._others_fewest
        self._others_fewest = max(0, others if fewest is None else min(fewest, others))
        first, self._first = self._first, False
        if first and others >= _OTHERS:
            self._cold_shared = True  # maybe another key's cold start: spread this window
        if fewest is not None and others - max(0, fewest) >= _OTHERS:
            self.shared = True  # more of theirs than an earlier report showed: they send now
            logger.debug("%s: %d admissions not ours: shared; spreading", self.group, others)

    def _forget_marks(self) -> None:
        """A new window: its lows and its fewest admissions not ours start afresh."""
        self._lows = []
        self._others_fewest = None

    def _ended_before(self, now: float) -> None:
        """A shared window's report shows more left than one answered before its request left:
        a fixed window only goes down, so it ended before this answer. Roll now: the latest end
        of whole-second resets lies up to a second late, and spreading towards it (sending
        nothing into the window's first part after the real end) never learns better; 120 ms
        late, measured, so a key left alone lost a tenth of its last window."""
        if not (self.shared and self.refills and self._trusts_rolls()):
            return
        if self.reset_at is not None and now < self.reset_at:
            self.reset_at = now
            self._end_lo = min(self._end_lo or now, now)
            self._header_allows(now)

    def _spread_at(self, now: float) -> float:
        """When the next request may leave a shared window (``now``: at once). What is left
        of the budget is spread evenly over the time left, so that another consumer's use shows
        in our reports before we spend it: all of it at the roll, each of two keys would spend
        the whole limit (2x it reaches the server)."""
        if not (self.shared or self._cold_shared) or not self.refills or self.available <= 0:
            return now
        if self._last_sent < self._rolled_at:
            return now  # the first of the window: as if spread from the roll by the last one
        end = self.reset_at
        if end is None:  # rolled, no report of the new window yet: it ends a window on
            end = (self._passed[1] if self._passed else now) + self._window_len
        # The latest end lies up to a round trip after the real one (the reset is counted from
        # when the server handled a request we read an answer of later), and a request counts
        # when it arrives: aimed at the latest end, 2.5% of each window went unused (measured).
        end -= self._rtt + _MARGIN
        start = self._last_sent
        return max(now, start + max(0.0, end - start) / (self.available + 1))

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
                return True
            passed_lo, passed_hi = self._passed
            if admitted and sent >= passed_hi and self.refills and not self.fixed:
                # Admitted, sent after the roll: a fixed window would have refilled, its end a
                # window on. Far less room, or an end that soon: sliding, or a bucket. (A 429
                # says only that someone filled it: with headers only on 429s, all do.)
                # (Less room is no evidence where another key shares the limit: it spent it.)
                less = estimate < (self.available + 1) // 2 and not self.shared
                if less or hi < passed_lo + self._window_len:
                    self._not_fixed()
                else:
                    self.fixed = True
            if hi < passed_lo + self._window_len:
                return False  # ends before the window after the passed one can: a late report
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
            self.available, self._end_lo, self.reset_at = fresh, lo, hi
            self._forget_marks()  # the lows and others' count were of the window before
            return True
        if hi >= self._end_lo:  # overlapping: the same window, now known more closely
            self._moved_on = 0
            self.available = min(self.available, estimate)
            self._end_lo, self.reset_at = max(self._end_lo, lo), min(self.reset_at, hi)
            return True
        return False  # a stale report from an earlier window

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
            self._cold_shared = False
            self._forget_marks()
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
