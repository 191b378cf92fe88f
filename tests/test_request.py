"""``client.request()``: any endpoint through the pipeline, checked at small adversarial servers.

Each server keeps its own record of what arrived (method, path, query, body); the assertions
read that record, never the client's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from aiohttp import web

from close_async import (
    APITimeoutError,
    AsyncCloseClient,
    DecodeError,
    InvalidInputError,
    NotFoundError,
    RetryPolicy,
    ServerError,
)
from tests.support.servers import serving

FAST = RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.002)
Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


@dataclass
class Arrival:
    method: str
    path: str
    query: list[tuple[str, str]]
    body: bytes


@dataclass
class Record:
    arrivals: list[Arrival] = field(default_factory=list)


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[str, Record]]:
    """Every path on 127.0.0.1 answered by ``handler(request, n)`` (n: 1 for the first
    arrival); yields the base URL and the server's record."""
    record = Record()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        record.arrivals.append(
            Arrival(request.method, request.path, list(request.query.items()), body)
        )
        return await handler(request, len(record.arrivals))

    async with serving(handle, "/{tail:.*}") as base_url:
        yield base_url, record


def client(base_url: str, **options: Any) -> AsyncCloseClient:
    close = AsyncCloseClient("api_request", base_url=base_url, **options)
    close.retry_policy = FAST
    return close


async def echo(request: web.Request, n: int) -> web.Response:
    return web.json_response({"n": n, "method": request.method})


async def hang_first(request: web.Request, n: int) -> web.Response:
    if n == 1:
        await asyncio.sleep(2)  # past the client's 0.2 s timeout: the first attempt times out
    return web.json_response({"n": n})


async def test_a_get_returns_the_decoded_json_with_params_in_the_query_string() -> None:
    async with server(echo) as (url, record), client(url) as close:
        data = await close.request(
            "GET", "lead/lead_1/", params={"_fields": "id,display_name", "status": ["a", "b"]}
        )
    assert data == {"n": 1, "method": "GET"}
    [arrival] = record.arrivals
    assert arrival.path == "/api/v1/lead/lead_1/"
    assert arrival.query == [("_fields", "id,display_name"), ("status", "a"), ("status", "b")]
    assert arrival.body == b""


async def test_a_leading_slash_is_relative_to_base_url_and_json_is_the_body() -> None:
    async with server(echo) as (url, record), client(url) as close:
        data = await close.request("post", "/lead/", json={"name": "Acme", "n": [1, 2.5]})
    assert data == {"n": 1, "method": "POST"}
    [arrival] = record.arrivals
    assert (arrival.method, arrival.path) == ("POST", "/api/v1/lead/")
    assert msgspec.json.decode(arrival.body) == {"name": "Acme", "n": [1, 2.5]}


@pytest.mark.parametrize("status", [200, 204])
async def test_an_empty_body_is_none(status: int) -> None:
    async def empty(request: web.Request, n: int) -> web.Response:
        return web.Response(status=status)

    async with server(empty) as (url, record), client(url) as close:
        assert await close.request("DELETE", "opportunity/oppo_1/") is None
    assert [a.method for a in record.arrivals] == ["DELETE"]


async def test_a_get_that_times_out_once_is_retried() -> None:
    async with server(hang_first) as (url, record), client(url, timeout=0.2) as close:
        data = await close.request("GET", "lead/lead_1/")
    assert data == {"n": 2}
    assert [a.method for a in record.arrivals] == ["GET", "GET"]


async def test_a_post_that_times_out_is_not_retried() -> None:
    async with server(hang_first) as (url, record), client(url, timeout=0.2) as close:
        with pytest.raises(APITimeoutError) as caught:
            await close.request("POST", "lead/", json={"name": "Acme"})
    assert caught.value.may_have_succeeded is True
    assert [a.method for a in record.arrivals] == ["POST"]  # once: a retry could duplicate


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD"])
async def test_a_5xx_on_an_idempotent_method_is_retried(method: str) -> None:
    async def fail_first(request: web.Request, n: int) -> web.Response:
        if n == 1:
            return web.json_response({"error": "oops"}, status=502)
        return web.Response(status=200)

    async with server(fail_first) as (url, record), client(url) as close:
        assert await close.request(method, "opportunity/oppo_1/", json=None) is None
    assert [a.method for a in record.arrivals] == [method, method]


async def test_a_5xx_on_a_post_is_not_retried() -> None:
    async def fail(request: web.Request, n: int) -> web.Response:
        return web.json_response({"error": "oops"}, status=503)

    async with server(fail) as (url, record), client(url) as close:
        with pytest.raises(ServerError) as caught:
            await close.request("POST", "lead/", json={"name": "Acme"})
    assert caught.value.may_have_succeeded is True
    assert len(record.arrivals) == 1


async def test_errors_keep_their_type_and_the_key_never_shows() -> None:
    async def missing(request: web.Request, n: int) -> web.Response:
        return web.json_response({"error": "Empty query"}, status=404)

    async with server(missing) as (url, record), client(url) as close:
        with pytest.raises(NotFoundError) as caught:
            await close.request("GET", "lead/lead_nope/")
    assert caught.value.status_code == 404
    assert len(record.arrivals) == 1  # a 404 is an answer: not retried
    assert "api_request" not in repr(caught.value.headers) + str(caught.value)


async def test_a_2xx_body_that_is_not_json_is_a_decode_error_keeping_the_body() -> None:
    async def html(request: web.Request, n: int) -> web.Response:
        return web.Response(text="<html>hi</html>", content_type="text/html")

    async with server(html) as (url, record), client(url) as close:
        with pytest.raises(DecodeError) as caught:
            await close.request("GET", "lead/")
    assert caught.value.body == b"<html>hi</html>"
    assert caught.value.may_have_succeeded is True
    assert len(record.arrivals) == 1


class Unencodable:
    pass


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"method": 1, "path": "lead/"}, "method"),
        ({"method": "FETCH", "path": "lead/"}, "method"),
        ({"method": "GET", "path": b"lead/"}, "path"),
        ({"method": "GET", "path": "https://elsewhere.example/lead/"}, "path"),
        ({"method": "GET", "path": "//elsewhere.example/lead/"}, "path"),
        ({"method": "GET", "path": "lead/", "params": [("a", "b")]}, "params"),
        ({"method": "GET", "path": "lead/", "params": {"a": True}}, "params.a"),
        ({"method": "GET", "path": "lead/", "params": {"a": [1, None]}}, "params.a"),
        ({"method": "GET", "path": "lead/", "params": {"a": float("nan")}}, "params.a"),
        ({"method": "POST", "path": "lead/", "json": {"a": Unencodable()}}, "json"),
        ({"method": "POST", "path": "lead/", "json": {"a": float("inf")}}, "json"),
        ({"method": "POST", "path": "lead/", "json": [dt.datetime(2024, 1, 1)]}, "json"),
        ({"method": "POST", "path": "lead/", "json": {(1, 2): "tuple key"}}, "json"),
    ],
)
async def test_bad_input_names_the_argument_and_sends_nothing(
    arguments: dict[str, Any], field: str
) -> None:
    async with server(echo) as (url, record), client(url) as close:
        with pytest.raises(InvalidInputError) as caught:
            await close.request(**arguments)
    assert caught.value.field == field
    assert caught.value.may_have_succeeded is False
    assert record.arrivals == []
