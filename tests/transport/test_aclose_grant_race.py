"""A request granted its turn in the loop iteration aclose() runs in is not sent (found in review).
An aclose() that lands after the pacer granted a queued request its ticket, but before that
request's task ran, no longer stops it. The grant is already popped from the queue, so Pacer.fail
cannot see it; the request resumes, calls on_send (bulk's Gate marks it sent, an import's hook
journals it), then fails in _get_session with "this AsyncCloseClient is closed" and
may_have_succeeded from a Gate that says sent. Before the merge, _unless_closed cancelled the
acquire task, whose grant went back, and raised "waited its turn: not sent"."""

from __future__ import annotations

import asyncio

import pytest

from close_async import AsyncCloseClient, CloseError
from close_async._constants import endpoint_group
from close_async.testing import FakeCloseServer

pytestmark = pytest.mark.asyncio


async def test_a_close_after_the_grant_but_before_the_send_neither_sends_nor_calls_on_send() -> (
    None
):
    async with FakeCloseServer() as server:
        close = AsyncCloseClient("k", base_url=server.base_url)
        window = close.pacer.window(endpoint_group("POST", "opportunity/"))
        window.paused_until = asyncio.get_running_loop().time() + 30  # the request queues
        hooked: list[int] = []
        results: list[object] = []

        async def run() -> None:
            async for _, result in close.opportunities.stream_create(
                [{"lead_id": "lead_1"}], on_send=hooked.append
            ):
                results.append(result)

        task = asyncio.create_task(run())
        for _ in range(10):
            await asyncio.sleep(0)
        assert len(window._waiters) == 1
        window.paused_until = 0.0
        window._wake()  # the pause ends (its timer): the waiter is granted, its task not yet run
        await close.aclose()  # ...and the client closes in the same loop iteration
        await task
        assert server.created == []
        assert hooked == [], "on_send ran for a request the closed client never sent"
        [error] = results
        assert isinstance(error, CloseError)
        assert not error.may_have_succeeded
        assert "not sent" in str(error), str(error)
