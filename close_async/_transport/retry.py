"""When a failed attempt is tried again, and after how long.

The decision, as a spec (each branch is logged at DEBUG on the ``close_async`` logger):

1. 429 Too Many Requests: the server rejected the request before processing it, so it is always
   safe to retry, after the wait the server asks for. A wait longer than ``max_retry_wait`` is not
   waited for: the RateLimitError is raised at once with ``.retry_after``. 429s do not count
   against ``max_retries`` (a create must not fail merely because many were started at once):
   they are retried while the server's waits fit ``max_retry_wait`` and ``deadline``, up to
   ``MAX_RATE_LIMITED`` in a row as a backstop against a server that never stops refusing.
   ``max_retries=0`` still means no retries at all. A 429 asking for (almost) nothing is taken at
   its word once; the next ones in a row wait at least ``ZERO_WAIT_FLOOR`` doubling each time.
2. No connection was made (refused, DNS, TLS handshake, connect timeout): nothing was sent, so it
   is retried with jittered exponential backoff.
3. The outcome is unknown (timeout or lost connection after sending, 5xx): Close has no idempotency
   keys, so a retry could create a duplicate. Not retried unless ``retry_unknown_outcome=True``.
4. Anything else (400, 401, 403, 404, a bad body): retrying cannot help. Raised at once.

Retries stop after ``max_retries`` other failures or when the next wait would pass ``deadline``
seconds since the first attempt. A fresh ``AsyncRetrying`` is built per call: tenacity keeps
per-call state on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import tenacity

from .._constants import DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_WAIT, INITIAL_BACKOFF, MAX_BACKOFF
from .._exceptions import (
    APIConnectionError,
    CloseError,
    InvalidInputError,
    RateLimitError,
    RedirectError,
    ServerError,
)

logger = logging.getLogger("close_async")

# Backstop for 429s, which do not count against max_retries: at Close's usual 1 s waits a create
# gives up after ~100 s of refusals in a row (a paced fan-out meets one or two).
MAX_RATE_LIMITED = 100
# The wait of a 429 that asks for under this, from its second in a row: doubles up to max_backoff.
ZERO_WAIT_FLOOR = 0.05


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries. Every field has a safe default."""

    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries after the first attempt, for failures other than 429s (0: none)."""
    max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT
    """The longest single wait (seconds) a 429 may ask: a longer one raises
    ``RateLimitError`` at once."""
    deadline: float | None = None
    """Seconds from the first attempt after which no retry is started (None: no limit)."""
    retry_unknown_outcome: bool = False
    """Also retry a create whose outcome is unknown (a timeout or 5xx after it
    was sent), which may duplicate it. Off by default."""
    initial_backoff: float = INITIAL_BACKOFF
    """The first wait (seconds) when the server names none; doubled each time,
    with full jitter."""
    max_backoff: float = MAX_BACKOFF
    """The cap on that wait, in seconds."""

    def __post_init__(self) -> None:
        checks = {
            "max_retries": self.max_retries,
            "max_retry_wait": self.max_retry_wait,
            "initial_backoff": self.initial_backoff,
            "max_backoff": self.max_backoff,
            "deadline": 0 if self.deadline is None else self.deadline,
        }
        for name, value in checks.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidInputError(name, value, "must be a number >= 0")
        if not isinstance(self.max_retries, int):
            raise InvalidInputError("max_retries", self.max_retries, "must be an integer")

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, RateLimitError):
            if exc.retry_after is not None and exc.retry_after > self.max_retry_wait:
                logger.debug(
                    "429 asks for %.3fs, over max_retry_wait=%.3fs: giving up",
                    exc.retry_after,
                    self.max_retry_wait,
                )
                return False
            logger.debug("429: retrying, the request was not processed")
            return True
        if isinstance(exc, RedirectError):  # it would be redirected again, or was processed
            logger.debug("%s: redirects are never followed nor retried", exc)
            return False
        if isinstance(exc, CloseError) and exc.may_have_succeeded:
            logger.debug(
                "outcome unknown (%s): %s",
                exc,
                "retrying (retry_unknown_outcome=True)"
                if self.retry_unknown_outcome
                else "not retrying, a retry could duplicate",
            )
            return self.retry_unknown_outcome
        if isinstance(exc, APIConnectionError):
            logger.debug("not sent (%s): retrying", exc)
            return True
        if isinstance(exc, ServerError) and self.retry_unknown_outcome:
            # A safe method's 5xx (GET, HEAD): nothing was changed, so it is not "unknown", and
            # the client turns retry_unknown_outcome on for every idempotent method.
            logger.debug("%s of an idempotent request: retrying", exc.status_code)
            return True
        logger.debug("%s: not retryable", type(exc).__name__)
        return False

    def wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            return exc.retry_after
        backoff = tenacity.wait_random_exponential(
            multiplier=self.initial_backoff, max=self.max_backoff
        )
        return float(backoff(state))

    def retrying(
        self,
        started: float | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> tenacity.AsyncRetrying:
        """A fresh retrying object. ``started`` (``time.monotonic()``) is when the first attempt
        began, if it ran before this object existed: the deadline counts from there. ``sleep``
        replaces ``asyncio.sleep`` between attempts (the client's ends at ``aclose()``)."""
        counts = _Counts(self)
        stop: tenacity.stop.stop_base = counts
        if self.deadline is not None:
            stop = stop | _stop_before_deadline(self.deadline, started)
        return tenacity.AsyncRetrying(
            stop=stop,
            wait=counts.wait,
            retry=tenacity.retry_if_exception(self.should_retry),
            before_sleep=_log_retry,
            reraise=True,
            sleep=asyncio.sleep if sleep is None else sleep,
        )


class _Counts(tenacity.stop.stop_base):
    """One call's failures: 429s apart from the rest (the stop), and the zero-wait floor."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.others = 0  # failures other than 429
        self.limited = 0  # 429s in a row
        self.zero_waits = 0  # 429s in a row that asked for (almost) nothing

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitError) and self.policy.max_retries > 0:
            self.limited += 1
            return self.limited > MAX_RATE_LIMITED
        self.limited = 0
        self.others += 1
        return self.others > self.policy.max_retries

    def wait(self, state: tenacity.RetryCallState) -> float:
        seconds = self.policy.wait(state)
        exc = state.outcome.exception() if state.outcome else None
        if not isinstance(exc, RateLimitError) or seconds >= ZERO_WAIT_FLOOR:
            self.zero_waits = 0
            return seconds
        self.zero_waits += 1
        if self.zero_waits == 1:
            return seconds
        floor = ZERO_WAIT_FLOOR * 2.0 ** (self.zero_waits - 2)
        return max(seconds, min(floor, self.policy.max_backoff))


class _stop_before_deadline(tenacity.stop.stop_base):
    """Stop when the next wait would end past the deadline, counted from the first attempt."""

    def __init__(self, deadline: float, started: float | None) -> None:
        self.deadline = deadline
        self.started = started

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        started = state.start_time if self.started is None else self.started
        # Both on tenacity's clock (time.monotonic), read when the attempt ended.
        now = state.outcome_timestamp if state.outcome_timestamp is not None else time.monotonic()
        return now - started + state.upcoming_sleep >= self.deadline


def _log_retry(state: tenacity.RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info(
        "retrying in %.3fs (attempt %d failed: %s: %s)",
        wait,
        state.attempt_number,
        type(exc).__name__,
        exc,
    )
