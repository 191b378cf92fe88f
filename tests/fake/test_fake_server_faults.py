"""FakeCloseServer's random create faults (``faults=FaultPlan(...)``) and ``late_create``."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from close_async._fake.faults import FaultDraw
from close_async.testing import FakeCloseServer, FaultPlan
from tests.support.fake_api import BEARER, Api, serve


async def outcome(api: Api, note: str, timeout: float | None = None) -> int | str:
    """The status a create got, or the name of the client error that ended it."""
    try:
        status, _ = await api.call("POST", "opportunity/", {"note": note}, timeout=timeout)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return type(exc).__name__
    return status


@pytest.mark.parametrize(
    ("plan", "fault", "answer", "created"),
    [
        pytest.param(FaultPlan(drop_after_create=1.0), "drop", "ServerDisconnectedError", 1,
                     id="drop_after_create"),
        pytest.param(FaultPlan(drop_before_create=1.0), "drop_before_create",
                     "ServerDisconnectedError", 0, id="drop_before_create"),
        pytest.param(FaultPlan(error_after_create=1.0), "500_after_create", 500, 1,
                     id="error_after_create"),
        pytest.param(FaultPlan(error_before_create=1.0), "500", 500, 0, id="error_before_create"),
    ],
)  # fmt: skip
async def test_each_planned_fault_ends_as_its_name_says(
    plan: FaultPlan, fault: str, answer: int | str, created: int
) -> None:
    async with serve(faults=plan) as api:
        assert await outcome(api, "a") == answer
        assert len(api.server.created) == len(api.server.opportunities) == created
        assert [(r.fault, r.status) for r in api.server.requests] == [
            (fault, None if isinstance(answer, str) else answer)
        ]


async def test_a_create_after_the_client_timed_out_is_recorded_late() -> None:
    async with serve(faults=FaultPlan(create_after_timeout=1.0), late_seconds=0.15) as api:
        assert await outcome(api, "late", timeout=0.05) == "TimeoutError"
        assert api.server.created == []  # nothing yet when the client gives up
        for _ in range(100):
            if api.server.created:
                break
            await asyncio.sleep(0.01)
        assert [o["note"] for o in api.server.created] == ["late"]
        assert [o["note"] for o in (await api.list())["data"]] == ["late"]
        assert api.server.requests[0].fault == "late_create"


async def test_a_late_create_still_held_at_close_is_never_made() -> None:
    async with FakeCloseServer(late_seconds=60.0) as server, aiohttp.ClientSession() as session:
        server.fail_next("late_create")
        url = server.base_url + "opportunity/"
        request = asyncio.ensure_future(session.post(url, json={}, headers=BEARER))
        for _ in range(100):
            if server.requests:
                break
            await asyncio.sleep(0.01)
        await server.close()
        with pytest.raises(aiohttp.ClientError):
            await request
    assert server.created == []
    assert [(r.fault, r.status) for r in server.requests] == [("late_create", None)]


async def test_the_same_seed_fails_the_same_requests() -> None:
    plan = FaultPlan(drop_after_create=0.2, error_after_create=0.2, drop_before_create=0.1, seed=3)
    runs = []
    for _ in range(2):
        async with serve(faults=plan) as api:
            for n in range(30):
                await outcome(api, str(n))
            runs.append([r.fault for r in api.server.requests])
    assert runs[0] == runs[1]
    assert {"drop", "500_after_create", "drop_before_create", None} <= set(runs[0])


async def test_scripted_faults_come_first_and_take_no_draw() -> None:
    plan = FaultPlan(error_after_create=0.5, seed=11)
    draw = FaultDraw(plan)
    expected = [draw.next() for _ in range(10)]
    async with serve(faults=plan) as api:
        api.server.fail_next("503")
        for n in range(11):
            await outcome(api, str(n))
        assert [r.fault for r in api.server.requests] == ["503", *expected]
        api.server.reset()  # the draws start over
        await outcome(api, "again")
        assert [r.fault for r in api.server.requests] == expected[:1]


async def test_reads_never_draw_a_fault() -> None:
    async with serve(faults=FaultPlan(drop_before_create=1.0)) as api:
        for _ in range(3):
            assert (await api.call("GET", "opportunity/"))[0] == 200
        assert [r.fault for r in api.server.requests] == [None] * 3


def test_draws_follow_the_rates() -> None:
    plan = FaultPlan(drop_after_create=0.01, drop_before_create=0.01, error_after_create=0.005)
    draw = FaultDraw(plan)
    counts = Counter(draw.next() for _ in range(100_000))
    assert 800 <= counts["drop"] <= 1200
    assert 800 <= counts["drop_before_create"] <= 1200
    assert 350 <= counts["500_after_create"] <= 650
    assert (
        counts[None]
        == 100_000 - counts["drop"] - counts["drop_before_create"] - counts["500_after_create"]
    )


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"drop_after_create": -0.1}, id="negative"),
        pytest.param({"error_after_create": 1.5}, id="above_one"),
        pytest.param({"drop_after_create": 0.6, "drop_before_create": 0.6}, id="sum_above_one"),
    ],
)
def test_a_plan_rejects_rates_outside_zero_to_one(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="FaultPlan"):
        FaultPlan(**options)
