"""``.sent_at``: every error of a create that may have succeeded says when the request left."""

from __future__ import annotations

import datetime as dt

import pytest

from close_async import AsyncCloseClient, CloseError
from close_async.testing import FakeCloseServer

UTC = dt.timezone.utc
LEAD = "lead_" + "S" * 43


@pytest.mark.parametrize("fault", ["drop", "500_after_create", "drop_before_create", "500"])
async def test_an_unknown_create_raises_with_the_moment_it_left(fault: str) -> None:
    async with FakeCloseServer() as server, AsyncCloseClient("k", base_url=server.base_url) as c:
        server.fail_next(fault)
        before = dt.datetime.now(UTC)
        with pytest.raises(CloseError) as info:
            await c.opportunities.create(lead_id=LEAD, value=1)
        after = dt.datetime.now(UTC)
    error = info.value
    assert error.may_have_succeeded
    assert error.sent_at is not None
    assert error.sent_at.tzinfo is not None
    assert before <= error.sent_at <= after
    assert error.sent_at <= dt.datetime.now(UTC)
    # It left before the server saw it: no later than the server's arrival of the request.
    assert len(server.requests) == 1


async def test_a_definite_failure_has_no_sent_at() -> None:
    async with FakeCloseServer() as server, AsyncCloseClient("k", base_url=server.base_url) as c:
        with pytest.raises(CloseError) as info:
            await c.opportunities.create(lead_id="lead_missing", value=1)
    assert not info.value.may_have_succeeded
    assert info.value.sent_at is None


async def test_bulk_results_that_may_have_succeeded_carry_sent_at() -> None:
    async with FakeCloseServer() as server, AsyncCloseClient("k", base_url=server.base_url) as c:
        before = dt.datetime.now(UTC)
        server.fail_next("drop")
        results = await c.opportunities.create_many(
            [{"lead_id": LEAD, "value": 1}, {"lead_id": LEAD, "value": 2}], concurrency=1
        )
        server.fail_next("500_after_create")
        seen: list[object] = []
        async for _, result in c.opportunities.stream_create(
            [{"lead_id": LEAD, "value": 3}], on_sent=lambda i, s: seen.append(s)
        ):
            results.append(result)
    unknown = [r for r in results if isinstance(r, CloseError)]
    assert len(unknown) == 2
    assert seen == [True]
    for error in unknown:
        assert error.may_have_succeeded
        assert error.sent_at is not None
        assert before <= error.sent_at <= dt.datetime.now(UTC)


async def test_the_client_remembers_what_it_created() -> None:
    async with FakeCloseServer() as server, AsyncCloseClient("k", base_url=server.base_url) as c:
        opp = await c.opportunities.create(lead_id=LEAD, value=1)
        [other] = await c.opportunities.create_many([{"lead_id": LEAD, "value": 2}])
    assert opp.id in c.opportunities.created_ids
    assert not isinstance(other, CloseError)
    assert other.id in c.opportunities.created_ids
