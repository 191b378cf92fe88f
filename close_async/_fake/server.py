"""An in-process fake of Close's API (opportunities, leads) for tests and benchmarks.

``FakeCloseServer`` is a small aiohttp.web app bound to ``127.0.0.1`` on a random free
port. It authenticates like Close (HTTP Basic with the API key as username, or Bearer),
creates, reads, updates, deletes and lists opportunities and creates leads with Close's
shapes, rate-limits per API key and endpoint group in one of several header/body *dialects*,
lags its list behind writes, and can be scripted to fail (5xx, 429, dropped connections,
hangs, late creates), one by one or at random rates. It is meant for **your own tests** too::

    import pytest
    from close_async.testing import FakeCloseServer

    @pytest.fixture
    async def close_server():
        async with FakeCloseServer(rate_limit=100, window=1.0) as server:
            yield server

    async def test_creates(close_server):
        ...  # point your client at close_server.base_url, any non-empty API key works
        assert len(close_server.created) == 1

Behaviour notes (each helper module's docstring has the details):

* ``lead_id="lead_missing"`` (``LEAD_MISSING``) answers Close's real 400 shape
  ``{"errors": [], "field-errors": {"lead": "Object does not exist."}}``.
* Rate limits (``_fake.limits``): ``rate_limit=L, window=W, dialect=D`` limits each
  API key/token to ``L`` requests per fixed window aligned to the server start;
  ``rate_limit=RateLimitModel(...)`` (or ``RateLimitModel.preset(...)``, ``PRESETS``) picks
  any other model Close has shown. A 429 from the limiter consumes nothing; every other
  authenticated request consumes one slot of its group (``"POST opportunity"``, ``"GET
  opportunity"``, ...), whatever its outcome; a 401 shows the key's state without consuming
  it. ``rate_limit=None``: unlimited, no rate-limit headers. Dialects: ``DIALECTS``.
* Faults (``FAULTS``) queued by ``fail_next`` are consumed FIFO, one
  per create request that passes auth and the limiter, before the body is validated:
  ``500``/``502``/``503``/``504``/``429``/``drop_before_create`` answer without creating;
  ``500_after_create``/``drop``/``hang`` create first (a 400 body still answers 400).
  ``hang`` answers 200 after ``hang_seconds``, or is dropped by ``close``; ``late_create``
  holds the request ``late_seconds`` *before* creating (then answers 200), so the create lands
  after the client timed out; held at ``close``, it is dropped and never created.
  A scripted ``429`` shows ``remaining=0`` (``limit=0`` when unlimited). Dropped requests
  are logged with ``status=None``. Other paths answer 404 (405 for a method an endpoint
  does not serve), are logged, and skip auth, limiter and faults. ``faults=FaultPlan(...)``
  draws faults at random, seeded (``_fake.faults``).
* Reads and writes (``_fake.routes``): ``GET``/``PUT``/``DELETE /opportunity/{id}/``,
  the list ``GET /opportunity/`` (``max_limit``, ``max_skip``), ``POST /lead/``, ``GET
  /lead/{id}/``. ``server.opportunities`` and ``server.leads`` hold the live objects
  (``created`` stays the log of creates as answered). ``list_lag=S``: an opportunity is listed
  only ``S`` seconds after its create, on ``clock`` (default ``loop.time``); reads by id see
  it at once.
* ``latency`` is slept before a request is processed, so rate-limit state is computed at
  answer time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

from aiohttp import web

from .answer import Answering
from .faults import FaultDraw, FaultPlan
from .http import (
    DIALECTS,
    FAULTS,
    OPPORTUNITY_PATH,
)
from .lead import LEAD_STATUSES, STATUS_MISSING
from .limits import (
    ALGORITHMS,
    PRESETS,
    Limiter,
    RateLimitModel,
)
from .opportunity import (
    DEFAULT_ORGANIZATION_ID,
    LEAD_MISSING,
)
from .routes import ROUTES, Routes
from .store import RequestRecord, Store

__all__ = [
    "ALGORITHMS",
    "DIALECTS",
    "FAULTS",
    "FakeCloseServer",
    "FaultPlan",
    "LEAD_MISSING",
    "LEAD_STATUSES",
    "PRESETS",
    "RateLimitModel",
    "RequestRecord",
    "STATUS_MISSING",
]


class FakeCloseServer(Answering):
    """Fake Close API server; see the module docstring. Use as ``async with``."""

    def __init__(
        self,
        *,
        api_keys: Collection[str] | None = None,
        rate_limit: int | RateLimitModel | None = None,
        window: float = 1.0,
        dialect: str = "modern",
        latency: float = 0.0,
        organization_id: str = DEFAULT_ORGANIZATION_ID,
        hang_seconds: float = 3600.0,
        port: int = 0,
        faults: FaultPlan | None = None,
        late_seconds: float = 60.0,
        list_lag: float = 0.0,
        max_limit: int = 100,
        max_skip: int | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
        if window <= 0 or min(latency, hang_seconds, late_seconds, list_lag) < 0:
            raise ValueError(
                "window must be > 0; latency, hang_seconds, late_seconds, list_lag must be >= 0"
            )
        if max_limit < 1 or (max_skip is not None and max_skip < 0):
            raise ValueError("max_limit must be >= 1 and max_skip >= 0 (or None)")
        if isinstance(rate_limit, RateLimitModel):
            if (window, dialect) != (1.0, "modern"):
                raise ValueError("window and dialect belong in the RateLimitModel")
            model: RateLimitModel | None = rate_limit
        else:
            model = (
                None
                if rate_limit is None
                else RateLimitModel(limit=rate_limit, window=window, dialect=dialect)
            )
        self._api_keys = None if api_keys is None else frozenset(api_keys)
        self._limiter = None if model is None else Limiter(model)
        self._latency = latency
        self._organization_id = organization_id
        self._hang_seconds = hang_seconds
        self._late_seconds = late_seconds
        self._port = port
        self._plan = faults
        self._draw = None if faults is None else FaultDraw(faults)
        self._store = Store(organization_id, list_lag, clock or _loop_time)
        self._routes = Routes(self._store, max_limit=max_limit, max_skip=max_skip)
        self.created: list[dict[str, Any]] = []
        """The opportunities created by ``POST /opportunity/``, in order, as answered (a create
        whose answer was dropped or was a ``500_after_create`` is here too); later updates and
        deletes do not change this log (``opportunities`` holds the live objects)."""
        self.requests: list[RequestRecord] = []
        """Every request received, on every path, appended on arrival (``reset()`` clears it)."""
        self._faults: deque[str] = deque()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/v1/`` (with trailing slash); valid after start()."""
        if self._base_url is None:
            raise RuntimeError("FakeCloseServer is not started")
        return self._base_url

    @property
    def rate_limit_model(self) -> RateLimitModel | None:
        """The model this server enforces (None: unlimited, no rate-limit headers)."""
        return None if self._limiter is None else self._limiter.model

    @property
    def started_at(self) -> float:
        """``loop.time()`` when the rate-limit clock started: ``start()`` or the last ``reset()``.

        Fixed windows are ``[started_at + k * window, started_at + (k + 1) * window)``.
        """
        return self._t0

    @property
    def opportunities(self) -> dict[str, dict[str, Any]]:
        """The live opportunities, id -> the object as ``GET`` answers it (deletes removed)."""
        return self._store.opportunities

    @property
    def leads(self) -> dict[str, dict[str, Any]]:
        """The leads created by ``POST /lead/`` or for a create without ``lead_id``."""
        return self._store.leads

    @property
    def count_429(self) -> int:
        """How many requests were answered 429 (by the limiter or a scripted fault)."""
        return sum(1 for record in self.requests if record.status == 429)

    def fail_next(self, fault: str, *, times: int = 1) -> None:
        """Queue ``fault`` (one of ``FAULTS``) for the next ``times`` create requests."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; expected one of {FAULTS}")
        if times < 0:
            raise ValueError("times must be >= 0")
        self._faults.extend([fault] * times)

    def reset(self) -> None:
        """Forget created objects, logged requests, queued faults and rate-limit state.

        On a started server the rate-limit clock restarts too: windows and ``schedule``
        count from now, as on a fresh server; a ``FaultPlan``'s draws start over.
        """
        self.created.clear()
        self.requests.clear()
        self._faults.clear()
        self._store.clear()
        self._draw = None if self._plan is None else FaultDraw(self._plan)
        if self._limiter is not None:
            self._limiter.clear()
        if self._loop is not None:  # from any thread: loop.time() is only a clock read
            self._t0 = self._loop.time()

    async def start(self) -> None:
        """Bind 127.0.0.1 (a random free port unless ``port`` was given) and serve."""
        if self._runner is not None:
            raise RuntimeError("FakeCloseServer is already started")
        app = web.Application()
        app.router.add_post(OPPORTUNITY_PATH, self._handle)
        for method, path in ROUTES:
            app.router.add_route(method, path, self._handle)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._closing = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._t0 = self._loop.time()
        self._base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/"

    async def close(self) -> None:
        """Stop serving; still-hanging requests are dropped. Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        assert self._closing is not None
        self._closing.set()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=1.0)
        await runner.cleanup()
        leftovers = [task for task in self._inflight if not task.done()]
        for task in leftovers:  # pragma: no cover - only with a long latency at close
            task.cancel()
        if leftovers:  # pragma: no cover
            await asyncio.wait(leftovers)
        self._base_url = None
        self._loop = None

    async def __aenter__(self) -> FakeCloseServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _loop_time() -> float:
    return asyncio.get_running_loop().time()
