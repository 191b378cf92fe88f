"""Whether others spend one group's window too, and how a shared window's budget is paced.

``pacer_window.WindowView``, the view of a window read from the reports, has this as its base
class and owns the state read here (declared below: the end bounds, the window's length, the
requests in flight). Its reports call ``_spot_others`` and ``_ended_before``, a new window
``_forget_marks``; ``pacer.Window`` counts its answers (``_counted``) and asks ``_spread_at``
when the next request may leave. The end bounds and rolls are ``pacer_window``'s (its
docstring); this module adds:

- Others' admissions (a second API key on the organisation's limit, another process with ours):
  ours in a window number at most those answered (not 429) since its earliest possible start,
  plus those in flight; a report counting more (``limit - remaining``) shows admissions not
  ours. A later report of the same window counting more than the fewest seen in it shows
  someone sending now, and the window is ``shared`` from then on. The very first report
  cannot tell use from before (another program, earlier) from another key starting with us
  (its probe): admissions not ours there spread that first window only. A shared window
  sends the first request at its roll and then spreads what is left of the budget evenly
  over the time left, re-read from every report: the other's use shows in our reports before
  we spend it, where a burst at each roll made two keys send twice the limit into every
  window. The time left runs to the window's earliest end (less a round trip) when that is
  proven (a window before bounded it, or a decimal reset) and lies within a tenth of the
  window of the latest; otherwise to the latest end. Aimed at the latest end, up to a round
  trip after the real one, the last sends met the next window and the budget left went
  unused (6-14 of 200 in a 2,000-create fan-out's windows, so the run took a window more;
  up to a second after it when the fan-out began mid-window, 67 of 200). Past the earliest
  end's aim, one request at a time: each answer tells whether the window still runs (what a
  stale budget said was left, sent at once, met 429s); the roll at the latest end lets the
  queue go if that answer is slow. The first report's others spread the next window too if
  that one ended before a second report could tell whether they still send.
  Looked for only once rolls are trusted (below): till then decimal resets do not tell the
  window's length, so ours are undercounted (a lone token-bucket client seemed shared: 0.94).
- Proof that a window ended: a report saying more is left than one answered before its
  request left, or as much for a success (in a fixed window what is left only goes down, by
  one for every admission). Any window whose rolls are trusted rolls then, rather than waiting
  for the latest end (up to a second late for whole-second resets): a fan-out begun just
  before a window's end burst into the next one, took its reports for the old window's, and
  rolled at the old one's latest end, into the new one's budget spent (2-13% 429s, at offsets
  0.8-0.9 of the window).

Only ``loop.time()`` values are passed in, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

import bisect
import collections
import logging
from collections.abc import Callable

from .ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# Resets are sent rounded (to microseconds, or less): roll this much later to stay on the safe side.
_MARGIN = 0.002
# Admissions not ours (ours are bounded from above exactly) that grew by this much within a
# window: another consumer sending now (a second key on an organisation's limit). Growth, not
# a count: use before our first request (another program, earlier) is no one sending now.
_OTHERS = 1
# Bounds of a shared window's end this close (a share of its length) aim its spread at the
# earlier one (``SharedView._aim``); further apart, at the later. An earliest end further off
# (0.7-0.9 s: a cold start's burst gave it, carried on from window to window, and no later
# send raised it) squeezed the budget into that much less of the window: at 100 ms round trips
# 3.4-4.0% 429s against 2.4-2.6% (bench_fanout.py --models shared); without latency every
# window's budget went in its first 0.1 s. A tenth: 2.4% at 100 ms, as aimed at the latest.
_CLOSE = 0.1


class SharedView:
    """Others' admissions in one group's window, and the spread of a shared window's budget."""

    # The window view's own state and methods (``pacer_window.WindowView``), read here.
    group: str
    limit: int | None
    available: int
    reset_at: float | None
    _end_lo: float | None
    _lo_proven: bool
    _passed: tuple[float, float] | None
    _whole_len: float
    _window_len: float
    _window_max: float | None
    refills: bool
    _in_flight: list[int]
    _trusts_rolls: Callable[[], bool]
    _header_allows: Callable[[float], bool]

    def __init__(self) -> None:
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
        self._spotted = 0  # this window's reports looked at for others' admissions

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
        self._spotted += 1
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
        self._spotted = 0

    def _ended_before(self, now: float) -> None:
        """A report shows more left than one answered before its request left (or as much, for
        a success): a fixed window only goes down, so it ended before this answer. Roll now: the
        latest end of whole-second resets lies up to a second late, and spreading towards it
        (sending nothing into the window's first part after the real end) never learns better;
        120 ms late, measured, so a key left alone lost a tenth of its last window."""
        if not (self.refills and self._trusts_rolls()):
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
        aim, latest = self._aim(now)
        # A request counts when it arrives, and the last one should be answered in the window.
        end = aim - self._rtt - _MARGIN
        if aim < latest and now >= end:
            # Late for the earliest end: the window may end at any moment, so one at a time,
            # each answer telling whether it still runs (a burst of what a stale budget said
            # was left met 429s for a tenth of the requests, measured). The one in flight
            # wakes the queue with its answer, or the roll at the latest end does: waiting
            # for the answer alone, a slow one held the queue past the roll (up to the timeout).
            return max(now, latest) if self._in_flight else now
        start = self._last_sent
        return max(now, start + max(0.0, end - start) / (self.available + 1))

    def _aim(self, now: float) -> tuple[float, float]:
        """The end a shared window's spread aims at, and its latest end. The earliest end if
        proven (``_lo_proven``: a window before bounded it, or a decimal reset) and within
        ``_CLOSE`` of the window of the latest, else the latest. Aimed at the latest end (up to
        a round trip after the real one), the last sends met a window already over: 6-14 of
        200 unused in window 1 and in each window after one key ran out of items (the
        ``shared`` fan-out: 0.909 of the rate)."""
        length = self._window_len
        if self.reset_at is not None and self._end_lo is not None:
            lo, hi = self._end_lo, self.reset_at
        elif self._passed is None:
            return now + length, now + length
        else:  # rolled, no report of the new window yet: a window on
            lo, hi = (bound + length for bound in self._passed)
        return (lo if self._lo_proven and hi - lo <= _CLOSE * length else hi), hi
