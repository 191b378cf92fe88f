"""opportunities.list: every match once, in a stable order, past Close's _skip cap, bad filters
refused before sending. Against a small server that keeps the rows and records every query."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web

from close_async import AsyncCloseClient, DecodeError, InvalidInputError, RetryPolicy
from close_async._resources import pagination
from close_async._resources.opportunities.operations import OpportunityPage
from close_async._resources.pagination import MAX_SKIP, Pager
from tests.support.servers import serving_app as serve

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


class ListServer:
    """``GET /opportunity/`` over ``rows``, as Close pages it: filters ``lead_id`` and
    ``date_created__gte``/``__lte``, orders by ``_order_by`` (newest first without it),
    answers 400 past ``max_skip``. ``queries`` records every query; ``on_page(n)`` runs before
    page ``n`` is answered (to change the rows between pages)."""

    def __init__(self, *, max_skip: int = MAX_SKIP) -> None:
        self.rows: list[dict[str, Any]] = []
        self.queries: list[dict[str, str]] = []
        self.max_skip = max_skip
        self.on_page: Callable[[int], None] = lambda n: None
        self.app = web.Application()
        self.app.router.add_get("/api/v1/opportunity/", self.handle)

    def add(self, n: int, *, lead_id: str = "lead_1", at: dt.datetime | None = None) -> None:
        for _ in range(n):
            i = len(self.rows)
            when = at or T0 + dt.timedelta(seconds=i)
            self.rows.append(
                {
                    "id": f"oppo_{i:05d}",
                    "lead_id": lead_id,
                    "date_created": when.isoformat(),
                    "custom.cf_tier": f"t{i}",
                }
            )

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.queries.append(query)
        self.on_page(len(self.queries))
        skip, limit = int(query.get("_skip", 0)), int(query.get("_limit", 100))
        if skip + limit > self.max_skip:
            return web.json_response({"error": "_skip too large"}, status=400)
        rows = [r for r in self.rows if r["lead_id"] == query.get("lead_id", r["lead_id"])]
        if "date_created__gte" in query:
            since = dt.datetime.fromisoformat(query["date_created__gte"])
            rows = [r for r in rows if dt.datetime.fromisoformat(r["date_created"]) >= since]
        if "date_created__lte" in query:
            until = dt.datetime.fromisoformat(query["date_created__lte"])
            rows = [r for r in rows if dt.datetime.fromisoformat(r["date_created"]) <= until]
        if query.get("_order_by") == "date_created":
            rows.sort(key=lambda r: r["date_created"])  # stable: ties keep insertion order
        else:  # newest first: new rows shift every offset
            rows.reverse()
        page = rows[skip : skip + limit]
        body = {
            "has_more": skip + limit < len(rows),
            "total_results": len(rows),
            "data": page,
            "total_value_monthly": 1250,
            "expected_value_monthly": 312.5,
        }
        return web.json_response(body)


async def collect(pager: Pager[Any, Any]) -> list[str]:
    return [opp.id async for opp in pager]


async def test_every_row_once_across_pages_in_creation_order() -> None:
    server = ListServer()
    server.add(25)
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        ids = await collect(close.opportunities.list(lead_id="lead_1", page_size=10))
    assert ids == [r["id"] for r in server.rows]
    assert [(q["_skip"], q["_limit"]) for q in server.queries] == [
        ("0", "10"),
        ("10", "10"),
        ("20", "10"),
    ]
    assert all(q["_order_by"] == "date_created" for q in server.queries)
    assert all(q["lead_id"] == "lead_1" for q in server.queries)


async def test_a_page_lost_to_a_5xx_is_read_again_nothing_doubled() -> None:
    server = ListServer()
    server.add(30)
    failed: list[int] = []

    async def flaky(request: web.Request) -> web.Response:
        if request.query.get("_skip") == "10" and not failed:
            failed.append(1)
            return web.Response(status=502, text="<html>Bad Gateway</html>")
        return await server.handle(request)

    app = web.Application()
    app.router.add_get("/api/v1/opportunity/", flaky)
    async with serve(app) as base, AsyncCloseClient("k", base_url=base) as close:
        close.retry_policy = RetryPolicy(initial_backoff=0.001, max_backoff=0.002)
        ids = await collect(close.opportunities.list(page_size=10))
    assert failed == [1]
    assert ids == [r["id"] for r in server.rows]


async def test_rows_keep_their_custom_fields_and_the_page_its_aggregates() -> None:
    server = ListServer()
    server.add(3)
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        listing = close.opportunities.list()
        opps = [opp async for opp in listing]
    assert [o.custom for o in opps] == [{"cf_tier": "t0"}, {"cf_tier": "t1"}, {"cf_tier": "t2"}]
    assert opps[0].date_created == T0
    assert isinstance(listing.page, OpportunityPage)
    assert listing.page.total_results == 3
    assert listing.page.total_value_monthly == 1250
    assert listing.page.expected_value_monthly == 312.5


async def test_rows_created_while_listing_are_listed_once_none_missed() -> None:
    server = ListServer()
    server.add(30)
    server.on_page = lambda n: server.add(4)  # 4 new opportunities before every page
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        ids = await collect(close.opportunities.list(page_size=10))
    assert len(ids) == len(set(ids))
    assert ids == [r["id"] for r in server.rows][: len(ids)]
    # The walk ends only on a page whose has_more is false: what it read last was all there was.
    assert len(ids) == len(server.rows)


@pytest.fixture
def cap_40(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagination, "MAX_SKIP", 40)


@pytest.fixture
def cap_20(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pagination, "MAX_SKIP", 20)


@pytest.mark.usefixtures("cap_40")
async def test_the_skip_cap_is_never_passed_the_range_restarts_where_it_was() -> None:
    server = ListServer(max_skip=40)
    server.add(95)
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        ids = await collect(close.opportunities.list(page_size=10))
    assert ids == [r["id"] for r in server.rows]
    assert all(int(q["_skip"]) + int(q["_limit"]) <= 40 for q in server.queries)
    restarts = [q for q in server.queries if q["_skip"] == "0"][1:]
    assert restarts
    assert all("date_created__gte" in q for q in restarts)


@pytest.mark.usefixtures("cap_20")
async def test_a_restart_skips_rows_at_the_boundary_instant_it_already_yielded() -> None:
    server = ListServer(max_skip=20)
    server.add(8)
    server.add(5, at=T0 + dt.timedelta(seconds=8))  # rows 8-12 share one instant
    server.add(20)
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        ids = await collect(close.opportunities.list(page_size=10))
    assert ids == [r["id"] for r in server.rows]


@pytest.mark.usefixtures("cap_20")
async def test_a_users_date_range_is_kept_across_restarts() -> None:
    server = ListServer(max_skip=20)
    server.add(60)
    until = T0 + dt.timedelta(seconds=44)
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        listing = close.opportunities.list(
            page_size=10, date_created__gte=T0 + dt.timedelta(seconds=5), date_created__lte=until
        )
        ids = await collect(listing)
    assert ids == [r["id"] for r in server.rows[5:45]]
    assert all(q["date_created__lte"] == until.isoformat() for q in server.queries)


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        pytest.param({"lead": "lead_1"}, "lead", id="unknown-filter"),
        pytest.param({"value": 100}, "value", id="value-is-not-a-list-filter"),
        pytest.param({"date_won__gte": dt.datetime(2026, 1, 1)}, "date_won__gte", id="naive"),
        pytest.param({"lead_id": ""}, "lead_id", id="empty-id"),
        pytest.param({"lead_id": None}, "lead_id", id="none-would-widen"),
        pytest.param({"status_id__in": [1]}, "status_id__in", id="bad-list"),
        pytest.param({"is_stalled": "yes"}, "is_stalled", id="bool"),
        pytest.param({"_skip": 10}, "_skip", id="paging-is-ours"),
        pytest.param({"page_size": 0}, "page_size", id="page-size-0"),
        pytest.param({"page_size": 101}, "page_size", id="page-size-over-100"),
    ],
)
async def test_bad_filters_are_refused_before_anything_is_sent(
    filters: dict[str, Any], field: str
) -> None:
    server = ListServer()
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        with pytest.raises(InvalidInputError) as info:
            close.opportunities.list(**filters)
    assert info.value.field == field
    assert server.queries == []


async def test_filter_values_are_written_as_close_reads_them() -> None:
    server = ListServer()
    when = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        await collect(
            close.opportunities.list(
                date_created__gte=when,
                date_won__lt=dt.date(2026, 4, 1),
                date_updated__gt="2026-02-01",
                status_type__in=["won", "lost"],
                is_stalled=False,
            )
        )
    (query,) = server.queries
    assert query["date_created__gte"] == "2026-03-01T12:30:00+02:00"
    assert query["date_won__lt"] == "2026-04-01"
    assert query["date_updated__gt"] == "2026-02-01"
    assert query["status_type__in"] == "won,lost"
    assert query["is_stalled"] == "false"


async def test_nothing_is_sent_until_the_iteration_starts() -> None:
    server = ListServer()
    server.add(1)
    async with serve(server.app) as base, AsyncCloseClient("k", base_url=base) as close:
        listing = close.opportunities.list()
        assert server.queries == []
        assert listing.page is None
        assert [o.id async for o in listing] == ["oppo_00000"]


async def test_a_page_that_is_not_a_page_is_a_decode_error() -> None:
    app = web.Application()

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=b"<html>maintenance</html>", content_type="text/html")

    app.router.add_get("/api/v1/opportunity/", handle)
    async with serve(app) as base, AsyncCloseClient("k", base_url=base) as close:
        with pytest.raises(DecodeError) as info:
            await collect(close.opportunities.list())
    assert info.value.body == b"<html>maintenance</html>"


async def test_has_more_on_an_empty_page_ends_with_an_error_not_a_loop() -> None:
    app = web.Application()
    calls = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.query)
        return web.json_response({"has_more": True, "data": []})

    app.router.add_get("/api/v1/opportunity/", handle)
    async with serve(app) as base, AsyncCloseClient("k", base_url=base) as close:
        with pytest.raises(Exception, match="has_more"):
            await collect(close.opportunities.list())
    assert len(calls) == 1


def test_the_page_model_reads_a_real_shaped_page() -> None:
    raw = msgspec.json.encode(
        {"has_more": False, "data": [{"id": "oppo_1"}], "count_by_value_period": {"one_time": 1}}
    )
    page = msgspec.json.decode(raw, type=OpportunityPage)
    assert page.count_by_value_period == {"one_time": 1}
    assert page.total_results is None  # optional
