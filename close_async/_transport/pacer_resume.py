"""Ending a pause early when its wait was rounded up to whole seconds and nothing says more.

A 429 whose ``Retry-After`` is whole seconds (the ingress's HTML 429s say ``Retry-After: 1``)
asks for a wait rounded up: the window ends somewhere in ``(sent + RA - 1, answered + RA]``.
Paced just above the limit, a request meets its 429 in the last moments of a window, so sitting
out the whole second wastes most of a window per 429 (the ``ingress`` model reached 0.71-0.83 of
the allowed rate so). Where no report has ever told the window's end (``Window.limit`` unset),
the pacer keeps one ``EarlyEnd`` per pause:

- The pause first ends ``FIRST_GAP`` after the earliest possible end; from then on one request
  (a probe) goes at a time, the rest of the queue waiting behind it.
- A probe answered 429 sets the next one a gap later, the gap doubling up to ``MAX_GAP``
  (0.025, 0.05, 0.1, 0.1 ... s): at most ten more 429s in a pause of one second, and the pause
  ends at most ``MAX_GAP`` after the window did, its end estimated within half that. (Doubling
  without bound ended the first pause after a burst up to 0.4 s late and the epoch after it
  read 12-17% low.)
- An admitted probe ends the pause: the window ended between the last refused request's send and
  the probe's (their midpoint is the estimate the learned rate measures to).
- The latest possible end (the earliest ``answered + RA`` of the pause) ends it in any case, and
  is the estimate then.

The learned rate measures the pause when it ends (``LearnedRate.resumed``), not the rounded
wait: measured over ``RA - 0.5``, a 429 at a window's very end taught a rate 10-15% low.
Only ``loop.time()`` values are passed in, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

# The first probe's delay after the earliest possible end of the window, doubling per refusal
# up to MAX_GAP: with gaps of 0.05, 0.1, 0.2, 0.4 s the end of the first pause after a burst
# (0.7 s of it left) was known only within 0.4 s, and the learned rate came out 12-17% low.
FIRST_GAP = 0.025
MAX_GAP = 0.1


def rounded_up(wait: float | None) -> bool:
    """A wait of whole seconds (at least one): maybe rounded up by up to a second."""
    return wait is not None and wait >= 1.0 and float(wait).is_integer()


class EarlyEnd:
    """One pause after a whole-second 429: when the next probe may go, and which is out."""

    def __init__(self, sent: float, now: float, wait: float) -> None:
        self.latest = now + wait  # the window has certainly ended by then
        self.refused_at = sent  # the window had not ended when the server saw this request
        self.gap = FIRST_GAP
        self.next = max(now, sent + wait - 1.0) + FIRST_GAP  # when the next probe may go
        self.probe: int | None = None  # the ticket of the probe in flight

    def __repr__(self) -> str:
        return f"<EarlyEnd next={self.next:.3f} latest={self.latest:.3f} probe={self.probe}>"

    def refused(self, ticket: int, sent: float, now: float, wait: float) -> None:
        """A 429 during the pause: the burst's rest narrows the latest end, a probe's a gap."""
        self.latest = min(self.latest, now + wait)
        if ticket == self.probe:
            self.probe = None
            self.refused_at = max(self.refused_at, sent)
            self.gap = min(2.0 * self.gap, MAX_GAP)
            self.next = min(now + self.gap, self.latest)

    def lost(self, ticket: int, now: float) -> None:
        """A request of the pause got no answer: if it was the probe, another goes now."""
        if ticket == self.probe:
            self.probe = None
            self.next = now

    def admitted(self, sent: float) -> float:
        """The probe sent at ``sent`` was admitted: the estimated end of the window."""
        return (self.refused_at + max(sent, self.refused_at)) / 2.0
