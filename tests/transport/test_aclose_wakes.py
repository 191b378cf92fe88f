"""aclose() ends every wait at once: nothing waits out a 20 s Retry-After for a closed client."""

from __future__ import annotations

import asyncio

import pytest

from close_async import AsyncCloseClient, CloseError
from tests.support.wire import Ending, Wire


@pytest.mark.parametrize("max_connections", [100, 2])  # waiting in the pacer / for a slot too
async def test_aclose_wakes_requests_waiting_out_a_429(max_connections: int) -> None:
    slow = Ending(status=429, headers={"Retry-After": "20"}, body=b"")
    async with Wire([slow] * 30) as server:
        close = AsyncCloseClient("key", base_url=server.base_url, max_connections=max_connections)
        bulk = asyncio.ensure_future(
            close.opportunities.create_many([{"lead_id": "lead_1"}] * 10, concurrency=10)
        )
        await asyncio.sleep(0.5)
        arrived = server.arrived
        await close.aclose()
        results = await asyncio.wait_for(bulk, 3)  # not 19.5 s later
        assert server.arrived == arrived  # nothing more was sent after the close
    assert len(results) == 10
    for result in results:
        assert isinstance(result, CloseError)
        assert "closed" in str(result)
        assert result.may_have_succeeded is False
