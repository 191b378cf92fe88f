"""Private helpers of :mod:`close_async.testing`: the rate-limit models of ``FakeCloseServer``.

Self-contained (stdlib only) so the fake server never depends on the rest of the package.

A :class:`RateLimitModel` describes one way Close has been seen (or documented) to rate-limit;
a :class:`Limiter` is one server's state for it. Times are seconds on the server's clock,
counted from its start (``FakeCloseServer.reset()`` restarts it). Every model counts only
the requests it admits: a 429 consumes nothing.

Algorithms (``ALGORITHMS``), each admitting at most ``limit`` requests per ``window``:

* ``fixed``: windows ``[k * window, (k + 1) * window)``; ``reset`` is the time to the end of
  the current window, when ``remaining`` is back to ``limit``.
* ``sliding``: a sliding log: at most ``limit`` admissions in any ``window`` seconds;
  ``reset`` is the time until the oldest admission in the log leaves it (when one more
  request may pass), ``window`` when the log is empty.
* ``token_bucket``: ``limit`` tokens, full at the start, refilled continuously at
  ``limit / window`` per second; an admission takes one token, ``remaining`` is the whole
  tokens left. Non-429 answers say ``reset`` = the time until the bucket is full again;
  429s say the time until the next token (what some gateways send).

``hidden_limit`` enforces a stricter limit than the one announced: headers show ``limit``
and ``remaining = limit - used``, so the hidden 429s arrive while ``remaining > 0`` (Close's
docs warn of such limits). ``announced_reset`` makes every ``reset`` lie (``0`` while still
limited, or a wait of days). ``schedule`` changes ``limit`` mid-run: ``((at, limit), ...)``
means ``limit`` from ``at`` seconds after the start on. ``scope="organization"`` makes every
API key share one state (Close's organisation-wide limit), ``"key"`` gives each key its own.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

__all__ = [
    "ALGORITHMS",
    "PRESETS",
    "Limiter",
    "RateLimitModel",
    "Verdict",
]

Algorithm = Literal["fixed", "sliding", "token_bucket"]
ALGORITHMS: tuple[Algorithm, ...] = ("fixed", "sliding", "token_bucket")
_DIALECTS = ("modern", "semicolon", "legacy_nested", "legacy_flat", "html", "none")


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitModel:
    """How ``FakeCloseServer`` rate-limits and what it tells the client about it.

    Pass one as ``FakeCloseServer(rate_limit=RateLimitModel(...))``; an int ``rate_limit`` is
    ``RateLimitModel(limit=rate_limit, window=window, dialect=dialect)``. The named models of
    the benchmark are ``RateLimitModel.preset(name, limit=..., window=...)`` (``PRESETS``).
    """

    limit: int
    """Requests per ``window`` announced in the headers (and enforced unless ``hidden_limit``)."""
    window: float = 1.0
    """Seconds of the window (``fixed``, ``sliding``) or of a full refill (``token_bucket``)."""
    algorithm: Algorithm = "fixed"
    """``fixed``, ``sliding`` or ``token_bucket``: see the module docstring."""
    dialect: str = "modern"
    """Header and 429 body format, one of ``DIALECTS``: ``modern`` (``RateLimit: limit=L,
    remaining=R, reset=S``), ``semicolon`` (same with ``;``), ``legacy_nested`` /
    ``legacy_flat`` (``X-Rate-Limit-*`` and Close's old 429 JSON bodies), ``html`` (the
    ingress: an HTML 429 with only ``Retry-After``) and ``none`` (no headers, empty 429)."""
    reset_format: Literal["decimal", "whole"] = "decimal"
    """``decimal``: ``reset=0.734000``; ``whole``: rounded up to whole seconds (``reset=1``,
    as live responses show: a 0.5 s window then announces ``reset=1``)."""
    retry_after: bool = False
    """429s also carry ``Retry-After`` (whole seconds, rounded up; ``html`` always does)."""
    success_headers: bool = True
    """False: only 429s carry rate-limit headers; 200s, 400s, 401s and 500s carry none."""
    hidden_limit: int | None = None
    """A stricter limit really enforced, never announced: 429s while ``remaining > 0``."""
    schedule: tuple[tuple[float, int], ...] = ()
    """``((at, limit), ...)``: the limit changes to ``limit`` at ``at`` seconds after start."""
    scope: Literal["key", "organization"] = "key"
    """``key``: one state per API key; ``organization``: every key shares one state."""
    announced_reset: float | None = None
    """Every ``reset`` and ``Retry-After`` says this many seconds, whatever the real wait:
    ``0`` for 429s that say "now" while still limited, ``100000`` for a wait longer than any
    ``max_retry_wait``. The real limit is still enforced."""

    def __post_init__(self) -> None:
        limits = [self.limit, *(limit for _, limit in self.schedule)]
        if self.hidden_limit is not None:
            limits.append(self.hidden_limit)
        if any(limit < 1 for limit in limits):
            raise ValueError("rate_limit, hidden_limit and schedule limits must be >= 1")
        if self.window <= 0:
            raise ValueError("window must be > 0")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; expected one of {ALGORITHMS}")
        if self.dialect not in _DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}; expected one of {_DIALECTS}")
        if self.reset_format not in ("decimal", "whole"):
            raise ValueError(f"reset_format must be decimal or whole, not {self.reset_format!r}")
        if self.scope not in ("key", "organization"):
            raise ValueError(f"scope must be key or organization, not {self.scope!r}")
        if self.announced_reset is not None and self.announced_reset < 0:
            raise ValueError("announced_reset must be >= 0")
        if any(at < 0 for at, _ in self.schedule):
            raise ValueError("schedule times must be >= 0")
        # frozen: normalise a list of changes to a tuple in time order once, here
        object.__setattr__(self, "schedule", tuple(sorted(tuple(c) for c in self.schedule)))

    def limit_at(self, elapsed: float) -> int:
        """The announced limit ``elapsed`` seconds after the start (``schedule`` applied)."""
        limit = self.limit
        for at, new in self.schedule:
            if elapsed >= at:
                limit = new
        return limit

    def enforced_at(self, elapsed: float) -> int:
        """The limit really enforced ``elapsed`` seconds after the start."""
        limit = self.limit_at(elapsed)
        return limit if self.hidden_limit is None else min(limit, self.hidden_limit)

    @classmethod
    def preset(cls, name: str, *, limit: int, window: float = 1.0) -> RateLimitModel:
        """The named model of ``PRESETS`` that really admits ``limit`` per ``window``.

        ``decimal``: ``RateLimit`` on every answer, decimal ``reset`` (the old fake);
        ``whole``: whole-second ``reset`` and ``Retry-After`` on 429s (live Close);
        ``semicolon``: ``whole`` with ``;``; ``on_429``: headers only on 429s;
        ``ingress``: no headers on successes, HTML 429s with only ``Retry-After``;
        ``none``: no headers at all; ``hidden``: ``whole`` announcing twice the real limit;
        ``sliding``, ``token_bucket``: those algorithms, decimal ``reset``;
        ``changing``: ``whole``, the limit halves after 3 windows and is back after 6;
        ``shared``: ``whole``, one organisation limit for every API key.
        """

        def make(**options: Any) -> RateLimitModel:
            return cls(limit=limit, window=window, **options)

        live: dict[str, Any] = {"reset_format": "whole", "retry_after": True}
        variants = {
            "decimal": make(),
            "whole": make(**live),
            "semicolon": make(dialect="semicolon", **live),
            "on_429": make(success_headers=False, **live),
            "ingress": make(dialect="html", success_headers=False),
            "none": make(dialect="none"),
            "hidden": cls(limit=2 * limit, window=window, hidden_limit=limit, **live),
            "sliding": make(algorithm="sliding"),
            "token_bucket": make(algorithm="token_bucket"),
            "changing": make(
                schedule=((3 * window, max(1, limit // 2)), (6 * window, limit)), **live
            ),
            "shared": make(scope="organization", **live),
        }
        if name not in variants:
            raise ValueError(f"unknown preset {name!r}; expected one of {PRESETS}")
        return variants[name]


PRESETS = (
    "decimal",
    "whole",
    "semicolon",
    "on_429",
    "ingress",
    "none",
    "hidden",
    "sliding",
    "token_bucket",
    "changing",
    "shared",
)


class Verdict(NamedTuple):
    """One request's fate and what the headers say: the announced limit and remaining."""

    admitted: bool
    limit: int
    remaining: int
    reset: float  # seconds


class _State:
    """One key's (or the organisation's) counters; ``used`` may be fractional (bucket)."""

    __slots__ = ("at", "index", "log", "used")

    def __init__(self) -> None:
        self.index = -1  # fixed: the current window's number
        self.used = 0.0  # fixed: admissions this window; bucket: limit - tokens
        self.at = 0.0  # bucket: when ``used`` was last brought up to date
        self.log: deque[float] = deque()  # sliding: admission times, oldest first


class Limiter:
    """A ``RateLimitModel``'s live state; ``check`` is called once per request."""

    def __init__(self, model: RateLimitModel) -> None:
        self.model = model
        self._states: dict[str, _State] = {}

    def __repr__(self) -> str:
        return f"<Limiter {self.model.algorithm} states={len(self._states)}>"

    def clear(self) -> None:
        self._states.clear()

    def check(self, key: str, now: float, *, consume: bool = True, group: str = "") -> Verdict:
        """Admit (and count) one request of ``key`` at ``now``; ``consume=False`` only peeks.

        Each endpoint ``group`` has its own state (per key, or per organisation).
        """
        model = self.model
        owner = "" if model.scope == "organization" else key
        state = self._states.setdefault(f"{group}\0{owner}", _State())
        enforced, window = model.enforced_at(now), model.window
        used = self._used(state, now, enforced)
        admitted = used + 1 <= enforced + 1e-9  # bucket refills are floats
        if admitted and consume:
            used += 1
            if model.algorithm == "sliding":
                state.log.append(now)
            else:
                state.used = used
        if model.algorithm == "fixed":
            reset = (state.index + 1) * window - now
        elif model.algorithm == "sliding":
            reset = state.log[0] + window - now if state.log else window
        else:
            rate = enforced / window
            reset = used / rate if admitted else (used + 1 - enforced) / rate
        limit = model.limit_at(now)
        remaining = max(0, math.floor(limit - used + 1e-9))
        if model.announced_reset is not None:
            reset = model.announced_reset
        return Verdict(admitted, limit, remaining, max(0.0, reset))

    def _used(self, state: _State, now: float, enforced: int) -> float:
        """How much of the limit ``state`` has used at ``now`` (expired use forgotten)."""
        window = self.model.window
        if self.model.algorithm == "fixed":
            index = int(now // window)
            if index != state.index:
                state.index, state.used = index, 0.0
            return state.used
        if self.model.algorithm == "sliding":
            log = state.log
            while log and log[0] <= now - window:
                log.popleft()
            return float(len(log))
        state.used = max(0.0, state.used - (now - state.at) * enforced / window)
        state.at = now
        return state.used
