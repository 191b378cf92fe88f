"""An in-process fake of Close's ``POST /api/v1/opportunity/`` for tests and benchmarks.

``FakeCloseServer`` is a small aiohttp.web app bound to ``127.0.0.1`` on a random free
port. It authenticates like Close (HTTP Basic with the API key as username, or Bearer),
validates the payload and answers with a full Opportunity (status **200**), rate-limits per
API key in fixed windows using one of several header/body *dialects*, and can be scripted
to fail (5xx, 429, dropped connections, hangs). It is meant for **your own tests** too::

    import pytest
    from close_async.testing import FakeCloseServer

    @pytest.fixture
    async def close_server():
        async with FakeCloseServer(rate_limit=100, window=1.0) as server:
            yield server

    async def test_creates(close_server):
        ...  # point your client at close_server.base_url, any non-empty API key works
        assert len(close_server.created) == 1

Behaviour notes:

* ``lead_id="lead_missing"`` (``LEAD_MISSING``) answers Close's real 400 shape
  ``{"errors": [], "field-errors": {"lead": "Object does not exist."}}``.
* Rate limits: ``rate_limit=L, window=W, dialect=D`` limits each API key/token to ``L``
  requests per fixed window aligned to the server start (window index
  ``floor((loop.time() - t0) / W)``). ``rate_limit=RateLimitModel(...)`` picks any other
  model Close has shown: whole-second ``reset``, ``Retry-After`` on 429s, headers only on
  429s, a hidden stricter limit (429 while ``remaining > 0``), sliding window, token bucket,
  a limit that changes mid-run, one organisation limit shared by every key; see
  ``RateLimitModel`` and its ``preset(name, limit=..., window=...)`` (``PRESETS``).
  Requests answered 429 by the limiter do **not** consume anything (like Close). Every
  authenticated request that passes the limiter consumes one slot, whatever its outcome
  (200, 400, scripted fault). 401 answers show the presented key's state without consuming
  it. ``rate_limit=None`` means unlimited and no rate-limit headers at all.
* Dialects (``DIALECTS``): ``modern`` (``RateLimit: limit=L, remaining=R, reset=S``),
  ``semicolon`` (same with ``;``), ``legacy_nested`` / ``legacy_flat`` (``X-Rate-Limit-*``
  headers, Close's two historical 429 JSON bodies), ``html`` (ingress-style HTML 429 with
  only ``Retry-After``; other answers carry ``RateLimit``) and ``none`` (no headers; empty 429).
* Faults (``FAULTS``) queued by ``fail_next`` are consumed FIFO, one
  per create request that passes auth and the limiter, before the body is validated:
  ``500``/``502``/``503``/``504``/``429``/``drop_before_create`` answer without creating;
  ``500_after_create``/``drop``/``hang`` create first (a 400 body still answers 400).
  ``hang`` answers 200 after ``hang_seconds``, or is dropped by ``close``.
  A scripted ``429`` shows ``remaining=0`` (``limit=0`` when unlimited). Dropped requests
  are logged with ``status=None``. Other paths answer 404 (405 for non-POST on the
  opportunity path), are logged, and skip auth, limiter and faults.
* ``latency`` is slept before a request is processed, so rate-limit state is computed at
  answer time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import msgspec
from aiohttp import web

from .http import (
    DIALECTS,
    FAULTS,
    INVALID_JSON,
    NOT_AN_OBJECT,
    OPPORTUNITY_PATH,
    SERVER_ERROR,
    UNAUTHORIZED,
    api_key_from_header,
    decode,
    encode,
    json_response,
    model_429,
    model_headers,
    server_fault,
    too_many_requests,
)
from .limits import (
    ALGORITHMS,
    PRESETS,
    Limiter,
    RateLimitModel,
    Verdict,
)
from .opportunity import (
    DEFAULT_ORGANIZATION_ID,
    LEAD_MISSING,
    build_opportunity,
    validate_opportunity,
)

__all__ = [
    "ALGORITHMS",
    "DIALECTS",
    "FAULTS",
    "FakeCloseServer",
    "LEAD_MISSING",
    "PRESETS",
    "RateLimitModel",
    "RequestRecord",
]


@dataclass(slots=True, eq=False)
class RequestRecord:
    """One request received by ``FakeCloseServer`` (appended on arrival)."""

    method: str
    path: str
    api_key: str | None  # the presented key/token (even if rejected), None if absent
    body: bytes
    at: float  # loop.time() on arrival
    headers: Mapping[str, str] = field(repr=False, default_factory=dict)
    status: int | None = None  # None while in flight or when the connection was dropped
    fault: str | None = None  # the scripted fault this request consumed, if any


class FakeCloseServer:
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
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}; expected one of {DIALECTS}")
        if window <= 0 or latency < 0 or hang_seconds < 0:
            raise ValueError("window must be > 0; latency and hang_seconds must be >= 0")
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
        self._port = port
        self.created: list[dict[str, Any]] = []
        self.requests: list[RequestRecord] = []
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
        """Forget created opportunities, logged requests, queued faults and rate-limit state.

        On a started server the rate-limit clock restarts too: windows and ``schedule``
        count from now, as on a fresh server.
        """
        self.created.clear()
        self.requests.clear()
        self._faults.clear()
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

    # -- request handling ---------------------------------------------------------------

    async def _record(self, request: web.Request) -> RequestRecord:
        record = RequestRecord(
            request.method,
            request.path,
            api_key_from_header(request.headers.get("Authorization")),
            await request.read(),
            asyncio.get_running_loop().time(),
            request.headers,
        )
        self.requests.append(record)
        return record

    async def _not_found(self, request: web.Request) -> web.Response:
        record = await self._record(request)
        if request.path == OPPORTUNITY_PATH:
            record.status = 405
            return json_response(405, encode({"error": "Method Not Allowed"}), {})
        record.status = 404
        return json_response(404, encode({"error": "Not Found"}), {})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = await self._record(request)
        task = asyncio.current_task()
        assert task is not None
        self._inflight.add(task)
        try:
            if self._latency:
                await asyncio.sleep(self._latency)
            response = await self._process(record)
        finally:
            self._inflight.discard(task)
        if response is None:  # drop the connection without answering
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never sent: aiohttp finds the transport closing
        record.status = response.status
        return response

    def _check(self, key: str, *, consume: bool = True) -> Verdict:
        assert self._limiter is not None
        now = asyncio.get_running_loop().time() - self._t0
        return self._limiter.check(key, now, consume=consume)

    async def _process(self, record: RequestRecord) -> web.Response | None:
        """Answer a create request; None means: drop the connection."""
        key = record.api_key
        headers: dict[str, str] = {}
        if key is None or (self._api_keys is not None and key not in self._api_keys):
            if self._limiter is not None:
                headers = model_headers(
                    self.rate_limit_model, self._check(key or "", consume=False)
                )
            return json_response(401, UNAUTHORIZED, headers)
        if self._limiter is not None:
            verdict = self._check(key)
            if not verdict.admitted:  # remaining > 0 here means a hidden limit
                return model_429(self.rate_limit_model, verdict)
            headers = model_headers(self.rate_limit_model, verdict)
        fault = record.fault = self._faults.popleft() if self._faults else None
        if fault == "429":
            if self._limiter is None:
                return too_many_requests("modern", 0, 1.0, 1.0)
            return model_429(
                self.rate_limit_model, self._check(key, consume=False)._replace(remaining=0)
            )
        if fault == "drop_before_create":
            return None
        if fault in ("500", "502", "503", "504"):
            return server_fault(fault, headers)
        try:
            data = decode(record.body)
        except msgspec.DecodeError:
            return json_response(400, INVALID_JSON, headers)
        if not isinstance(data, dict):
            return json_response(400, NOT_AN_OBJECT, headers)
        errors = validate_opportunity(data)
        if errors:
            return json_response(400, encode({"errors": [], "field-errors": errors}), headers)
        opportunity = build_opportunity(data, self._organization_id)
        self.created.append(opportunity)
        if fault == "500_after_create":
            return json_response(500, SERVER_ERROR, headers)
        if fault == "drop":
            return None
        if fault == "hang":
            assert self._closing is not None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._hang_seconds)
            if self._closing.is_set():
                return None
        return json_response(200, encode(opportunity), headers)
