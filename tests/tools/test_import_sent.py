"""The import's "this row's request left" is the client's own "a body byte was written"."""

from __future__ import annotations

import asyncio

from close_async import AsyncCloseClient
from close_async._tools.import_trace import SendTracker
from close_async._transport.retry import RetryPolicy
from tests.support.wire import Wire


async def test_a_refused_pooled_connection_whose_resend_cannot_connect_did_not_leave() -> None:
    async with Wire(keepalive_header="timeout=1") as server:
        close = AsyncCloseClient("key", base_url=server.base_url, max_retries=3)
        close.retry_policy = RetryPolicy(max_retries=3, initial_backoff=30.0, max_backoff=30.0)
        tracker = SendTracker(None)
        await close.opportunities.create(lead_id="lead_1")  # a pooled connection, idle 1 s
        await asyncio.sleep(0.7)  # past our retirement of it (0.5 s), before the server's
        assert server._server is not None
        server._server.close()  # nothing can connect any more
        stream = close.opportunities.stream_create(
            [{"lead_id": "lead_1"}],
            concurrency=1,
            on_send=lambda index: tracker.leaving(2),
            on_sent=lambda index, sent: tracker.sent(2, sent),
        )
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.1)  # the retry waits out its 30 s backoff
        assert not tracker.left(2)
        assert len(server.received) == 1  # the server's record: the second never arrived
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()  # type: ignore[attr-defined]
        await close.aclose()
