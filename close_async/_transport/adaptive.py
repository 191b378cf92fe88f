"""What a group's 429s teach the pacer, for when the headers are missing, stale or wrong.

``LearnedRate`` is a token bucket whose rate nobody told us. It starts unset (no limit: the
headers, if any, pace on their own) and is set by the first 429 it counts as evidence:

- An *epoch* runs from the first send (or the end of the last pause) to the end of the pause a
  429 asks for. The server's accepted rate over the epoch is the number of successes answered
  in it over its length, the pause included: that is what the server really let through.
- A 429 is evidence only for requests sent inside the current epoch: the rest of a burst that
  was already in flight when the first 429 came back says nothing new.
- An epoch without a single success measures nothing (a server refusing everything for a while
  is waited out by the pauses, not learned as a rate of zero).
- On evidence the rate becomes ``BACKOFF`` times the epoch's accepted rate (never more than the
  rate it replaces), and a new epoch starts when the pause ends.
- Between 429s the rate grows, CUBIC-style: by ``REGROWTH`` of itself per second while under
  the best of the last ``EPOCHS`` measurements (concave: the dip after a 429 lasts ~0.1 s, and
  an epoch that read low, spanning a window we under-sent or ends estimated late, does not
  leave us low), then by ``GROWTH`` per second past it (so a limit that was raised is found
  again), up to twice it. The first epoch, from the first send, began mid-window and reads
  high: it counts only until a later one has measured.
- Tokens accrue at the rate up to ``BURST_SECONDS`` worth (at least one): after a pause the
  backlog leaves at the learned rate, not all at once.

``refused`` also keeps the 429s that ask for (almost) nothing from turning into a burst: the
first is taken at its word, the next ones in a row wait ``ZERO_WAIT_FLOOR`` doubling (up to
1 s) until a success. ``too_long`` is the error for a wait over the client's ``max_retry_wait``.

``HiddenLimit`` reads a 429 that says ``remaining > 0`` as the server's own count of this
window: the limit it really enforces, which the headers are then read as of (see the class).

Only ``loop.time()`` is read, so tests drive it with a patched loop clock.
"""

from __future__ import annotations

import collections
import logging

from .._exceptions import RateLimitError
from .ratelimit import RateLimitInfo

logger = logging.getLogger("close_async")

# The learned rate is this share of what the server accepted: a fixed window paced at exactly
# its rate still meets a 429 whenever latency jitter lands one extra request in a window.
BACKOFF = 0.95
# Increase per second of 429-free sending, as a share of the learned rate. At 2%/s a rate
# learned 5% low is back at the limit after ~2.5 s; a 429 then costs one pause, not a burst.
GROWTH = 0.02
# Tokens saved at most, in seconds of the rate: 20 ms keeps wake-ups to ~50 per second without
# letting more than 2% of a one-second window's worth out at once.
BURST_SECONDS = 0.02
# Regrowth per second while under the last good measurement: from 5% under in 0.1 s, from a
# tenth under in 0.2 s (the dip after a 429 must not last: the measurement is the limit).
REGROWTH = 0.5
# The regrowth target is the best of the last EPOCHS measurements: an epoch that spans a window
# we under-sent (no 429 in it) reads low, and so does one whose ends were estimated late.
EPOCHS = 4
# The pause after the second 429 in a row that asks for (almost) nothing; doubles up to 1 s.
ZERO_WAIT_FLOOR = 0.05
_ZERO_WAIT_CAP = 1.0
# Regrowth per second of a hidden limit's cap: at 200 per window, one more a second, so one
# 429 a window at most once it is found (0.5%); a cap halved for a while is whole in ~140 s.
HIDDEN_GROWTH = 0.005
# A 429's count under half of what a window was seen to admit in the last STRAY_HORIZON
# seconds is no hidden limit (one refused by another limit, early in a window, read as "the
# limit is 1" pinned the client at 1 request a second for hours): it teaches a rate instead.
STRAY_HORIZON = 10.0
# A rate is never learned lower than this (requests per second): progress, however slow.
MIN_RATE = 0.1


class LearnedRate:
    """The admitted rate of one endpoint group, learned from 429s (unset until the first)."""

    def __init__(self) -> None:
        self.rate: float | None = None  # requests per second; None: nothing learned yet
        self._best = 0.0  # the last good measurement of the accepted rate
        self._tokens = 0.0
        self._stamp = 0.0  # when _tokens and rate were last brought up to date
        self._epoch: float | None = None  # start of the current epoch
        self._from_send = False  # the current epoch began at a send, not at a pause's end
        # The accepted rates the last epochs measured (from the first send: alone, until another)
        self._measured: collections.deque[float] = collections.deque(maxlen=EPOCHS)
        self._measured_from_send = False
        self._ok = 0  # successes answered in the current epoch
        self._zero_waits = 0  # 429s in a row that asked for (almost) nothing
        self._strikes = 0  # 429s that were evidence (sent after the last pause)
        self._pending: tuple[float, float, bool] | None = None  # a deferred 429: sent, now, learn

    def __repr__(self) -> str:
        rate = "unset" if self.rate is None else f"{self.rate:.2f}/s"
        return f"<LearnedRate {rate} tokens={self._tokens:.2f} ok={self._ok}>"

    def sent(self, now: float) -> None:
        """A request left: it spends a token (when a rate is set) and may open the first epoch."""
        if self._epoch is None:
            self._epoch, self._from_send = now, True
        if self.rate is not None:
            self._refill(now)
            self._tokens -= 1.0

    def succeeded(self) -> None:
        self._ok += 1
        self._zero_waits = 0

    def room(self) -> None:
        """Honest headers show the window mostly unused while this rate holds the queue: the
        rate is too low (learned while another key drained a shared limit, then went quiet).
        Regrow at ``REGROWTH``, not ``GROWTH``, and lift the ceiling of twice the measurement:
        a rate of 0.45/s learned so (of 200/s) otherwise never rose above 0.9/s."""
        if self.rate is not None:
            self._best = max(self._best, 2.0 * self.rate)

    def refused(
        self,
        sent: float,
        now: float,
        wait: float,
        *,
        foreseen: bool,
        defer: bool = False,
        explained: bool = False,
    ) -> float:
        """A 429 asking for ``wait``: learn from it and return the wait to pause for.

        ``foreseen``: good headers may explain a lone 429 (another program on the key, say); it
        is only paused for, and a second one teaches a rate like any 429 they did not foresee.
        ``defer``: the pause's real end is not known yet (``pacer_resume``); the evidence is
        kept until :meth:`resumed` says when the pause ended. ``explained``: a hidden limit's
        cap accounts for it (``HiddenLimit``): it only closes the epoch, never teaches."""
        if wait < ZERO_WAIT_FLOOR:  # "come back now": taken once, then backed off from
            if self._zero_waits:
                floor = ZERO_WAIT_FLOOR * 2 ** (self._zero_waits - 1)
                wait = max(wait, min(floor, _ZERO_WAIT_CAP))
            self._zero_waits += 1
        if explained:
            self.throttled(sent, now, wait, learn=False)
            return wait
        learn = not foreseen or self._strikes > 0
        if defer:
            epoch = self._epoch if self._epoch is not None else sent
            if self._pending is None and sent >= epoch:
                self._pending = (sent, now, learn)
                self._strikes += 1
        elif self.throttled(sent, now, wait, learn=learn):
            self._strikes += 1
        return wait

    def resumed(self, end: float) -> None:
        """The pause of a deferred 429 ended at ``end`` (estimated): learn from it now."""
        if self._pending is not None:
            sent, now, learn = self._pending
            self._pending = None
            self.throttled(sent, now, max(0.0, end - now), learn=learn)

    def throttled(self, sent: float, now: float, pause: float, *, learn: bool = True) -> bool:
        """A 429 for a request sent at ``sent``, asking for ``pause``; True if it was evidence.

        With ``learn=False`` it only closes the epoch, so the next piece of evidence measures
        from the end of this pause."""
        epoch = self._epoch if self._epoch is not None else sent
        if sent < epoch:
            return False  # sent before the last pause ended: the burst we already learned from
        end = now + pause
        if not learn or self._ok == 0:  # an epoch without a success measures nothing
            self._epoch, self._ok, self._from_send = end, 0, False
            self._measured.clear()  # nor can the epochs before it be measured with it
            self._stamp = max(self._stamp, end) if self.rate is not None else self._stamp
            return True
        # A whole-second pause (Retry-After: 1) is rounded up by half a second on average.
        rounding = 0.5 if pause >= 1.0 and pause.is_integer() else 0.0
        accepted = self._ok / max(end - rounding - epoch, 1e-3)
        if self._from_send or self._measured_from_send:
            self._measured.clear()  # an epoch from a send began mid-window: it read high
            self._measured_from_send = self._from_send
        self._measured.append(accepted)
        self._best = max(self._measured)
        self._refill(now)
        learned = max(MIN_RATE, BACKOFF * accepted)
        self.rate = learned if self.rate is None else min(self.rate, learned)
        self._tokens = 1.0  # the pause spends what was saved: one may go when it ends
        self._stamp = max(self._stamp, end)  # nothing accrues during the pause
        self._epoch, self._ok, self._from_send = end, 0, False
        logger.debug("a 429 taught a rate: %r", self)
        return True

    def ready_at(self, now: float) -> float:
        """When the next request may leave (``now`` if it may leave now)."""
        if self.rate is None:
            return now
        self._refill(now)
        if self._tokens >= 1.0:
            return now
        return max(now, self._stamp) + (1.0 - self._tokens) / self.rate

    def _refill(self, now: float) -> None:
        if self.rate is None or now <= self._stamp:
            return
        elapsed = now - self._stamp
        self._stamp = now
        self._tokens = min(self._tokens + elapsed * self.rate, max(1.0, BURST_SECONDS * self.rate))
        if self.rate < self._best:  # concave: fast back up to the last measurement
            self.rate = min(self.rate * (1.0 + REGROWTH * elapsed), self._best)
        else:  # then slowly past it, to find a limit that was raised
            self.rate = min(self.rate * (1.0 + GROWTH * elapsed), max(2.0 * self._best, MIN_RATE))


def too_long(wait: float, max_wait: float) -> RateLimitError:
    """The error for a wait of ``wait`` seconds, longer than the client will sit out."""
    return RateLimitError(
        f"rate limited: the server asks to wait {wait:.3f}s, longer than max_retry_wait="
        f"{max_wait:g}s",
        retry_after=wait,
        status_code=429,
        headers={},
        body=b"",
    )


class HiddenLimit:
    """A stricter limit than the headers announce, shown by a 429 that says ``remaining > 0``.

    Such a 429 is the server's own count: it had admitted ``limit - remaining`` in this window
    when it refused, so that is the limit it enforces (Close's hidden limits, the ``hidden``
    model). From then on every report is read as of that limit (``remaining`` less the
    difference), so the window's budget, not a learned rate, paces: one 429 after a burst, not
    a rate learned 5-12% low from a pause's estimated ends. The cap regrows by
    ``HIDDEN_GROWTH`` per second, up to the announced limit, so a hidden limit that was raised
    (or was another key's share of an organisation's limit) is found again; each regrowth past
    the real limit costs one 429 at the end of a window, which pins the cap again.
    """

    def __init__(self) -> None:
        self._cap: float | None = None  # the hidden limit seen, as of _since
        self._since = 0.0
        self._admitted = 0  # the most a report showed admitted in a window, as of _admitted_at
        self._admitted_at = 0.0

    def __repr__(self) -> str:
        cap = "none" if self._cap is None else f"{self._cap:g} since {self._since:.3f}"
        return f"<HiddenLimit {cap}>"

    def seen(
        self, info: RateLimitInfo | None, status: int | None, now: float, *, available: int
    ) -> tuple[RateLimitInfo | None, bool]:
        """``info`` as of the hidden limit (as sent if none is known), and whether this is a
        429 the cap explains: one that set it, or pinned it again after it regrew.

        ``available`` is what the pacer expected to be left (as of the cap). A 429 that counts
        fewer than the cap pinned before, or far more than we sent (``remaining`` under half of
        ``available``: another key drained a shared limit), or under half of what a window was
        just seen to admit (a stray: another limit refused it), is no limit of this window's
        count: it leaves the cap alone and teaches a rate like any 429 nothing foresaw."""
        if info is None or not info.limit or info.remaining is None:
            return info, False
        explained = False
        cap = info.limit if self._cap is None else self._grown(now, info.limit)
        count = info.limit - info.remaining  # admitted in this window, by the server's count
        if status != 429 and (count >= self._admitted or now - self._admitted_at > STRAY_HORIZON):
            self._admitted, self._admitted_at = count, now
        if status == 429 and 0 < info.remaining < info.limit:  # remaining > limit: no count
            ours = 2 * info.remaining >= available + (info.limit - cap)
            stray = 2 * count < self._admitted and now - self._admitted_at <= STRAY_HORIZON
            if ours and not stray and (self._cap is None or count >= self._cap):
                self._cap, self._since, explained, cap = float(count), now, True, count
                logger.debug("a 429 with remaining > 0: the limit enforced is %r", self)
        if cap >= info.limit:  # none, or regrown to the announced limit: nothing hidden
            self._cap = None
            return info, explained
        remaining = max(0, info.remaining - (info.limit - cap))
        return RateLimitInfo(cap, remaining, info.reset, info.whole_seconds), explained

    def _grown(self, now: float, limit: int) -> int:
        assert self._cap is not None
        return min(limit, int(self._cap * (1.0 + HIDDEN_GROWTH * (now - self._since))))
