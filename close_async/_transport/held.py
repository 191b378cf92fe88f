"""Slots: pacing a window that a roll does not refill (a sliding window, a token bucket).

A fixed window refills at its end, and ``_pacer.Window`` spends each one from the reports. A
sliding window frees each admission a window after it, a token bucket a token at a time; at a
"roll" they have freed only what left, and a client that refills meets a burst of 429s. So:

- A request holds one of ``limit`` slots from its send until ``hold`` (the longest reset seen,
  a window's length at least, plus a margin) after its answer: the server admitted it before
  its answer, so by then it has left any window of that length (and a bucket refilled its
  token). With fewer than ``limit`` held before every send, no span of a window's length sees
  more than ``limit`` of our requests, whatever the algorithm: no 429s, and the whole rate.
- A 429 holds nothing (it was not admitted); an answer without a report is not counted.
- Slots others hold (another client on the same limit): a report counted ``limit -
  remaining`` admissions; those beyond ours (answered and held, or sent before the reporter)
  are someone else's, for ``hold`` after the report.

Only ``loop.time()`` values are passed in, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

import collections


class Slots:
    """Answer times of our requests still holding a slot, and the slots others hold."""

    def __init__(self) -> None:
        self._answered: collections.deque[float] = collections.deque()  # ascending
        self._others = (0.0, 0)  # (until, count): held by others, as the last report showed

    def __repr__(self) -> str:
        return f"<Slots answered={len(self._answered)} others={self._others[1]}>"

    def answered(self, now: float, limit: int, *, admitted: bool) -> None:
        """A request was answered at ``now``; ``admitted``: not a 429, so it holds a slot."""
        if admitted:
            self._answered.append(now)
            if len(self._answered) > 2 * limit + 1:
                self._answered.popleft()  # only the newest ``limit`` can matter

    def reported(self, now: float, hold: float, limit: int, remaining: int, before: int) -> None:
        """A report said ``remaining``; ``before``: ours sent before the reporter, in flight."""
        self.free_at(now, hold, limit, in_flight=0)  # forget the slots freed by now
        ours = len(self._answered) + before
        self._others = (now + hold, max(0, limit - remaining - ours))

    def free_at(
        self, now: float, hold: float, limit: int, *, in_flight: int, others: bool = False
    ) -> float | None:
        """When a slot is free (``now`` if one is); None if only an answer can free one.

        ``others``: leave the slots others were seen to hold."""
        answered = self._answered
        while answered and answered[0] + hold <= now:
            answered.popleft()
        until, theirs = self._others
        slots = limit - theirs if others and now < until else limit
        if len(answered) + in_flight < slots:
            return now
        if in_flight >= slots:
            return until if slots < limit else None
        return answered[len(answered) + in_flight - slots] + hold
