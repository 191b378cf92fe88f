"""A request rate shared by every process and host through Redis: ``RedisTokenBucket``.

Close counts requests per API key, not per process: twenty workers on five machines share one
budget, which no in-process bucket can see. This one keeps the budget in Redis::

    limiter = RedisTokenBucket("redis://localhost:6379/0", rate=40, burst=5, identity=api_key)
    async with AsyncCloseClient(api_key, limiter=limiter) as close:
        await close.opportunities.create(lead_id="lead_...", value=1000)
    await limiter.aclose()

- One Lua script decides atomically: GCRA on one key (the theoretical arrival time, TAT) with
  Redis's own ``TIME``, so hosts with skewed clocks agree. It reserves the next free slot and
  answers the exact wait until it (0: go now); the caller sleeps that long once. It never polls,
  and a caller that wakes late does not push back the slots of the others.
- A "paused until" key, read by the same script, shares the server's verdict: a 429 or
  ``remaining=0`` seen by one process (the client calls ``RedisTokenBucket.pause``) holds
  every process back until the reset. A caller that slept checks it once more before going.
- In each process one task at a time holds a reservation (the others queue, first come first
  served), so a pause reaches all but at most one waiting request per process.
- Redis down, slow or restarted: ``on_redis_error="local"`` (default) logs one warning, uses an
  in-process ``TokenBucket`` and tries Redis again at most once a second; ``"fail"`` raises
  ``CloseError`` instead, so nothing is sent without the shared limit.
- ``redis`` (redis-py, extra ``close-async[redis]``) is imported only when a bucket is created.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from typing import TYPE_CHECKING, Literal

from .._constants import endpoint_group
from .._exceptions import CloseError
from .limiter import Limiter, TokenBucket

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisTokenBucket"]

logger = logging.getLogger("close_async")

_PROBE_INTERVAL = 1.0  # seconds between attempts to get back to Redis while it is down

# Times are integer microseconds: exact in Lua's doubles (2^53 us is 285 years) and exact as
# the integer reply Redis makes of a returned number. ARGV "now" is for tests; "" reads TIME.
_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local now = tonumber(ARGV[#ARGV])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: TAT, paused-until. ARGV: emission interval (us), burst, now. Reserves the first slot
# that is at or after now, conforms to GCRA (tat - (burst - 1) * interval) and is not paused;
# returns the wait until it in us.
_ACQUIRE = (
    _NOW
    + """
local interval = tonumber(ARGV[1])
local paused = tonumber(redis.call('GET', KEYS[2])) or 0
local tat = math.max(tonumber(redis.call('GET', KEYS[1])) or 0, now)
local at = math.max(tat - (tonumber(ARGV[2]) - 1) * interval, paused, now)
tat = math.max(tat, at) + interval
local ttl_ms = math.ceil((tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', ttl_ms)
return at - now
"""
)

# KEYS: paused-until. ARGV: now. Returns how long the pause still runs, in us (0: none).
_CHECK = (
    _NOW
    + """
local paused = tonumber(redis.call('GET', KEYS[1])) or 0
return math.max(paused - now, 0)
"""
)

# KEYS: paused-until. ARGV: pause (us), now. paused_until = max(existing, now + pause), with a
# TTL. Returns the pause in force (us).
_PAUSE = (
    _NOW
    + """
local target = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1])) or 0
if target <= current then return current - now end
local ttl_ms = math.ceil((target - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', target), 'PX', ttl_ms)
return target - now
"""
)


class RedisTokenBucket:
    """``rate`` requests per second and bursts of ``burst``, shared through Redis.

    A drop-in for ``AsyncCloseClient(limiter=...)``. Every process that must share one budget
    passes the same Redis, ``key``, ``identity`` and ``group`` (and the same ``rate``/``burst``).

    Args:
        redis: a ``redis.asyncio.Redis`` client, or a URL (``redis://host:6379/0``): the bucket
            then makes a client with short socket timeouts and closes it in ``aclose``.
        rate: requests per second, for all processes together.
        burst: requests that may start at once after a quiet spell (>= 1).
        key: prefix of the Redis keys.
        identity: what identifies the budget, usually the API key. Only the first 16 hex digits
            of its SHA-256 go into the Redis key, never the identity itself.
        group: the endpoint group (Close limits each group separately).
        on_redis_error: ``"local"``: fall back to ``fallback`` while Redis is unreachable;
            ``"fail"``: raise ``CloseError`` (nothing is sent).
        fallback: the in-process limiter used meanwhile; default ``TokenBucket(rate, burst)``.
        timeout: seconds one Redis call may take before Redis counts as unavailable.
    """

    def __init__(
        self,
        redis: Redis | str,
        *,
        rate: float,
        burst: int,
        key: str = "close-async",
        identity: str | None = None,
        group: str = endpoint_group("POST", "opportunity/"),
        on_redis_error: Literal["local", "fail"] = "local",
        fallback: Limiter | None = None,
        timeout: float = 0.5,
    ) -> None:
        local = TokenBucket(rate, burst)  # validates rate and burst
        if on_redis_error not in ("local", "fail"):
            raise ValueError(f"on_redis_error must be 'local' or 'fail', got {on_redis_error!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        try:
            from redis import exceptions as redis_errors
            from redis.asyncio import Redis as AsyncRedis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # pragma: no cover - the test suite has redis installed
            raise ImportError(
                "RedisTokenBucket needs redis-py: pip install 'close-async[redis]'"
            ) from exc
        self.rate, self.burst, self.timeout = float(rate), burst, float(timeout)
        self._interval_us = math.ceil(1_000_000 / self.rate)  # rounded towards the safe side
        parts = [key] if identity is None else [key, _identity_hash(identity)]
        self.key = ":".join([*parts, group])
        """The bucket's Redis key: ``key``, a hash of ``identity`` (if given) and the
        endpoint group, joined by ``:``."""
        # One hash tag: both keys live in the same Redis Cluster slot, as a script requires.
        self._keys = [f"{{{self.key}}}:tat", f"{{{self.key}}}:paused"]
        self._owns_redis = isinstance(redis, str)
        if isinstance(redis, str):
            # No retries of its own (_call makes the one that helps): a Redis that is down or
            # hangs must not hold the workers up for longer than `timeout`.
            client: Redis = AsyncRedis.from_url(
                redis,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
            )
        else:
            client = redis
        self._redis = redis = client
        self._acquire_script: AsyncScript = redis.register_script(_ACQUIRE)
        self._pause_script: AsyncScript = redis.register_script(_PAUSE)
        self._check_script: AsyncScript = redis.register_script(_CHECK)
        # asyncio.TimeoutError comes from wait_for (a class of its own before Python 3.11).
        self._errors = (redis_errors.RedisError, OSError, asyncio.TimeoutError)
        self._connection_error = redis_errors.ConnectionError
        self._fail_closed = on_redis_error == "fail"
        self._fallback: Limiter = local if fallback is None else fallback
        self._lock = asyncio.Lock()  # FIFO: one task per process asks Redis at a time
        self._waiting = 0
        self._down_since: float | None = None  # time.monotonic() Redis was found unavailable
        self._next_probe = 0.0

    async def acquire(self) -> None:
        """Wait until the shared budget admits one more request.

        Cancellation-safe: a caller cancelled while it waits for its reserved slot leaves the
        slot unused (the budget is under-used, never exceeded).
        """
        self._waiting += 1
        try:
            # While Redis is down, only the caller whose probe is due goes to it.
            if self._down_since is None or time.monotonic() >= self._next_probe:
                async with self._lock:
                    if (self._down_since is None or self._probe_due()) and await self._shared():
                        return
            await self._fallback.acquire()
        finally:
            self._waiting -= 1

    async def _shared(self) -> bool:
        """Take a slot of the shared budget; False if Redis failed before one was reserved."""
        while True:
            try:
                wait = await self._call(
                    self._acquire_script, self._keys, self._interval_us, self.burst
                )
            except self._errors as exc:
                self._failed(exc)
                return False
            self._recovered()
            if wait <= 0:
                return True
            await asyncio.sleep(wait / 1e6)
            try:  # did another process learn of a spent window while we slept?
                wait = await self._call(self._check_script, self._keys[1:])
            except self._errors as exc:
                self._failed(exc)
                return True  # the slot was ours
            if wait <= 0:
                return True
            await asyncio.sleep(wait / 1e6)  # then reserve again, after the pause

    async def pause(self, seconds: float) -> None:
        """Hold every process back for ``seconds`` (the server said its window is spent).

        Never raises: a pause that cannot be shared still applies in this process through the
        client's own pacing.
        """
        if not seconds > 0 or self._down_since is not None:
            return
        try:
            await self._call(self._pause_script, self._keys[1:], math.ceil(seconds * 1e6))
        except self._errors as exc:
            if self._fail_closed:
                logger.debug("%r: could not share a pause: %r", self, exc)
            else:
                self._failed(exc)

    async def aclose(self) -> None:
        """Close the Redis client if this bucket made it (from a URL). Safe to call twice."""
        if self._owns_redis:
            self._owns_redis = False
            close = getattr(self._redis, "aclose", None) or self._redis.close  # redis < 5.0.1
            await close()

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        """Nothing to do: the limit is on how often requests start."""

    def __repr__(self) -> str:
        if self._down_since is None:
            state = "redis"
        else:
            state = f"local for {time.monotonic() - self._down_since:.1f}s: {self._fallback!r}"
        return (
            f"RedisTokenBucket(rate={self.rate!r}, burst={self.burst}, key={self.key!r}, "
            f"state={state!r}, waiters={self._waiting})"
        )

    async def _call(self, script: AsyncScript, keys: list[str], *args: int) -> int:
        try:
            result = await asyncio.wait_for(script(keys=keys, args=[*args, ""]), self.timeout)
        except self._connection_error:
            # A pooled connection goes stale when Redis restarts: try once more, on a new one
            # (a Redis that is down refuses that one at once).
            result = await asyncio.wait_for(script(keys=keys, args=[*args, ""]), self.timeout)
        return int(result)

    def _probe_due(self) -> bool:
        """While Redis is down: True at most once per probe interval (that caller retries)."""
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + _PROBE_INTERVAL
        return True

    def _failed(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self._fail_closed:
            raise CloseError(f"shared rate limiter unavailable: {reason}") from exc
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._next_probe = self._down_since + _PROBE_INTERVAL
            logger.warning(
                "RedisTokenBucket %s: Redis unavailable (%s); using the in-process limiter "
                "until it is back",
                self.key,
                reason,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            logger.info("RedisTokenBucket %s: Redis is back after %.1fs", self.key, down)


def _identity_hash(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:16]
