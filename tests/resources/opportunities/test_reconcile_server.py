"""``opportunities.reconcile`` against FakeCloseServer: its real list (with a visibility lag) and
its faults; every verdict checked at the server's own record."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from close_async import (
    APITimeoutError,
    AsyncCloseClient,
    CloseError,
    CreateOpportunity,
    InvalidInputError,
)
from close_async.testing import FakeCloseServer

LEAD = "lead_" + "ReconcileServer".ljust(43, "0")
UTC = dt.timezone.utc


@pytest.fixture
async def lagging() -> AsyncIterator[FakeCloseServer]:
    async with FakeCloseServer(list_lag=0.3) as server:
        yield server


def reads(server: FakeCloseServer) -> int:
    return sum(1 for r in server.requests if r.method == "GET")


async def unknown_create(close: AsyncCloseClient, item: CreateOpportunity) -> CloseError:
    with pytest.raises(CloseError) as info:
        await close.opportunities.create(item)
    assert info.value.may_have_succeeded
    return info.value


async def test_a_create_whose_answer_was_lost_is_found(lagging: FakeCloseServer) -> None:
    item = CreateOpportunity(lead_id=LEAD, value=1200, note="lost answer")
    async with AsyncCloseClient("k", base_url=lagging.base_url) as close:
        lagging.fail_next("drop")
        error = await unknown_create(close, item)
        result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0.6)
    [created] = lagging.created
    assert result.state == "created"
    assert result.opportunity is not None
    assert result.opportunity.id == created["id"]
    assert 1 <= reads(lagging) <= 3


async def test_a_create_that_never_happened_is_absent_after_settle(
    lagging: FakeCloseServer,
) -> None:
    item = CreateOpportunity(lead_id=LEAD, value=5, note="never made")
    async with AsyncCloseClient("k", base_url=lagging.base_url) as close:
        lagging.fail_next("drop_before_create")
        error = await unknown_create(close, item)
        assert error.sent_at is not None
        result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0.5)
    assert dt.datetime.now(UTC) - error.sent_at >= dt.timedelta(seconds=0.5)
    assert (result.state, result.opportunity) == ("absent", None)
    assert lagging.created == []
    assert 2 <= reads(lagging) <= 3


async def test_created_but_not_yet_listed_is_pending_then_created_never_absent(
    lagging: FakeCloseServer,
) -> None:
    item = CreateOpportunity(lead_id=LEAD, value=7, note="500 after create")
    async with AsyncCloseClient("k", base_url=lagging.base_url) as close:
        lagging.fail_next("500_after_create")
        error = await unknown_create(close, item)
        early = await close.opportunities.reconcile(item, sent_at=error.sent_at, wait=False)
        assert early.state == "pending"  # listed only 0.3 s after its create
        result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0.6)
    assert result.state == "created"
    assert len(lagging.created) == 1


async def test_a_create_after_the_client_timed_out_is_found() -> None:
    async with FakeCloseServer(late_seconds=0.3) as server:
        item = CreateOpportunity(lead_id=LEAD, value=9, note="late")
        async with AsyncCloseClient("k", base_url=server.base_url, timeout=0.1) as close:
            server.fail_next("late_create")
            with pytest.raises(APITimeoutError) as info:
                await close.opportunities.create(item)
            assert server.created == []  # not yet: the server is still holding it
            sent_at = info.value.sent_at
            assert sent_at is not None
            result = await close.opportunities.reconcile(item, sent_at=sent_at, settle=0.8)
        assert result.state == "created"
        assert [o["id"] for o in server.created] == [
            result.opportunity.id if result.opportunity else ""
        ]


async def test_two_twins_make_it_ambiguous(lagging: FakeCloseServer) -> None:
    item = CreateOpportunity(lead_id=LEAD, value=3, note="twin")
    async with AsyncCloseClient("other", base_url=lagging.base_url) as someone:
        await someone.opportunities.create(item)
    async with AsyncCloseClient("k", base_url=lagging.base_url) as close:
        lagging.fail_next("drop")
        error = await unknown_create(close, item)
        result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0.6)
    assert result.state == "ambiguous"
    assert {o.id for o in result.matches} == {o["id"] for o in lagging.created}


async def test_what_this_client_created_itself_never_counts(lagging: FakeCloseServer) -> None:
    item = CreateOpportunity(lead_id=LEAD, value=4, note="same again")
    async with AsyncCloseClient("k", base_url=lagging.base_url) as close:
        first = await close.opportunities.create(item)
        lagging.fail_next("drop_before_create")
        error = await unknown_create(close, item)
        result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0.5)
    assert result.state == "absent"  # the one listed is `first`, this client's own
    assert [o["id"] for o in lagging.created] == [first.id]


async def test_a_create_without_lead_id_is_found_among_the_recent_creates() -> None:
    async with FakeCloseServer(list_lag=0.2) as server:
        item = CreateOpportunity(value=600, note="no lead given")
        async with AsyncCloseClient("k", base_url=server.base_url) as close:
            await close.opportunities.create(lead_id=LEAD, value=600, note="another")
            server.fail_next("drop")
            error = await unknown_create(close, item)
            result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0.5)
        ours = [o for o in server.created if o["note"] == "no lead given"]
        assert result.state == "created"
        assert result.opportunity is not None
        assert [result.opportunity.id] == [o["id"] for o in ours]
        assert ours[0]["lead_id"] != LEAD  # Close made a lead for it


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sent_at": dt.datetime(2026, 1, 1)}, "sent_at"),
        ({"sent_at": dt.datetime.now(UTC), "settle": -0.5}, "settle"),
    ],
)
async def test_bad_input_sends_nothing(
    lagging: FakeCloseServer, kwargs: dict[str, Any], field: str
) -> None:
    async with AsyncCloseClient("k", base_url=lagging.base_url) as close:
        with pytest.raises(InvalidInputError) as info:
            await close.opportunities.reconcile({"lead_id": LEAD, "value": 1}, **kwargs)
    assert info.value.field == field
    assert lagging.requests == []


async def test_a_list_row_that_leaves_out_a_default_still_matches() -> None:
    stored: list[dict[str, Any]] = []

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        now = dt.datetime.now(UTC).isoformat()
        row = {"id": f"oppo_{len(stored)}", "lead_id": body["lead_id"], "value": body["value"]}
        stored.append({**row, "confidence": 0, "note": "", "date_created": now})  # no period
        return web.Response(status=500, text="<html>oops</html>")  # created, answered 500

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"has_more": False, "data": stored})

    app = web.Application()
    app.router.add_post("/api/v1/opportunity/", create)
    app.router.add_get("/api/v1/opportunity/", listing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    item = CreateOpportunity(lead_id=LEAD, value=100, value_period="one_time")
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/"
        async with AsyncCloseClient("k", base_url=url) as close:
            error = await unknown_create(close, item)
            result = await close.opportunities.reconcile(item, sent_at=error.sent_at, settle=0)
    finally:
        await runner.cleanup()
    assert len(stored) == 1
    assert result.state == "created"
