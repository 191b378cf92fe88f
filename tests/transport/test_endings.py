"""Every way a connection can end, pinned: ``may_have_succeeded``, the error class, and whether
the client retries, for a create (POST) and for a later GET (through the internal pipeline).

Each case runs against ``tests.wire.Wire``, a raw-socket server, and checks the outcome at the
server's own record. The table in docs/errors.md is this file's ``ENDINGS``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
import warnings
from typing import Any

import aiohttp
import pytest

from close_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncCloseClient,
    AuthenticationError,
    BadRequestError,
    CloseError,
    RedirectError,
    RetryPolicy,
    ServerError,
)
from close_async._constants import MAX_ERROR_BODY
from close_async._transport import body as _body
from tests.support.servers import free_port as closed_port  # bound, then released: nobody listens
from tests.support.wire import Ending, Wire

FAST = {"initial_backoff": 0.001, "max_backoff": 0.002}
OK = None  # the call returns: for a retried ending, on the second attempt


def client(base_url: str, **kwargs: Any) -> AsyncCloseClient:
    close = AsyncCloseClient("k", base_url=base_url, **kwargs)
    close.retry_policy = RetryPolicy(max_retries=1, **FAST)
    return close


async def call(close: AsyncCloseClient, method: str) -> Any:
    if method == "POST":
        return await close.opportunities.create(lead_id="lead_1")
    return await close._transport.send("GET", "opportunity/oppo_1/", b"")


# ending -> {method: (error class or OK, may_have_succeeded, retried)}
ENDINGS: dict[str, dict[str, tuple[type[CloseError] | None, bool, bool]]] = {
    "before_connect": {
        "POST": (APIConnectionError, False, True),
        "GET": (APIConnectionError, False, True),
    },
    "during_write": {"POST": (APIConnectionError, True, False), "GET": (OK, False, True)},
    "before_status": {"POST": (APIConnectionError, True, False), "GET": (OK, False, True)},
    "stall": {"POST": (APITimeoutError, True, False), "GET": (OK, False, True)},
    "after_headers": {"POST": (APIConnectionError, True, False), "GET": (OK, False, True)},
    "mid_body": {"POST": (APIConnectionError, True, False), "GET": (OK, False, True)},
    "after_body": {"POST": (OK, False, False), "GET": (OK, False, False)},
}
CASES = [
    pytest.param(ending, method, *expected, id=f"{method}-{ending}")
    for ending, by_method in ENDINGS.items()
    for method, expected in by_method.items()
]


@pytest.mark.parametrize(("ending", "method", "error", "may_have_succeeded", "retried"), CASES)
async def test_each_connection_ending_is_classified(
    ending: str,
    method: str,
    error: type[CloseError] | None,
    may_have_succeeded: bool,
    retried: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if ending == "before_connect":
        with caplog.at_level(logging.INFO, logger="close_async"):
            async with client(f"http://127.0.0.1:{closed_port()}/api/v1/") as close:
                with pytest.raises(CloseError) as info:
                    await call(close, method)
        assert type(info.value) is error
        assert info.value.may_have_succeeded is may_have_succeeded
        assert [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
        return
    async with Wire([Ending(ending)], slow=1.0) as server:
        async with client(server.base_url, timeout=0.3) as close:
            if error is None:
                await call(close, method)
                if ending == "after_body":  # and the next request, on a new connection
                    await call(close, method)
            else:
                with pytest.raises(CloseError) as info:
                    await call(close, method)
                assert type(info.value) is error, info.value
                assert info.value.may_have_succeeded is may_have_succeeded
        if ending == "after_body":
            assert server.arrived == 2
            assert server.connections == 2
        else:
            assert server.arrived == (2 if retried else 1)
        if method == "POST":  # nothing duplicated: at most the one create the server acted on
            assert len(server.processed) == (
                2 if ending == "after_body" else 0 if ending == "during_write" else 1
            )


# --- idle keep-alive connections the server closes -----------------------------------------------


async def _batches(close: AsyncCloseClient, batches: int, size: int, gap: float) -> list[Any]:
    results: list[Any] = []
    for _ in range(batches):
        results += await asyncio.gather(
            *(close.opportunities.create(lead_id="lead_1") for _ in range(size)),
            return_exceptions=True,
        )
        await asyncio.sleep(gap)
    return results


async def test_connections_idle_past_the_servers_keep_alive_header_are_never_reused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server says it keeps idle connections 0.2 s; aiohttp alone would reuse them for 15 s,
    # and every create written on one the server dropped would be a false "may have succeeded".
    async with Wire(idle=0.2, keepalive_header="timeout=0.2, max=100") as server:
        with caplog.at_level(logging.INFO, logger="close_async"):
            async with client(server.base_url) as close:
                results = await _batches(close, batches=3, size=10, gap=0.25)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(server.processed) == 30
    assert server.dropped_idle == 0
    assert not [r for r in caplog.records if "retrying in" in r.getMessage()]  # no backoff paid


async def test_without_a_header_idle_connections_are_retired_before_common_server_timeouts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _body.KeepAlive().default < 2.0  # gunicorn's 2 s, the shortest common timeout
    # Scaled down 10x for the test: a server closing idle connections after 0.2 s.
    monkeypatch.setattr(_body, "ASSUMED_SERVER_KEEPALIVE", 0.2)
    async with Wire(idle=0.2) as server, client(server.base_url) as close:
        results = await _batches(close, batches=3, size=5, gap=0.25)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert len(server.processed) == 15
    assert server.dropped_idle == 0


def test_keep_alive_timeouts_are_read_leniently() -> None:
    keepalive = _body.KeepAlive()

    class Protocol:
        pass

    for header, idle in [
        ("timeout=5, max=100", 1.0),
        ("max=9,timeout=1", 0.5),
        ("TIMEOUT=0.2", 0.1),
    ]:
        proto = Protocol()
        keepalive.went_idle(proto, {"Keep-Alive": header})
        assert keepalive._deadlines[proto] - time.monotonic() == pytest.approx(idle, abs=0.05)
    proto = Protocol()
    keepalive.went_idle(proto, {"Keep-Alive": "timeout=bogus"})
    assert keepalive._deadlines[proto] - time.monotonic() == pytest.approx(1.0, abs=0.05)


# --- an error status whose body does not arrive --------------------------------------------------


@pytest.mark.parametrize("defect", ["mid_body", "bad_gzip", "slow_body"])
@pytest.mark.parametrize(
    ("status", "error"),
    [(429, None), (400, BadRequestError), (401, AuthenticationError)],
    ids=["429", "400", "401"],
)
async def test_an_error_status_is_the_answer_even_when_its_body_fails(
    status: int, error: type[CloseError] | None, defect: str
) -> None:
    server = Wire([Ending(defect, status=status)], slow=1.0)
    async with server, client(server.base_url, timeout=0.3) as close:
        if error is None:  # 429: retried, and the retry is answered
            assert (await close.opportunities.create(lead_id="lead_1")).id == "oppo_1"
        else:
            with pytest.raises(error) as info:
                await close.opportunities.create(lead_id="lead_1")
            assert info.value.may_have_succeeded is False
            assert info.value.status_code == status
    assert server.arrived == (2 if error is None else 1)


# --- the rest of issue 12's rows -----------------------------------------------------------------


async def test_a_timed_out_wait_for_a_pooled_connection_is_not_sent() -> None:
    async with Wire(hold=0.4) as server:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        close = AsyncCloseClient(
            "k", base_url=server.base_url, session=session, timeout=0.2, pace_from_headers=False
        )  # no cold-start probe: all six wait for the one connection at once
        close.retry_policy = RetryPolicy(max_retries=0)
        async with session, close:
            results = await asyncio.gather(
                *(close.opportunities.create(lead_id="lead_1") for _ in range(6)),
                return_exceptions=True,
            )
        await asyncio.sleep(0.05)
    assert all(isinstance(r, APITimeoutError) for r in results)
    unknown = [r for r in results if isinstance(r, CloseError) and r.may_have_succeeded]
    assert len(unknown) == server.arrived >= 1  # only those the server got are "unknown"


async def test_an_on_send_hook_that_fails_surfaces_its_own_error_and_sends_nothing() -> None:
    def journal_write() -> None:
        raise OSError(28, "No space left on device")

    async with Wire() as server, client(server.base_url) as close:
        with pytest.raises(OSError, match="No space left") as info:
            await close._transport.send("POST", "opportunity/", b"{}", on_send=journal_write)
        assert not isinstance(info.value, CloseError)
        assert (await close.opportunities.create(lead_id="lead_1")).id == "oppo_1"
    assert server.arrived == 1


async def test_aclose_while_creates_are_queued_fails_them_with_close_error() -> None:
    async with Wire(hold=0.2) as server:
        close = client(server.base_url, max_connections=2)
        bulk = asyncio.ensure_future(close.opportunities.create_many([{"lead_id": "l"}] * 10))
        await asyncio.wait_for(server.arrival.wait(), 5)  # one in flight (the pacer's probe)
        await close.aclose()
        results = await bulk
        await asyncio.sleep(0.05)
    assert len(results) == 10
    assert all(isinstance(r, CloseError) for r in results)
    unknown = [r for r in results if r.may_have_succeeded]
    assert len(unknown) == server.arrived >= 1  # those in flight; the others never left
    assert "closed" in str(results[-1])


def test_one_client_across_two_asyncio_runs() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    close = AsyncCloseClient("k", base_url=f"http://127.0.0.1:{port}/api/v1/")

    async def once() -> int:
        async with Wire(sock=listener.dup()) as server:
            await close.opportunities.create(lead_id="lead_1")
            return len(server.processed)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(once()) == 1
        assert asyncio.run(once()) == 1
        asyncio.run(close.aclose())
        gc.collect()
    listener.close()
    assert [str(w.message) for w in caught] == []


def test_a_client_in_use_by_another_loop_says_so() -> None:
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        server = Wire()
        first.run_until_complete(server.__aenter__())
        close = AsyncCloseClient("k", base_url=server.base_url)
        first.run_until_complete(close.opportunities.create(lead_id="lead_1"))
        with pytest.raises(CloseError, match="another event loop"):
            second.run_until_complete(close.opportunities.create(lead_id="lead_1"))
        first.run_until_complete(close.aclose())
        first.run_until_complete(server.__aexit__())
    finally:
        first.close()
        second.close()


async def test_a_5mb_error_body_is_capped() -> None:
    async with Wire([Ending("huge", status=500)]) as server, client(server.base_url) as close:
        with pytest.raises(ServerError) as info:
            await close.opportunities.create(lead_id="lead_1")
    assert len(info.value.raw_body) == MAX_ERROR_BODY
    assert len(str(info.value)) < 200
    assert server.huge_sent < server.huge_size  # we hung up instead of reading it all


# --- redirects -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "may_have_succeeded"),
    [(301, True), (302, True), (303, True), (307, False), (308, False)],
)
async def test_a_create_never_follows_a_redirect(status: int, may_have_succeeded: bool) -> None:
    async with Wire() as elsewhere:
        target = elsewhere.base_url + "opportunity/"
        if status in (301, 302, 303):  # the case from the issue: a host that does not answer
            target = f"http://127.0.0.1:{closed_port()}/api/v1/opportunity/"
        script = [Ending(status=status, headers={"Location": target})]
        server = Wire(script)
        async with server, client(server.base_url, retry_unknown_outcome=True) as close:
            with pytest.raises(RedirectError) as info:
                await close.opportunities.create(lead_id="lead_1")
    assert info.value.location == target
    assert target in str(info.value)
    assert info.value.may_have_succeeded is may_have_succeeded
    assert info.value.status_code == status
    assert server.arrived == 1  # not retried, even with retry_unknown_outcome=True
    assert elsewhere.arrived == 0  # the body never went to another host, nor did a GET
    assert all(r.method == "POST" for r in server.received)


@pytest.mark.parametrize("ending", ["before_status", "stall"])
async def test_an_unknown_outcome_of_an_idempotent_method_is_retried(ending: str) -> None:
    # PUT and DELETE (issues 14/15) may have been applied, but applying them twice is harmless.
    server = Wire([Ending(ending)], slow=1.0)
    async with server, client(server.base_url, timeout=0.3) as close:
        assert await close._transport.send("PUT", "opportunity/oppo_1/", b"{}")
    assert server.arrived == 2
    assert [r.method for r in server.processed] == ["PUT", "PUT"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_5xx_of_an_idempotent_method_is_retried(method: str) -> None:
    server = Wire([Ending(status=503)])
    async with server, client(server.base_url) as close:
        assert await close._transport.send(method, "opportunity/oppo_1/", b"")
    assert [r.method for r in server.received] == [method, method]


async def test_a_5xx_of_a_create_is_not_retried() -> None:
    server = Wire([Ending(status=503)])
    async with server, client(server.base_url) as close:
        with pytest.raises(ServerError) as info:
            await close.opportunities.create(lead_id="lead_1")
    assert info.value.may_have_succeeded is True
    assert server.arrived == 1
