"""FakeCloseServer's ``GET /opportunity/``: filters, order, paging, caps, aggregates, lag."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from close_async._fake.opportunity_list import list_opportunities
from tests.support.fake_api import Api, serve

WON = "stat_" + "FakeCloseServerWon".ljust(43, "0")


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serve() as client:
        yield client


async def ids(api: Api, **params: str) -> list[str]:
    return [o["id"] for o in (await api.list(**params))["data"]]


async def test_the_default_order_is_newest_first_and_date_created_pages_oldest_first(
    api: Api,
) -> None:
    made = [(await api.create(lead_id="lead_1"))["id"] for _ in range(5)]
    assert await ids(api) == made[::-1]
    assert await ids(api, _order_by="-date_created") == made[::-1]
    assert await ids(api, _order_by="date_created") == made
    assert await ids(api, _order_by="date_created", _skip="1", _limit="2") == made[1:3]


async def test_order_by_value_keeps_creation_order_among_equals(api: Api) -> None:
    made = [(await api.create(lead_id="l", value=v))["id"] for v in (300, 100, 300, None)]
    assert await ids(api, _order_by="value") == [made[3], made[1], made[0], made[2]]
    assert await ids(api, _order_by="-value") == [made[2], made[0], made[1], made[3]]


async def test_pages_say_has_more_until_the_last_and_count_every_match(api: Api) -> None:
    for _ in range(5):
        await api.create(lead_id="lead_1")
    pages = [await api.list(_order_by="date_created", _skip=str(s), _limit="2") for s in (0, 2, 4)]
    assert [(len(p["data"]), p["has_more"], p["total_results"]) for p in pages] == [
        (2, True, 5),
        (2, True, 5),
        (1, False, 5),
    ]
    counts = await api.list(_limit="0")
    assert (counts["data"], counts["has_more"], counts["total_results"]) == ([], True, 5)


async def test_paging_by_date_created_while_rows_are_added_sees_each_once(api: Api) -> None:
    first = [(await api.create(lead_id="lead_1"))["id"] for _ in range(6)]
    seen: list[str] = []
    skip = 0
    while True:
        page = await api.list(_order_by="date_created", _skip=str(skip), _limit="2")
        seen += [o["id"] for o in page["data"]]
        skip += len(page["data"])
        if not page["has_more"]:
            break
        await api.create(lead_id="lead_1")  # a row added between two pages
    assert seen[:6] == first
    assert len(seen) == len(set(seen)) == len(api.server.opportunities)


async def test_newest_first_paging_while_rows_are_added_repeats_rows(api: Api) -> None:
    """The reason to page by ``date_created``: Close's closeio-api #96 duplicates."""
    for _ in range(4):
        await api.create(lead_id="lead_1")
    first = await ids(api, _limit="2")
    await api.create(lead_id="lead_1")
    second = await ids(api, _skip="2", _limit="2")
    assert first[1] == second[0]


async def test_limit_above_the_maximum_answers_400(api: Api) -> None:
    status, body = await api.call("GET", "opportunity/", params={"_limit": "101"})
    assert (status, body) == (400, {"error": "The maximum _limit for this resource is 100."})
    assert (await api.call("GET", "opportunity/", params={"_limit": "100"}))[0] == 200


async def test_the_default_limit_is_the_maximum() -> None:
    async with serve(max_limit=3) as api:
        for _ in range(4):
            await api.create(lead_id="lead_1")
        page = await api.list()
        assert (len(page["data"]), page["has_more"]) == (3, True)


async def test_skip_past_max_skip_answers_400() -> None:
    async with serve(max_skip=4) as api:
        await api.create(lead_id="lead_1")
        assert (await api.call("GET", "opportunity/", params={"_skip": "4"}))[0] == 200
        status, body = await api.call("GET", "opportunity/", params={"_skip": "5"})
        assert status == 400
        assert body["error"].startswith("The maximum _skip for this resource is 4.")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"_skip": "-1"}, "_skip", id="negative_skip"),
        pytest.param({"_limit": "ten"}, "_limit", id="limit_not_int"),
        pytest.param({"_order_by": "note"}, "_order_by", id="order_by"),
        pytest.param({"date_created__gte": "yesterday"}, "date_created__gte", id="date"),
        # An offset's "+" sent unencoded arrives as a space: a real server refuses it too.
        pytest.param("date_created__gte=2024-01-01T00:00:00+02:00", "date_created__gte", id="plus"),
    ],
)
async def test_bad_parameters_answer_400_naming_the_parameter(
    api: Api, params: dict[str, str] | str, field: str
) -> None:
    status, body = await api.call("GET", "opportunity/", params=params)
    assert status == 400
    assert list(body["field-errors"]) == [field]


async def test_filters_match_on_every_given_field(api: Api) -> None:
    a = await api.create(lead_id="lead_a", user_id="user_1")
    b = await api.create(lead_id="lead_b", user_id="user_1", status_id=WON)
    c = await api.create(lead_id="lead_a", user_id="user_2")
    order = {"_order_by": "date_created"}
    assert await ids(api, lead_id="lead_a", **order) == [a["id"], c["id"]]
    assert await ids(api, user_id="user_1", **order) == [a["id"], b["id"]]
    assert await ids(api, status_type="won") == [b["id"]]
    assert await ids(api, status_id=WON) == [b["id"]]
    assert await ids(api, lead_id="lead_a", user_id="user_2") == [c["id"]]
    assert await ids(api, id__in=f"{a['id']},{c['id']},oppo_x", **order) == [a["id"], c["id"]]
    assert await ids(api, lead_id="lead_none") == []
    assert await ids(api, unknown_filter="ignored", **order) == [a["id"], b["id"], c["id"]]


async def test_date_created_bounds_compare_instants_across_offsets(api: Api) -> None:
    a = await api.create(lead_id="lead_1")
    b = await api.create(lead_id="lead_1")
    at_b = dt.datetime.fromisoformat(b["date_created"])
    in_paris = at_b.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    assert await ids(api, date_created__gte=in_paris) == [b["id"]]
    assert await ids(api, date_created__lt=in_paris) == [a["id"]]
    between = {"date_created__lte": b["date_created"], "date_created__gt": a["date_created"]}
    assert await ids(api, **between) == [b["id"]]
    naive = at_b.replace(tzinfo=None).isoformat()  # a naive bound is UTC
    assert await ids(api, date_created__gte=naive) == [b["id"]]
    tomorrow = (at_b + dt.timedelta(days=1)).date().isoformat()
    assert await ids(api, date_created__gte=tomorrow) == []


async def test_fields_limits_each_object_to_the_named_fields(api: Api) -> None:
    made = await api.create(lead_id="lead_1", note="n")
    page = await api.list(_fields="id,note,nonexistent")
    assert page["data"] == [{"id": made["id"], "note": "n"}]


async def test_aggregates_cover_every_match_not_one_page(api: Api) -> None:
    rows: list[dict[str, Any]] = [
        {"value": 1000, "confidence": 50},
        {"value": 300, "value_period": "monthly", "confidence": 10},
        {"value": 5000, "value_period": "annual", "confidence": 100},
        {"value": None},
    ]
    for row in rows:
        await api.create(lead_id="lead_1", **row)
    page = await api.list(_limit="1")
    assert len(page["data"]) == 1
    totals = {k: v for k, v in page.items() if k not in ("data", "has_more")}
    assert totals == {
        "total_results": 4,
        "count_by_value_period": {"one_time": 2, "monthly": 1, "annual": 1},
        "total_value_one_time": 1000,
        "total_value_monthly": 300,
        "total_value_annual": 5000,
        "total_value_annualized": 1000 + 3600 + 5000,
        "expected_value_one_time": 500,
        "expected_value_monthly": 30,
        "expected_value_annual": 5000,
        "expected_value_annualized": 500 + 360 + 5000,
    }


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_list_lag_hides_new_rows_from_the_list_but_not_from_a_read_by_id() -> None:
    clock = ManualClock()
    async with serve(list_lag=2.0, clock=clock) as api:
        old = await api.create(lead_id="lead_1")
        clock.now += 1.5
        new = await api.create(lead_id="lead_1")
        assert await ids(api) == []
        assert (await api.call("GET", f"opportunity/{new['id']}/")) == (200, new)
        clock.now += 0.5
        page = await api.list()
        assert ([o["id"] for o in page["data"]], page["total_results"]) == ([old["id"]], 1)
        clock.now += 1.5
        assert await ids(api, _order_by="date_created") == [old["id"], new["id"]]


async def test_list_lag_runs_on_the_loop_clock_by_default() -> None:
    async with serve(list_lag=0.05) as api:
        made = await api.create(lead_id="lead_1")
        assert await ids(api) == []
        await asyncio.sleep(0.06)
        assert await ids(api) == [made["id"]]


@pytest.mark.parametrize(
    ("bound", "listed"),
    [
        pytest.param("date_created__gte", True, id="gte"),
        pytest.param("date_created__gt", False, id="gt"),
        pytest.param("date_created__lte", True, id="lte"),
        pytest.param("date_created__lt", False, id="lt"),
    ],
)
def test_a_bound_on_a_whole_second_compares_as_an_instant(bound: str, listed: bool) -> None:
    row = {"id": "oppo_1", "date_created": "2024-01-01T00:00:00.000000+00:00"}
    row |= {"value": None, "value_period": "one_time", "confidence": 0}
    answer = list_opportunities([row], {bound: "2024-01-01T01:00:00+01:00"})
    assert answer["total_results"] == int(listed)
