"""Private helpers of :mod:`close_async.testing`: how ``FakeCloseServer`` answers a request.

Self-contained (aiohttp + msgspec + stdlib) so the fake server never depends on the rest of the
package. :class:`Answering` is mixed into ``FakeCloseServer`` and works on its state. Every
request is recorded on arrival (``requests``), on every path; one that no route serves answers
404 (405 for a known path's other methods) and goes no further. An API request waits
``latency``, then is authenticated (401 with Close's body, showing the key's rate-limit state
without consuming it), then passes the limiter of its endpoint group (a 429 consumes nothing);
then the create takes its fault (a scripted one first, else a ``FaultPlan`` draw) and the other
endpoints go to ``Routes``. A request answered ``None`` is dropped: its connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Collection
from typing import Any

import msgspec
from aiohttp import web

from .faults import FaultDraw
from .http import (
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
from .limits import Limiter, Verdict
from .opportunity import validate_opportunity
from .routes import Routes, endpoint_group, known_path
from .store import RequestRecord, Store

__all__ = ["Answering"]


class Answering:
    """The answering half of ``FakeCloseServer``: the record, auth, the limiter, the create,
    its faults."""

    created: list[dict[str, Any]]
    """The opportunities created, in order, as answered (see ``FakeCloseServer.created``)."""
    _api_keys: Collection[str] | None
    _limiter: Limiter | None
    _t0: float
    _faults: deque[str]
    _draw: FaultDraw | None
    _store: Store
    _routes: Routes
    _closing: asyncio.Event | None
    _hang_seconds: float
    _late_seconds: float
    requests: list[RequestRecord]
    """Every request received (see ``FakeCloseServer.requests``)."""
    _inflight: set[asyncio.Task[Any]]
    _latency: float

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
        if known_path(request.path):
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
            response = await self._process(record, request)
        finally:
            self._inflight.discard(task)
        if response is None:  # drop the connection without answering
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never sent: aiohttp finds the transport closing
        record.status = response.status
        return response

    def _check(self, key: str, group: str, *, consume: bool = True) -> Verdict:
        assert self._limiter is not None
        now = asyncio.get_running_loop().time() - self._t0
        return self._limiter.check(key, now, consume=consume, group=group)

    async def _process(self, record: RequestRecord, request: web.Request) -> web.Response | None:
        """Answer an API request; None means: drop the connection."""
        key = record.api_key
        group = endpoint_group(record.method, record.path)
        model = None if self._limiter is None else self._limiter.model
        headers: dict[str, str] = {}
        if key is None or (self._api_keys is not None and key not in self._api_keys):
            if self._limiter is not None:
                headers = model_headers(model, self._check(key or "", group, consume=False))
            return json_response(401, UNAUTHORIZED, headers)
        if self._limiter is not None:
            verdict = self._check(key, group)
            if not verdict.admitted:  # remaining > 0 here means a hidden limit
                return model_429(model, verdict)
            headers = model_headers(model, verdict)
        if request.method != "POST" or request.path != OPPORTUNITY_PATH:
            template = request.match_info.route.resource.canonical  # type: ignore[union-attr]
            status, body = self._routes.answer(
                request.method,
                template,
                request.match_info.get("id", ""),
                request.query,
                record.body,
            )
            return json_response(status, encode(body), headers)
        fault = self._faults.popleft() if self._faults else None
        if fault is None and self._draw is not None:
            fault = self._draw.next()
        record.fault = fault
        if fault == "429":
            if self._limiter is None:
                return too_many_requests("modern", 0, 1.0, 1.0)
            return model_429(model, self._check(key, group, consume=False)._replace(remaining=0))
        if fault == "drop_before_create":
            return None
        if fault in ("500", "502", "503", "504"):
            return server_fault(fault, headers)
        if fault == "late_create" and await self._held(self._late_seconds):
            return None  # closed while holding it: nothing created
        try:
            data = decode(record.body)
        except msgspec.DecodeError:
            return json_response(400, INVALID_JSON, headers)
        if not isinstance(data, dict):
            return json_response(400, NOT_AN_OBJECT, headers)
        errors = validate_opportunity(data)
        if errors:
            return json_response(400, encode({"errors": [], "field-errors": errors}), headers)
        opportunity = self._store.create_opportunity(data)
        self.created.append(opportunity)
        if fault == "500_after_create":
            return json_response(500, SERVER_ERROR, headers)
        if fault == "drop":
            return None
        if fault == "hang" and await self._held(self._hang_seconds):
            return None
        return json_response(200, encode(opportunity), headers)

    async def _held(self, seconds: float) -> bool:
        """Hold a request ``seconds`` or until ``close()``; True when closing."""
        assert self._closing is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        return self._closing.is_set()
