"""opportunities.get/update/delete: what reaches the server (checked at its own record), 404s,
retries of idempotent requests, and bad input refused before sending."""

from __future__ import annotations

import datetime as dt
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aioresponses import aioresponses

from close_async import (
    AsyncCloseClient,
    BadRequestError,
    InvalidInputError,
    NotFoundError,
    Opportunity,
    RetryPolicy,
)
from tests.support.servers import serving_app as serve

BASE = "https://api.close.com/api/v1/"
OPP_ID = "oppo_FgrpAmjn3038nP03AtkSYza3DVn2ZoUWk682Px55L5o"
NOT_FOUND = b'{"error": "Empty query: Opportunity matching query does not exist."}'
FAST = RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.002)


class Store:
    """A server's opportunities by id, and every request it received, in order."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {
            OPP_ID: {"id": OPP_ID, "lead_id": "lead_1", "confidence": 50, "custom.cf_a": "x"}
        }
        self.requests: list[tuple[str, str, dict[str, Any] | None]] = []

    async def record(self, request: web.Request) -> dict[str, Any] | None:
        body = await request.read()
        fields = msgspec.json.decode(body) if body else None
        self.requests.append((request.method, request.path, fields))
        return fields

    def missing(self) -> web.Response:
        return web.Response(status=404, body=NOT_FOUND, content_type="application/json")


def app_for(store: Store, **handlers: Any) -> web.Application:
    app = web.Application()
    for method, handler in handlers.items():
        app.router.add_route(method.upper(), "/api/v1/opportunity/{id}/", handler)
    return app


def client(base: str) -> AsyncCloseClient:
    close = AsyncCloseClient("k", base_url=base)
    close.retry_policy = FAST
    return close


# --- get -------------------------------------------------------------------------------------


async def test_get_returns_the_opportunity_with_its_custom_fields(mock_http: aioresponses) -> None:
    body = {"id": OPP_ID, "value": 20000, "date_won": "2017-09-18", "custom.cf_tier": "Gold"}
    mock_http.get(f"{BASE}opportunity/{OPP_ID}/", body=msgspec.json.encode(body))
    async with AsyncCloseClient("k") as close:
        opp = await close.opportunities.get(OPP_ID)
    assert isinstance(opp, Opportunity)
    assert (opp.id, opp.value, opp.date_won) == (OPP_ID, 20000, dt.date(2017, 9, 18))
    assert opp.custom == {"cf_tier": "Gold"}


async def test_get_of_an_unknown_id_is_not_found(mock_http: aioresponses) -> None:
    mock_http.get(f"{BASE}opportunity/wobble/", status=404, body=NOT_FOUND)
    async with AsyncCloseClient("k") as close:
        with pytest.raises(NotFoundError) as info:
            await close.opportunities.get("wobble")
    assert info.value.may_have_succeeded is False
    assert len(mock_http.requests) == 1  # a 404 is an answer: not retried


@pytest.mark.parametrize(
    "bad", [None, "", 42, b"oppo_1", "../lead/lead_1", "oppo_1/?x", "oppo 1", "..", "a%2F"]
)
@pytest.mark.parametrize("call", ["get", "update", "delete"])
async def test_a_bad_id_is_refused_naming_id_and_nothing_is_sent(
    mock_http: aioresponses, call: str, bad: Any
) -> None:
    async with AsyncCloseClient("k") as close:
        method = getattr(close.opportunities, call)
        args = {"confidence": 1} if call == "update" else {}
        with pytest.raises(InvalidInputError) as info:
            await method(bad, **args)
    assert info.value.field == "id"
    assert mock_http.requests == {}


# --- update ----------------------------------------------------------------------------------


async def put_handler(store: Store) -> Any:
    async def put(request: web.Request) -> web.Response:
        fields = await store.record(request) or {}
        row = store.rows.get(request.match_info["id"])
        if row is None:
            return store.missing()
        for key, value in fields.items():
            if value is None and key.startswith("custom."):
                row.pop(key, None)  # Close: null unsets a custom field
            else:
                row[key] = value
        return web.json_response(row)

    return put


async def test_update_sends_only_the_given_fields_and_null_unsets_a_custom_field() -> None:
    store = Store()
    app = app_for(store, put=await put_handler(store))
    async with serve(app) as base, client(base) as close:
        opp = await close.opportunities.update(
            OPP_ID, confidence=80, note=None, custom={"cf_a": None, "cf_b": 3}
        )
    assert store.requests == [
        (
            "PUT",
            f"/api/v1/opportunity/{OPP_ID}/",
            {"confidence": 80, "note": None, "custom.cf_a": None, "custom.cf_b": 3},
        )
    ]
    assert store.rows[OPP_ID] == {
        "id": OPP_ID,
        "lead_id": "lead_1",
        "confidence": 80,
        "note": None,
        "custom.cf_b": 3,
    }
    assert opp.confidence == 80
    assert opp.custom == {"cf_b": 3}


async def test_a_put_retried_after_a_5xx_sets_the_same_absolute_values_again() -> None:
    store = Store()
    put = await put_handler(store)
    calls = 0

    async def flaky_put(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        response = await put(request)  # applied on the server...
        if calls == 1:
            return web.Response(status=502, text="<html>Bad Gateway</html>")  # ...then lost
        return response

    async with serve(app_for(store, put=flaky_put)) as base, client(base) as close:
        opp = await close.opportunities.update(OPP_ID, value=500, value_period="monthly")
    assert [r[2] for r in store.requests] == [{"value": 500, "value_period": "monthly"}] * 2
    assert (store.rows[OPP_ID]["value"], opp.value) == (500, 500)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({}, "fields", id="nothing"),
        pytest.param({"custom": {}}, "fields", id="empty-custom"),
        pytest.param({"confidence": 101}, "confidence", id="as-on-create"),
        pytest.param({"value": 1.5}, "value", id="float-cents"),
        pytest.param({"value_period": "weekly"}, "value_period", id="enum"),
        pytest.param({"date_won": dt.datetime(2026, 1, 1)}, "date_won", id="naive"),
        pytest.param({"custom": {"custom.cf_a": 1}}, "custom", id="prefixed-custom-key"),
        pytest.param({"confidnce": 80}, "confidnce", id="unknown-field"),
    ],
)
async def test_bad_updates_are_refused_naming_the_field_before_sending(
    mock_http: aioresponses, fields: dict[str, Any], field: str
) -> None:
    async with AsyncCloseClient("k") as close:
        with pytest.raises(InvalidInputError) as info:
            await close.opportunities.update(OPP_ID, **fields)
    assert info.value.field == field
    assert mock_http.requests == {}


async def test_update_of_an_unknown_id_is_not_found() -> None:
    store = Store()
    async with serve(app_for(store, put=await put_handler(store))) as base, client(base) as close:
        with pytest.raises(NotFoundError):
            await close.opportunities.update("oppo_gone", confidence=1)
    assert len(store.requests) == 1


async def test_a_400_from_update_names_closes_field_errors(mock_http: aioresponses) -> None:
    body = b'{"errors": [], "field-errors": {"status": "Not a valid choice."}}'
    mock_http.put(f"{BASE}opportunity/{OPP_ID}/", status=400, body=body)
    async with AsyncCloseClient("k") as close:
        with pytest.raises(BadRequestError) as info:
            await close.opportunities.update(OPP_ID, status_id="stat_nope")
    assert info.value.field_errors == {"status": "Not a valid choice."}


# --- delete ----------------------------------------------------------------------------------


def delete_handler(store: Store, first: str | None = None) -> Any:
    """DELETE as Close does it; ``first`` makes the first attempt misbehave: "drop" deletes
    then drops the connection, "502" deletes then answers 502, "429" deletes nothing."""
    calls = 0

    async def delete(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        await store.record(request)
        if calls == 1 and first == "429":
            return web.json_response(
                {"error": "rate limited"}, status=429, headers={"Retry-After": "0"}
            )
        if store.rows.pop(request.match_info["id"], None) is None:
            return store.missing()
        if calls == 1 and first == "drop":
            assert request.transport is not None
            request.transport.abort()  # deleted, and the answer never leaves
            return web.Response()
        if calls == 1 and first == "502":
            return web.Response(status=502, text="<html>Bad Gateway</html>")
        return web.json_response({})

    return delete


async def test_delete_removes_it_and_returns_none() -> None:
    store = Store()
    async with serve(app_for(store, delete=delete_handler(store))) as base, client(base) as close:
        assert await close.opportunities.delete(OPP_ID) is None
    assert store.rows == {}
    assert [r[:2] for r in store.requests] == [("DELETE", f"/api/v1/opportunity/{OPP_ID}/")]


async def test_delete_of_an_id_that_never_existed_is_not_found() -> None:
    store = Store()
    async with serve(app_for(store, delete=delete_handler(store))) as base, client(base) as close:
        with pytest.raises(NotFoundError):
            await close.opportunities.delete("oppo_never")
    assert len(store.requests) == 1


@pytest.mark.parametrize("first", ["drop", "502"])
async def test_a_retry_that_meets_404_after_an_unknown_first_attempt_is_already_gone(
    first: str,
) -> None:
    store = Store()
    app = app_for(store, delete=delete_handler(store, first))
    async with serve(app) as base, client(base) as close:
        assert await close.opportunities.delete(OPP_ID) is None
    assert store.rows == {}  # the first attempt deleted it...
    assert len(store.requests) == 2  # ...and the retry found it gone


async def test_a_404_after_a_429_is_not_found_the_429_deleted_nothing() -> None:
    store = Store()
    app = app_for(store, delete=delete_handler(store, "429"))
    async with serve(app) as base, client(base) as close:
        with pytest.raises(NotFoundError):
            await close.opportunities.delete("oppo_never")
    assert len(store.requests) == 2


async def test_a_404_after_an_attempt_that_never_left_is_not_found(
    mock_http: aioresponses,
) -> None:
    url = f"{BASE}opportunity/oppo_never/"
    mock_http.delete(url, exception=aiohttp.ClientConnectionError("refused"))
    mock_http.delete(url, status=404, body=NOT_FOUND)
    async with AsyncCloseClient("k") as close:
        close.retry_policy = FAST
        with pytest.raises(NotFoundError):
            await close.opportunities.delete("oppo_never")
    assert len(mock_http.requests[("DELETE", aiohttp.client.URL(url))]) == 2
