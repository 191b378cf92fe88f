"""Bulk creates: ``to_create`` (the wire-format input), ``create_many`` and ``stream_create``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgspec
import pytest
from aiohttp import web

from close_async import (
    AsyncCloseClient,
    AuthenticationError,
    BadRequestError,
    CloseError,
    CreateOpportunity,
    InvalidInputError,
    Opportunity,
    TokenBucket,
)
from close_async._resources.opportunities.codec import encode_create
from close_async._resources.opportunities.requests import to_create
from close_async.models import AttachmentIn
from close_async.testing import LEAD_MISSING, FakeCloseServer
from tests.support.servers import serving

LEAD = "lead_" + "BulkTests".ljust(43, "0")


def rows(n: int) -> list[dict[str, Any]]:
    return [{"lead_id": LEAD, "value": 100 * i, "note": f"item-{i}"} for i in range(n)]


def notes(results: list[Opportunity | CloseError]) -> list[str | None]:
    return [r.note if isinstance(r, Opportunity) else None for r in results]


def max_arrivals_within(arrivals: list[float], span: float) -> int:
    """The most requests that arrived within any half-open interval of length ``span``."""
    arrivals = sorted(arrivals)
    best, start = 0, 0
    for end, t in enumerate(arrivals):
        while arrivals[start] <= t - span:
            start += 1
        best = max(best, end - start + 1)
    return best


@contextlib.asynccontextmanager
async def counting_server(max_delay: float) -> AsyncIterator[dict[str, Any]]:
    """A tiny create endpoint that answers each request after a random delay (so completions
    come back out of order) and counts the handlers running at once."""
    stats: dict[str, Any] = {"now": 0, "max": 0, "seen": 0}
    rng = random.Random(1234)

    async def handle(request: web.Request) -> web.Response:
        body = msgspec.json.decode(await request.read())
        stats["now"] += 1
        stats["seen"] += 1
        stats["max"] = max(stats["max"], stats["now"])
        try:
            await asyncio.sleep(rng.uniform(0, max_delay))
        finally:
            stats["now"] -= 1
        answer = {"id": f"oppo_{stats['seen']}", "note": body.get("note")}
        return web.Response(body=msgspec.json.encode(answer), content_type="application/json")

    async with serving(handle) as base_url:
        stats["base_url"] = base_url
        yield stats


# --- to_create: dicts in Close's wire format ---------------------------------------------------


def test_to_create_passes_a_model_through() -> None:
    item = CreateOpportunity(lead_id=LEAD, value=5)
    assert to_create(item) is item


def test_to_create_wire_format() -> None:
    item = to_create(
        {
            "lead_id": LEAD,
            "value": 500000,
            "value_period": "monthly",
            "confidence": 50,
            "note": None,
            "custom.cf_tier": "Gold",
            "custom": {"cf_products": ["CRM", "Dialer"]},
        }
    )
    assert item.lead_id == LEAD
    assert item.value == 500000
    assert item.value_period == "monthly"
    assert item.note is None  # None is kept: sent as null
    assert item.status_id is msgspec.UNSET  # absent: not sent
    assert item.custom == {"cf_tier": "Gold", "cf_products": ["CRM", "Dialer"]}
    wire = msgspec.json.decode(encode_create(item))
    assert wire["custom.cf_tier"] == "Gold"
    assert wire["custom.cf_products"] == ["CRM", "Dialer"]
    assert wire["note"] is None
    assert "status_id" not in wire
    assert "custom" not in wire


def test_to_create_dates() -> None:
    item = to_create({"date_won": "2024-05-06", "date_created": "2024-05-06T07:08:09Z"})
    assert item.date_won == dt.date(2024, 5, 6)
    assert item.date_created == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    offset = to_create({"date_created": "2024-05-06T07:08:09.250+02:00"}).date_created
    assert isinstance(offset, dt.datetime)
    assert offset.utcoffset() == dt.timedelta(hours=2)
    assert offset.microsecond == 250000
    same = dt.date(2023, 1, 2)
    assert to_create({"date_won": same}).date_won == same  # already a date: kept


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"date_won": "06/05/2024"}, "date_won"),
        ({"date_created": "2024-05-06T07:08:09"}, "date_created"),  # naive: ambiguous
        ({"date_won": "2024-13-01"}, "date_won"),
    ],
)
def test_to_create_bad_dates(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        to_create(item)
    assert info.value.field == field


def test_to_create_attachments() -> None:
    item = to_create(
        {"attachments": [{"url": "https://f/a.pdf", "filename": "a.pdf", "content_type": "x/y"}]}
    )
    assert item.attachments == [
        AttachmentIn(url="https://f/a.pdf", filename="a.pdf", content_type="x/y")
    ]
    with pytest.raises(InvalidInputError) as info:
        to_create({"attachments": [{"url": "https://f/a.pdf"}]})
    assert info.value.field == "attachments"
    assert "filename" in str(info.value)
    with pytest.raises(InvalidInputError) as info:
        to_create({"attachments": [{"url": "https://f/a.pdf", "filename": "a", "size": 3}]})
    assert info.value.field == "attachments"


@pytest.mark.parametrize("key", ["lead", "custom_cf_x", "Value", "id"])
def test_to_create_unknown_key_is_named(key: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        to_create({"lead_id": LEAD, key: "x"})
    assert info.value.field == key
    assert info.value.value == "x"
    assert key in str(info.value)


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"confidence": 150}, "confidence"),
        ({"value": "12.50"}, "value"),
        ({"value": True}, "value"),
        ({"value_period": "weekly"}, "value_period"),
        ({"custom": "Gold"}, "custom"),
        ({"custom.tier": "Gold"}, "custom"),  # not a cf_ id
        ({"lead_id": ""}, "lead_id"),
    ],
)
def test_to_create_bad_values(item: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        to_create(item)
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert info.value.may_have_succeeded is False


@pytest.mark.parametrize("item", [None, "lead_x", ["lead_id", LEAD], 42, (("lead_id", LEAD),)])
def test_to_create_non_dict(item: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        to_create(item)
    assert info.value.field == "item"


# --- create_many -------------------------------------------------------------------------------


async def test_create_many_results_in_input_order_though_completions_are_not() -> None:
    completed: list[int] = []
    async with (
        counting_server(max_delay=0.03) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        results = await close.opportunities.create_many(
            rows(80), concurrency=16, on_result=lambda i, _: completed.append(i)
        )
    assert notes(results) == [f"item-{i}" for i in range(80)]
    assert sorted(completed) == list(range(80))
    assert completed != sorted(completed)  # the server did answer out of order


async def test_create_many_order_with_fake_server_hangs() -> None:
    # Two early requests hang at the server for 0.2 s: they finish last.
    async with (
        FakeCloseServer(hang_seconds=0.2) as server,
        AsyncCloseClient("k", base_url=server.base_url) as close,
    ):
        await close.opportunities.create(lead_id=LEAD)  # learns the server is not paced
        server.fail_next("hang", times=2)
        completed: list[int] = []
        results = await close.opportunities.create_many(
            rows(20), concurrency=5, on_result=lambda i, _: completed.append(i)
        )
    assert notes(results) == [f"item-{i}" for i in range(20)]
    hung = {int(msgspec.json.decode(r.body)["note"][5:]) for r in server.requests if r.fault}
    assert len(hung) == 2
    assert set(completed[-2:]) == hung
    assert completed != sorted(completed)
    assert len(server.created) == 21


async def test_create_many_bad_rows_among_good(close_server: FakeCloseServer) -> None:
    items: list[Any] = rows(6)
    items[1] = {"lead_id": LEAD, "confidence": 150}  # our own check: never sent
    items[3] = {"lead_id": LEAD_MISSING, "note": "missing lead"}  # Close answers 400
    items[4] = "not a row"
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        results = await close.opportunities.create_many(items, concurrency=3)
    assert [type(r).__name__ for r in results] == [
        "Opportunity",
        "InvalidInputError",
        "Opportunity",
        "BadRequestError",
        "InvalidInputError",
        "Opportunity",
    ]
    assert isinstance(results[1], InvalidInputError)
    assert results[1].field == "confidence"
    assert isinstance(results[3], BadRequestError)
    assert results[3].field_errors == {"lead": "Object does not exist."}
    assert results[3].may_have_succeeded is False
    assert notes(results) == ["item-0", None, "item-2", None, None, "item-5"]
    assert len(close_server.requests) == 4  # the two invalid rows were never sent
    assert sorted(o["note"] for o in close_server.created) == ["item-0", "item-2", "item-5"]


async def test_create_many_input_kinds(close_server: FakeCloseServer) -> None:
    def generator() -> Iterator[dict[str, Any]]:
        yield from rows(5)

    async def agen() -> AsyncIterator[dict[str, Any]]:
        for row in rows(5):
            await asyncio.sleep(0)
            yield row

    mixed: list[Any] = [CreateOpportunity(lead_id=LEAD, note="item-0"), *rows(5)[1:]]
    expected = [f"item-{i}" for i in range(5)]
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        create_many = close.opportunities.create_many
        assert notes(await create_many(rows(5), concurrency=2)) == expected
        assert notes(await create_many(tuple(rows(5)), concurrency=2)) == expected
        assert notes(await create_many(iter(rows(5)), concurrency=2)) == expected
        assert notes(await create_many(generator(), concurrency=2)) == expected
        assert notes(await create_many(agen(), concurrency=2)) == expected
        assert notes(await create_many(mixed, concurrency=2)) == expected
        assert await create_many([], concurrency=2) == []
        assert await create_many(iter(()), concurrency=2) == []
    assert len(close_server.created) == 30


async def test_create_many_concurrency_bound_measured_at_the_server() -> None:
    concurrency = 6
    async with (
        counting_server(max_delay=0.02) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        results = await close.opportunities.create_many(rows(120), concurrency=concurrency)
    assert all(isinstance(r, Opportunity) for r in results)
    assert server["seen"] == 120
    assert server["max"] == concurrency  # never more, and the bound is actually used


async def test_create_many_concurrency_bound_at_fake_close_server() -> None:
    # Each request is held `latency` at the server, and a worker sends its next request only
    # after the previous answer: so no interval of length `latency` can see more arrivals than
    # there are requests in flight at once.
    latency, concurrency = 0.05, 4
    async with FakeCloseServer(latency=latency) as server:
        async with AsyncCloseClient("k", base_url=server.base_url) as close:
            results = await close.opportunities.create_many(rows(40), concurrency=concurrency)
        arrivals = [r.at for r in server.requests]
    assert all(isinstance(r, Opportunity) for r in results)
    assert len(arrivals) == 40
    assert max_arrivals_within(arrivals, latency) == concurrency


async def test_default_concurrency_is_bounded(close_server: FakeCloseServer) -> None:
    async with (
        counting_server(max_delay=0.02) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        await close.opportunities.create_many(rows(200))
    assert 1 < server["max"] <= 50


async def test_on_result_sees_every_result_once(close_server: FakeCloseServer) -> None:
    seen: dict[int, Any] = {}

    def on_result(index: int, result: Opportunity | CloseError) -> None:
        assert index not in seen
        seen[index] = result

    items: list[Any] = [*rows(4), {"bogus": 1}]
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        results = await close.opportunities.create_many(items, concurrency=3, on_result=on_result)
    assert [seen[i] for i in range(5)] == results
    assert all(seen[i] is results[i] for i in range(5))


@pytest.mark.parametrize("concurrency", [0, -1, True, 1.5, "4", None])
async def test_invalid_concurrency(close_server: FakeCloseServer, concurrency: Any) -> None:
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        with pytest.raises(InvalidInputError) as info:
            await close.opportunities.create_many(rows(3), concurrency=concurrency)
        assert info.value.field == "concurrency"
        with pytest.raises(InvalidInputError):
            async for _ in close.opportunities.stream_create(rows(3), concurrency=concurrency):
                pass  # pragma: no cover
    assert close_server.requests == []


async def test_input_iterator_that_raises_propagates(close_server: FakeCloseServer) -> None:
    def broken() -> Iterator[dict[str, Any]]:
        yield from rows(3)
        raise RuntimeError("the input broke")

    async def broken_async() -> AsyncIterator[dict[str, Any]]:
        for row in rows(3):
            yield row
        raise KeyError("async input broke")

    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        with pytest.raises(RuntimeError, match="the input broke"):
            await close.opportunities.create_many(broken(), concurrency=2)
        with pytest.raises(KeyError, match="async input broke"):
            await close.opportunities.create_many(broken_async(), concurrency=2)
    await asyncio.sleep(0.05)
    assert not _pool_workers()


# --- stream_create -----------------------------------------------------------------------------


def _pool_workers() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if "run_pool" in getattr(t.get_coro(), "__qualname__", "") and not t.done()
    ]


async def test_stream_create_yields_index_and_result(close_server: FakeCloseServer) -> None:
    items: list[Any] = [*rows(5), {"lead_id": LEAD, "value": "x"}]
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        got = {i: r async for i, r in close.opportunities.stream_create(items, concurrency=3)}
    assert sorted(got) == list(range(6))
    for i in range(5):
        result = got[i]
        assert isinstance(result, Opportunity)
        assert result.note == f"item-{i}"
    assert isinstance(got[5], InvalidInputError)


async def test_stream_create_pulls_input_only_as_results_are_taken(
    close_server: FakeCloseServer,
) -> None:
    concurrency = 8
    pulled = 0

    def source() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for row in rows(150):
            pulled += 1
            yield row

    consumed = 0
    most_ahead = 0
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        async for _index, result in close.opportunities.stream_create(
            source(), concurrency=concurrency
        ):
            assert isinstance(result, Opportunity)
            consumed += 1
            most_ahead = max(most_ahead, pulled - consumed)
            await asyncio.sleep(0.001)  # a slow consumer: results pile up, input must not
    assert consumed == pulled == 150
    # Each worker holds one item (in flight, or its result waiting for a queue place) and the
    # result queue holds `concurrency`: that is the bound, whatever the input's length.
    assert concurrency <= most_ahead <= 2 * concurrency + 1


def endless(counter: list[int]) -> Iterator[dict[str, Any]]:
    while True:
        counter[0] += 1
        yield {"lead_id": LEAD, "note": f"item-{counter[0] - 1}"}


async def test_stream_create_aclose_cancels_in_flight_work() -> None:
    pulled = [0]
    async with (
        FakeCloseServer(hang_seconds=30.0) as server,
        AsyncCloseClient("k", base_url=server.base_url) as close,
    ):
        stream = close.opportunities.stream_create(endless(pulled), concurrency=5)
        first = await stream.__anext__()
        assert first[0] in range(5)
        server.fail_next("hang", times=1000)  # every request from now on hangs
        await asyncio.sleep(0.2)
        hanging = [r for r in server.requests if r.fault == "hang" and r.status is None]
        assert hanging  # work was in flight when the stream was closed
        assert pulled[0] <= 1 + 2 * 5 + 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        await stream.aclose()  # type: ignore[attr-defined]
        assert loop.time() - started < 1.0  # cancelled, not waited for
        assert not _pool_workers()
        before = len(server.requests)
        await asyncio.sleep(0.05)
        assert len(server.requests) == before  # nothing more is sent


async def test_stream_create_cancelled_while_waiting_stops_the_pool() -> None:
    pulled = [0]
    async with FakeCloseServer(hang_seconds=30.0) as server:
        server.fail_next("hang", times=1000)
        async with AsyncCloseClient("k", base_url=server.base_url) as close:
            stream = close.opportunities.stream_create(endless(pulled), concurrency=5)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(stream.__anext__(), 0.3)
            assert not _pool_workers()
            assert pulled[0] <= 5
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()


async def test_stream_create_break_then_aclose(close_server: FakeCloseServer) -> None:
    pulled = 0

    def many() -> Iterator[dict[str, Any]]:
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield {"lead_id": LEAD, "note": f"item-{i}"}

    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        stream = close.opportunities.stream_create(many(), concurrency=4)
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            taken = 0
            async for _ in stream:
                taken += 1
                if taken == 10:
                    break
    assert not _pool_workers()
    assert pulled <= 10 + 2 * 4 + 1


# --- one item's failure is that item's result: nothing escapes a batch -------------------------


async def test_unencodable_values_fail_their_item_and_keep_every_other_result() -> None:
    class Opaque:
        pass

    items: list[Any] = rows(60)
    items[7] = {"lead_id": LEAD, "note": "item-7", "custom_fields": {"Tier": Opaque()}}
    items[30] = {"lead_id": LEAD, "note": "lone \ud800 surrogate"}
    items[44] = {"lead_id": LEAD, "note": "item-44", "custom.cf_tier": [float("nan")]}
    async with (
        counting_server(max_delay=0.005) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        results = await close.opportunities.create_many(items, concurrency=5)
    assert len(results) == 60
    bad = {i: r for i, r in enumerate(results) if not isinstance(r, Opportunity)}
    assert sorted(bad) == [7, 30, 44]
    assert all(isinstance(r, InvalidInputError) for r in bad.values())
    fields = {i: r.field for i, r in bad.items() if isinstance(r, InvalidInputError)}
    assert fields == {7: "custom_fields.Tier", 30: "note", 44: "custom.cf_tier"}
    assert all(r.may_have_succeeded is False for r in bad.values())
    assert server["seen"] == 57  # the three were never sent; every other one was, once


class _ExplodingOpportunity(Opportunity, kw_only=True):
    def __post_init__(self) -> None:
        if self.note == "item-3":
            raise KeyError("a bug in the caller's response type")


class _ExplodingRow(dict[str, Any]):
    def items(self) -> Any:
        raise RuntimeError("a broken mapping")


async def test_an_exception_outside_the_tree_becomes_that_items_close_error() -> None:
    items: list[Any] = rows(8)
    items[5] = _ExplodingRow(lead_id=LEAD)
    async with (
        counting_server(max_delay=0.005) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        results = await close.opportunities.create_many(
            items, concurrency=3, response_type=_ExplodingOpportunity
        )
    assert [type(r).__name__ for r in results] == [
        *["_ExplodingOpportunity"] * 3,
        "CloseError",
        "_ExplodingOpportunity",
        "CloseError",
        *["_ExplodingOpportunity"] * 2,
    ]
    after, before = results[3], results[5]
    assert isinstance(after, CloseError)
    assert isinstance(before, CloseError)
    # Item 3 was created (Close answered 200); item 5 never left.
    assert after.may_have_succeeded is True
    assert isinstance(after.__cause__, KeyError)
    assert "KeyError" in str(after)
    assert before.may_have_succeeded is False
    assert isinstance(before.__cause__, RuntimeError)
    assert server["seen"] == 7


async def test_an_on_send_hook_that_raises_fails_only_its_item() -> None:
    def on_send(index: int) -> None:
        if index == 2:
            raise RuntimeError("the journal is gone")

    async with (
        counting_server(max_delay=0.005) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        stream = close.opportunities.stream_create(rows(6), concurrency=2, on_send=on_send)
        got = dict([pair async for pair in stream])
    failed = got.pop(2)
    assert isinstance(failed, CloseError)
    assert failed.may_have_succeeded is False  # the hook runs before the request leaves
    assert all(isinstance(r, Opportunity) for r in got.values())
    assert server["seen"] == 5


# --- an organization-wide refusal stops the batch -----------------------------------------------


@contextlib.asynccontextmanager
async def refusing_server(status: int, *, after: int) -> AsyncIterator[dict[str, Any]]:
    """Creates ``after`` opportunities, then refuses every request with ``status`` (a revoked
    key, a plan limit); each answer takes a few milliseconds."""
    stats: dict[str, Any] = {"seen": 0}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        stats["seen"] += 1
        seen = stats["seen"]
        await asyncio.sleep(0.005)
        if seen > after:
            body = b'{"error": "Invalid API key"}' if status == 401 else b'{"error": "Upgrade"}'
            return web.Response(status=status, body=body, content_type="application/json")
        answer = msgspec.json.encode({"id": f"oppo_{seen}"})
        return web.Response(body=answer, content_type="application/json")

    async with serving(handle) as base_url:
        stats["base_url"] = base_url
        yield stats


@pytest.mark.parametrize(
    ("status", "cls"), [(401, "AuthenticationError"), (402, "PermissionDeniedError")]
)
async def test_an_org_wide_refusal_fails_the_items_not_yet_sent_without_sending_them(
    status: int, cls: str
) -> None:
    concurrency = 20
    async with (
        refusing_server(status, after=40) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        results = await close.opportunities.create_many(rows(5000), concurrency=concurrency)
    # The server saw the 40 it accepted and the requests already in flight at the first
    # refusal; not the thousands after.
    assert 41 <= server["seen"] <= 40 + concurrency
    assert len(results) == 5000
    created = [r for r in results if isinstance(r, Opportunity)]
    assert len(created) == 40
    refused = [r for r in results if not isinstance(r, Opportunity)]
    assert {type(r).__name__ for r in refused} == {cls}
    assert all(getattr(r, "status_code", None) == status for r in refused)
    assert all(r.may_have_succeeded is False for r in refused)
    answered = server["seen"] - 40
    not_sent = [r for r in refused if str(r).startswith("not sent")]
    assert len(not_sent) == 5000 - 40 - answered
    assert "earlier request of this batch was refused" in str(not_sent[0])


async def test_a_403_does_not_stop_the_batch() -> None:
    # 403 can be about one lead (no access to it): the other items still go.
    async with (
        refusing_server(403, after=5) as server,
        AsyncCloseClient("k", base_url=server["base_url"]) as close,
    ):
        results = await close.opportunities.create_many(rows(30), concurrency=4)
    assert server["seen"] == 30
    assert sum(isinstance(r, Opportunity) for r in results) == 5


async def test_items_waiting_for_the_limiter_at_a_refusal_are_never_sent() -> None:
    # The limiter lets one request out every 20 ms; the first is refused after 5 ms. Every item
    # already past to_create but still waiting for its turn must be refused when its turn comes,
    # not sent.
    async with (
        refusing_server(401, after=0) as server,
        AsyncCloseClient(
            "k", base_url=server["base_url"], limiter=TokenBucket(rate=50, burst=1)
        ) as close,
    ):
        results = await close.opportunities.create_many(rows(15), concurrency=15)
    assert server["seen"] <= 2
    assert all(isinstance(r, AuthenticationError) for r in results)
    assert sum(str(r).startswith("not sent") for r in results) >= 13
    assert all(r.may_have_succeeded is False for r in results)
