"""The cold-start ramp: how many requests may be in flight before a group's server has said
anything about its limit.

A server whose successes carry no rate-limit headers (the ingress, or headers only on 429s) is
not paced by headers (``pacer.Window.unpaced``). Before this ramp, its first success let every
request go: ``asyncio.gather`` put the whole pool (100) on the wire, and when the first 429 came
back, all of them had been sent past the limit. In the ``ingress`` model (200 per 1 s window,
2,000 creates), 60-95 of a run's 77-115 429s were that first burst.

So, from the first success without headers until the first 429 or rate-limit header, the
requests in flight are capped, like TCP's slow start (:class:`ColdStart`):

- The cap starts at ``START``, grows by ``GAIN`` per success and doubles every ``DOUBLING``
  seconds during which it held requests back, whichever is higher. Only held time counts, not
  idle time: a client that makes one create, then fans out a second later, still ramps (counted
  from the first success, the cap would have been over before it ever held anything back).
  The burst a first 429 finds in flight is the cap then: ``START`` plus a ``GAIN`` share of
  what the window admitted (8 + 200/16 at 200 a window, against the pool's 100), plus what the
  time allows.
- Once the cap reaches ``END`` the ramp is over, for good: a server that never limits has its
  whole pool after ``DOUBLING * log2(END / START)`` = 1 s of holding at most (sooner with fast
  answers). A hold lasts from a request the cap turned away until one finds room to spare.
- A 429 or a response with a rate-limit header ends it at once, before it began or during it:
  from then on the 429s' learned rate, or the headers, pace. A header server loses nothing
  (its first answer carries the header; the pacer's one-probe cold start is before the ramp).
- Never a hang: the cap is at least ``START``, so a request it holds back has one in flight
  whose answer (or failure) wakes the queue; and :meth:`ColdStart.room_at` gives the time the
  cap grows past the requests in flight, for a timer, so requests that hang do not hold the
  queue until they time out.

Only ``loop.time()`` values are passed in, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

import math

# The cap on requests in flight when the ramp begins (after the first success).
START = 8.0
# Cap increase per success: 1/16 keeps a first window of 200 to a burst of ~20 429s (the pool's
# 100 without it); TCP's slow start (1 per answer) would have the cap past 200 by then.
GAIN = 1.0 / 16.0
# Seconds per doubling of the cap by time alone: from START to END in 1 s, whatever the answers.
DOUBLING = 0.25
# The cap at which the ramp is over (above the default pool of 100 connections).
END = 128.0
_SECONDS = DOUBLING * math.log2(END / START)  # from START to END by time alone


class ColdStart:
    """The in-flight cap of one group's cold start: waiting, ramping (``began``) or ``done``."""

    __slots__ = ("_began", "_held", "_held_since", "_ok", "done")

    def __init__(self) -> None:
        self.done = False  # over: a 429, a header, or the cap reached END
        self._began: float | None = None  # the first success without headers
        self._ok = 0  # successes since
        self._held = 0.0  # seconds of holds that ended
        self._held_since: float | None = None  # when the current hold began

    def __repr__(self) -> str:
        if self.done:
            return "<ColdStart done>"
        if self._began is None:
            return "<ColdStart waiting>"
        held = "" if self._held_since is None else f" holding since {self._held_since:.3f}"
        return f"<ColdStart began={self._began:.3f} ok={self._ok} held={self._held:.3f}{held}>"

    def answered(self, now: float, status: int | None, *, header: bool) -> None:
        """A response (``status`` None: none came); ``header``: it reported the window."""
        if self.done:
            return
        if header or status == 429:
            self.done = True
        elif status is not None and 200 <= status < 300:
            if self._began is None:
                self._began = now
            else:
                self._ok += 1

    def _elapsed(self, now: float) -> float:
        since = self._held_since
        return self._held if since is None else self._held + max(0.0, now - since)

    def cap(self, now: float) -> float:
        """Requests that may be in flight at ``now`` (``END`` or more: the ramp is over)."""
        if self.done or self._began is None:
            return math.inf
        elapsed = self._elapsed(now)
        if elapsed >= _SECONDS:  # (and no float overflow hours later)
            return END
        by_time: float = START * 2.0 ** (elapsed / DOUBLING)
        return max(START + GAIN * self._ok, by_time)

    def allows(self, now: float, in_flight: int) -> bool:
        """Whether one more request may go now, with ``in_flight`` already out."""
        if self._began is None:  # not begun (or done): nothing to cap
            return True
        cap = self.cap(now)
        if cap >= END:
            self.done = True
            return True
        if in_flight >= cap:
            if self._held_since is None:
                self._held_since = now  # a hold begins: the time doubling runs from here
            return False
        if self._held_since is not None and in_flight + 1 < cap:  # room to spare: hold over
            self._held = self._elapsed(now)
            self._held_since = None
        return True

    def room_at(self, now: float, in_flight: int) -> float:
        """When the cap lets one more go by time alone (``now`` if it does now)."""
        if self.allows(now, in_flight):
            return now
        assert self._held_since is not None  # allows() just began the hold, or it goes on
        need = in_flight + 1.0
        target = _SECONDS if need >= END else DOUBLING * math.log2(need / START)
        # A microsecond past the exact time, so the cap has surely grown when the timer runs.
        return self._held_since + max(0.0, target - self._held) + 1e-6
