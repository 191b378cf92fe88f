"""A raw aiohttp client for tests of FakeCloseServer itself (no SDK code in the way)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from close_async.testing import FakeCloseServer

KEY = "api_0123456789abcdef"
BEARER = {"Authorization": f"Bearer {KEY}"}


class Api:
    """``await api.call("GET", "opportunity/", params=...)`` -> (status, body).

    The body is the decoded JSON (None when empty), or the text of a non-JSON answer.
    """

    def __init__(self, session: aiohttp.ClientSession, server: FakeCloseServer) -> None:
        self.session, self.server = session, server

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | str | None = None,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        async with self.session.request(
            method,
            self.server.base_url + path,
            data=data,
            params=params,
            headers=BEARER,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            raw = await resp.read()
        if resp.content_type != "application/json":
            return resp.status, raw.decode()
        return resp.status, json.loads(raw) if raw else None

    async def create(self, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "opportunity/", fields)
        assert status == 200, body
        assert isinstance(body, dict)
        return body

    async def list(self, **params: str) -> dict[str, Any]:
        status, body = await self.call("GET", "opportunity/", params=params)
        assert status == 200, body
        assert isinstance(body, dict)
        return body


@contextlib.asynccontextmanager
async def serve(**options: Any) -> AsyncIterator[Api]:
    """A started ``FakeCloseServer(**options)`` and a session to it."""
    async with FakeCloseServer(**options) as server, aiohttp.ClientSession() as session:
        yield Api(session, server)
