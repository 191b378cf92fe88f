"""AsyncCloseClient: credentials, session ownership, the request pipeline, errors and retries."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import socket
from typing import Any

import aiohttp
import msgspec
import pytest
from aioresponses import aioresponses

from close_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncCloseClient,
    AuthenticationError,
    BadRequestError,
    CloseError,
    CreateOpportunity,
    DecodeError,
    InvalidInputError,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    __version__,
)
from close_async._constants import endpoint_group
from close_async.testing import FakeCloseServer

URL = "https://api.close.com/api/v1/opportunity/"
FAST_BACKOFF = {"initial_backoff": 0.001, "max_backoff": 0.002}


def fast_retries(client: AsyncCloseClient, **kwargs: Any) -> AsyncCloseClient:
    """Keep the client's policy but make backoff waits tiny, for tests."""
    current = client.retry_policy
    options = {
        "max_retries": current.max_retries,
        "max_retry_wait": current.max_retry_wait,
        "deadline": current.deadline,
        "retry_unknown_outcome": current.retry_unknown_outcome,
        **FAST_BACKOFF,
        **kwargs,
    }
    client.retry_policy = RetryPolicy(**options)
    return client


# --- credentials and configuration ---------------------------------------------------------------


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSE_API_KEY", "api_env")
    client = AsyncCloseClient()
    assert (
        client._transport._headers["Authorization"]
        == "Basic " + base64.b64encode(b"api_env:").decode()
    )


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    with pytest.raises(CloseError, match="CLOSE_API_KEY"):
        AsyncCloseClient()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"api_key": ""}, "api_key", id="empty-key"),
        pytest.param({"api_key": "k", "oauth_token": "t"}, "oauth_token", id="both"),
        pytest.param({"oauth_token": " "}, "oauth_token", id="blank-token"),
        pytest.param({"api_key": "k", "base_url": "ftp://x"}, "base_url", id="base_url"),
        pytest.param({"api_key": "k", "timeout": 0}, "timeout", id="timeout-zero"),
        pytest.param({"api_key": "k", "timeout": True}, "timeout", id="timeout-bool"),
        pytest.param({"api_key": "k", "max_retries": -1}, "max_retries", id="retries-negative"),
        pytest.param({"api_key": "k", "max_retries": 1.5}, "max_retries", id="retries-float"),
        pytest.param({"api_key": "k", "deadline": -1}, "deadline", id="deadline"),
        pytest.param({"api_key": "k", "max_connections": 0}, "max_connections", id="conns-zero"),
        pytest.param({"api_key": "k", "max_connections": "9"}, "max_connections", id="conns-str"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        AsyncCloseClient(**kwargs)
    assert info.value.field == field


def test_repr_hides_the_key() -> None:
    client = AsyncCloseClient("api_SECRET")
    assert "SECRET" not in repr(client)
    assert "api_key=***" in repr(client)
    assert "oauth_token=***" in repr(AsyncCloseClient(oauth_token="tok_SECRET"))
    assert "SECRET" not in repr(AsyncCloseClient(oauth_token="tok_SECRET"))


def test_configuration_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        AsyncCloseClient("k", "https://example.com/")  # type: ignore[misc]


async def test_headers_sent(close_server: FakeCloseServer) -> None:
    seen: dict[str, str] = {}

    async def capture(session: Any, ctx: Any, params: aiohttp.TraceRequestStartParams) -> None:
        seen.update(params.headers)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(capture)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = AsyncCloseClient("api_k", base_url=close_server.base_url, session=session)
        await client.opportunities.create(lead_id="lead_1")
    assert seen["Authorization"] == "Basic " + base64.b64encode(b"api_k:").decode()
    assert seen["User-Agent"] == f"close-async/{__version__}"
    assert seen["Content-Type"] == "application/json"


async def test_oauth_token_is_sent_as_bearer(close_server: FakeCloseServer) -> None:
    async with AsyncCloseClient(oauth_token="tok_1", base_url=close_server.base_url) as close:
        await close.opportunities.create(lead_id="lead_1")
    assert close_server.requests[0].api_key == "tok_1"


async def test_base_url_without_trailing_slash(close_server: FakeCloseServer) -> None:
    base = close_server.base_url.rstrip("/")
    async with AsyncCloseClient("k", base_url=base) as close:
        assert (await close.opportunities.create()).id.startswith("oppo_")


# --- the create call -----------------------------------------------------------------------------


async def test_create_round_trip(close_server: FakeCloseServer) -> None:
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        opp = await close.opportunities.create(
            lead_id="lead_1",
            value=500000,
            value_period="monthly",
            confidence=50,
            note="Enterprise plan",
            custom={"cf_abc": "Gold", "cf_multi": ["A", "B"]},
        )
    assert opp.id == close_server.created[0]["id"]
    assert (opp.value, opp.value_period, opp.confidence) == (500000, "monthly", 50)
    assert opp.custom == {"cf_abc": "Gold", "cf_multi": ["A", "B"]}
    sent = msgspec.json.decode(close_server.requests[0].body)
    assert sent == {
        "lead_id": "lead_1",
        "value": 500000,
        "value_period": "monthly",
        "confidence": 50,
        "note": "Enterprise plan",
        "custom.cf_abc": "Gold",
        "custom.cf_multi": ["A", "B"],
    }


async def test_create_from_model(close_server: FakeCloseServer) -> None:
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        opp = await close.opportunities.create(CreateOpportunity(lead_id="lead_1", value=1000))
    assert opp.value == 1000


async def test_create_with_response_type(close_server: FakeCloseServer) -> None:
    from close_async import Opportunity

    class MyOpp(Opportunity, kw_only=True):
        tier: str | None = msgspec.field(default=None, name="custom.cf_tier")

    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        opp = await close.opportunities.create(custom={"cf_tier": "Gold"}, response_type=MyOpp)
    assert isinstance(opp, MyOpp)
    assert opp.tier == "Gold"


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        pytest.param((), {"value_period": "weekly"}, "value_period", id="bad-enum"),
        pytest.param((), {"confidence": 150}, "confidence", id="confidence"),
        pytest.param((), {"custom": ["x"]}, "custom", id="custom"),
        pytest.param(({"lead_id": "x"},), {}, "item", id="dict-item"),
        pytest.param((CreateOpportunity(),), {"value": 1}, "item", id="model-and-keywords"),
        pytest.param((CreateOpportunity(),), {"custom": {}}, "item", id="model-and-custom"),
    ],
)
async def test_bad_input_sends_nothing(
    close_server: FakeCloseServer, args: tuple[Any, ...], kwargs: dict[str, Any], field: str
) -> None:
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        with pytest.raises(InvalidInputError) as info:
            await close.opportunities.create(*args, **kwargs)
    assert info.value.field == field
    assert close_server.requests == []


# --- session ownership ---------------------------------------------------------------------------


async def test_session_is_created_lazily_and_closed(close_server: FakeCloseServer) -> None:
    client = AsyncCloseClient("k", base_url=close_server.base_url)
    assert client._transport._session is None
    await client.opportunities.create()
    session = client._transport._session
    assert session is not None
    assert not session.closed
    await client.aclose()
    assert session.closed
    await client.aclose()  # twice is fine
    assert client.closed


async def test_callers_session_is_never_closed(close_server: FakeCloseServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with AsyncCloseClient("k", base_url=close_server.base_url, session=session) as close:
            await close.opportunities.create()
        assert not session.closed


async def test_closed_callers_session_is_a_clear_error() -> None:
    session = aiohttp.ClientSession()
    await session.close()
    client = AsyncCloseClient("k", session=session)
    with pytest.raises(CloseError, match="session given to AsyncCloseClient is closed"):
        await client.opportunities.create()


async def test_use_after_close(close_server: FakeCloseServer) -> None:
    client = AsyncCloseClient("k", base_url=close_server.base_url)
    await client.aclose()
    with pytest.raises(CloseError, match="closed"):
        await client.opportunities.create()
    with pytest.raises(CloseError, match="closed"):
        async with client:
            pass


def test_client_can_be_built_outside_a_loop() -> None:
    AsyncCloseClient("k")  # nothing bound to a loop until first use


# --- error responses (aioresponses) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls", "may_have_succeeded"),
    [
        pytest.param(
            400,
            b'{"errors": [], "field-errors": {"lead": "Object does not exist."}}',
            BadRequestError,
            False,
            id="400",
        ),
        pytest.param(
            401, b'{"error": "The server could not verify"}', AuthenticationError, False, id="401"
        ),
        pytest.param(
            404,
            b'{"error": "Empty query: Opportunity matching query does not exist."}',
            NotFoundError,
            False,
            id="404",
        ),
        pytest.param(500, b'{"error": "Internal Server Error"}', ServerError, True, id="500"),
        pytest.param(502, b"<html>Bad Gateway</html>", ServerError, True, id="502-html"),
        pytest.param(504, b"", ServerError, True, id="504-empty"),
    ],
)
async def test_error_statuses(
    mock_http: aioresponses, status: int, body: bytes, cls: type, may_have_succeeded: bool
) -> None:
    mock_http.post(URL, status=status, body=body, content_type="application/json")
    async with AsyncCloseClient("k") as close:
        with pytest.raises(cls) as info:
            await close.opportunities.create(lead_id="lead_1")
    assert info.value.status_code == status
    assert info.value.may_have_succeeded is may_have_succeeded
    assert info.value.raw_body == body
    # Not retried: only one request was made, whatever the status.
    assert len(mock_http.requests[("POST", aiohttp.client.URL(URL))]) == 1


async def test_bad_request_field_errors(mock_http: aioresponses) -> None:
    mock_http.post(URL, status=400, body=b'{"errors": [], "field-errors": {"lead": "required"}}')
    async with AsyncCloseClient("k") as close:
        with pytest.raises(BadRequestError) as info:
            await close.opportunities.create()
    assert info.value.field_errors == {"lead": "required"}
    assert "lead: required" in str(info.value)


async def test_success_that_is_not_an_opportunity(mock_http: aioresponses) -> None:
    mock_http.post(URL, status=200, body=b"<html>maintenance</html>")
    async with AsyncCloseClient("k") as close:
        with pytest.raises(DecodeError) as info:
            await close.opportunities.create()
    assert info.value.body == b"<html>maintenance</html>"
    assert info.value.may_have_succeeded is True


# --- outcome unknown: never retried by default ---------------------------------------------------


@pytest.mark.parametrize("fault", ["500_after_create", "502", "503", "504", "drop"])
async def test_unknown_outcome_is_not_retried(close_server: FakeCloseServer, fault: str) -> None:
    close_server.fail_next(fault)
    async with AsyncCloseClient("k", base_url=close_server.base_url) as close:
        with pytest.raises(CloseError) as info:
            await close.opportunities.create(lead_id="lead_1")
    assert info.value.may_have_succeeded is True
    assert len(close_server.requests) == 1
    assert len(close_server.created) <= 1


async def test_timeout_after_sending_is_not_retried() -> None:
    async with FakeCloseServer(hang_seconds=5) as server:
        server.fail_next("hang")
        async with AsyncCloseClient("k", base_url=server.base_url, timeout=0.2) as close:
            with pytest.raises(APITimeoutError) as info:
                await close.opportunities.create(lead_id="lead_1")
        assert info.value.may_have_succeeded is True
        assert len(server.created) == 1
        assert len(server.requests) == 1


@pytest.mark.parametrize("fault", ["500_after_create", "drop", "504"])
async def test_unknown_outcome_retried_on_opt_in(close_server: FakeCloseServer, fault: str) -> None:
    close_server.fail_next(fault)
    client = AsyncCloseClient("k", base_url=close_server.base_url, retry_unknown_outcome=True)
    async with fast_retries(client) as close:
        opp = await close.opportunities.create(lead_id="lead_1")
    assert opp.id == close_server.created[-1]["id"]
    assert len(close_server.requests) == 2  # the duplicate risk the option documents


# --- not sent: retried ---------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_is_retried_then_raised(caplog: pytest.LogCaptureFixture) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/api/v1/"
    client = fast_retries(AsyncCloseClient("k", base_url=base, max_retries=2))
    with caplog.at_level(logging.DEBUG, logger="close_async"):
        async with client as close:
            with pytest.raises(APIConnectionError) as info:
                await close.opportunities.create()
    assert info.value.may_have_succeeded is False
    retries = [r for r in caplog.records if r.getMessage().startswith("retrying in")]
    assert len(retries) == 2
    assert "APIConnectionError" in retries[0].getMessage()
    assert re.search(r"retrying in \d+\.\d{3}s", retries[0].getMessage())


async def test_connection_error_then_success(mock_http: aioresponses) -> None:
    mock_http.post(
        URL,
        exception=aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("h", 443, True, None, None, None, None),
            OSError(111, "refused"),
        ),
    )
    mock_http.post(URL, status=200, body=b'{"id": "oppo_1"}')
    async with fast_retries(AsyncCloseClient("k")) as close:
        assert (await close.opportunities.create()).id == "oppo_1"


async def test_connect_timeout_is_retried(mock_http: aioresponses) -> None:
    mock_http.post(URL, exception=aiohttp.ConnectionTimeoutError("connect timeout"))
    mock_http.post(URL, status=200, body=b'{"id": "oppo_1"}')
    async with fast_retries(AsyncCloseClient("k")) as close:
        assert (await close.opportunities.create()).id == "oppo_1"


# Endings after sending: tests/test_endings.py, against real sockets (a mock never writes).


async def test_unexpected_exception_is_not_swallowed(mock_http: aioresponses) -> None:
    mock_http.post(URL, exception=RuntimeError("bug"))
    async with AsyncCloseClient("k") as close:
        with pytest.raises(RuntimeError, match="bug"):
            await close.opportunities.create()


# --- 429 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["modern", "semicolon", "legacy_nested", "legacy_flat", "html"])
async def test_429_dialects_are_retried_after_the_servers_wait(dialect: str) -> None:
    async with FakeCloseServer(dialect=dialect, rate_limit=100, window=0.05) as server:
        server.fail_next("429")
        async with AsyncCloseClient("k", base_url=server.base_url, max_retry_wait=5) as close:
            opp = await close.opportunities.create(lead_id="lead_1")
        assert [r.status for r in server.requests] == [429, 200]
        assert len(server.created) == 1
        assert opp.id == server.created[0]["id"]


async def test_429_without_any_wait_uses_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("close_async._transport.pacer._UNKNOWN_PAUSE", 0.01)
    async with FakeCloseServer(dialect="none") as server:
        server.fail_next("429", times=2)
        async with fast_retries(AsyncCloseClient("k", base_url=server.base_url)) as close:
            await close.opportunities.create()
        assert [r.status for r in server.requests] == [429, 429, 200]


async def test_429s_do_not_use_up_max_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 11: a 429 means "not processed", so it is retried whatever max_retries says (which
    # counts the other failures); before, 5 scripted 429s failed this create after 3 requests.
    monkeypatch.setattr("close_async._transport.pacer._UNKNOWN_PAUSE", 0.01)
    async with FakeCloseServer(dialect="none") as server:
        server.fail_next("429", times=5)
        client = fast_retries(AsyncCloseClient("k", base_url=server.base_url, max_retries=2))
        async with client as close:
            await close.opportunities.create()
        assert [r.status for r in server.requests] == [429] * 5 + [200]
        assert len(server.created) == 1


async def test_429_with_max_retries_zero_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("close_async._transport.pacer._UNKNOWN_PAUSE", 0.01)
    async with FakeCloseServer(dialect="none") as server:
        server.fail_next("429", times=5)
        client = fast_retries(AsyncCloseClient("k", base_url=server.base_url, max_retries=0))
        async with client as close:
            with pytest.raises(RateLimitError) as info:
                await close.opportunities.create()
        assert info.value.may_have_succeeded is False
        assert len(server.requests) == 1
        assert server.created == []


async def test_429_asking_for_more_than_the_cap_raises_at_once(mock_http: aioresponses) -> None:
    headers = {"RateLimit": "limit=600, remaining=0, reset=120.5"}
    mock_http.post(URL, status=429, body=b"", headers=headers)
    async with AsyncCloseClient("k", max_retry_wait=10) as close:
        with pytest.raises(RateLimitError) as info:
            await close.opportunities.create()
    assert info.value.retry_after == 120.5
    assert len(mock_http.requests[("POST", aiohttp.client.URL(URL))]) == 1


async def test_deadline_stops_retries_before_a_long_wait(mock_http: aioresponses) -> None:
    headers = {"Retry-After": "3"}
    mock_http.post(URL, status=429, body=b"<html>", headers=headers)
    async with AsyncCloseClient("k", deadline=1.0, pace_from_headers=False) as close:
        with pytest.raises(RateLimitError) as info:
            await close.opportunities.create()
    assert info.value.retry_after == 3.0


async def test_limiter_is_used(close_server: FakeCloseServer) -> None:
    calls = 0

    class Counting:
        async def acquire(self) -> None:
            nonlocal calls
            calls += 1

        async def __aenter__(self) -> None:
            await self.acquire()

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    async with AsyncCloseClient("k", base_url=close_server.base_url, limiter=Counting()) as close:
        await asyncio.gather(*(close.opportunities.create() for _ in range(3)))
    assert calls == 3


@pytest.mark.parametrize("where", ["limiter", "pacer"])
async def test_a_create_cancelled_before_sending_gives_its_connection_slot_back(
    close_server: FakeCloseServer, where: str
) -> None:
    gate = asyncio.Event()

    class Blocking:
        async def acquire(self) -> None:
            await gate.wait()

        async def __aenter__(self) -> None:
            await self.acquire()

        async def __aexit__(self, *exc_info: object) -> None:
            return None

    limiter = Blocking() if where == "limiter" else None
    async with AsyncCloseClient(
        "k", base_url=close_server.base_url, max_connections=1, limiter=limiter
    ) as close:
        if where == "pacer":  # the window is paused: acquire waits
            window = close.pacer.window(endpoint_group("POST", "opportunity/"))
            window.paused_until = asyncio.get_running_loop().time() + 30
        task = asyncio.create_task(close.opportunities.create())
        for _ in range(5):
            await asyncio.sleep(0)
        assert close._transport._slots.free == 0  # held while waiting for the limiter or the window
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert close._transport._slots.free == 1
        gate.set()
        close.pacer.window(endpoint_group("POST", "opportunity/")).paused_until = 0.0
        assert (await close.opportunities.create()).id
    assert len(close_server.created) == 1


async def test_a_limiter_that_can_pause_hears_about_a_spent_window(mock_http: aioresponses) -> None:
    pauses: list[float] = []

    class Pausing:
        async def acquire(self) -> None:
            return None

        async def __aenter__(self) -> None:
            return None

        async def __aexit__(self, *exc_info: object) -> None:
            return None

        async def pause(self, seconds: float) -> None:
            pauses.append(seconds)

    mock_http.post(
        URL,
        status=200,
        body=b'{"id": "oppo_1"}',
        headers={"RateLimit": "limit=5, remaining=3, reset=2"},
    )
    mock_http.post(
        URL,
        status=200,
        body=b'{"id": "oppo_2"}',
        headers={"RateLimit": "limit=5, remaining=0, reset=1.5"},
    )
    mock_http.post(URL, status=429, body=b"", headers={"Retry-After": "0"})
    mock_http.post(
        URL, status=429, body=b"", headers={"RateLimit": "limit=5, remaining=0, reset=0.01"}
    )
    mock_http.post(URL, status=200, body=b'{"id": "oppo_3"}')
    async with AsyncCloseClient("k", limiter=Pausing(), pace_from_headers=False) as close:
        await close.opportunities.create()
        await close.opportunities.create()
        await close.opportunities.create()
    assert pauses == [1.5, 0.01]  # remaining=0, then the 429 that named its wait (0 s is no pause)


def test_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOSE_BASE_URL", "http://127.0.0.1:9/api/v1")
    assert AsyncCloseClient("k").base_url == "http://127.0.0.1:9/api/v1/"
    monkeypatch.delenv("CLOSE_BASE_URL")
    assert AsyncCloseClient("k").base_url == "https://api.close.com/api/v1/"


async def test_deadline_counts_the_first_attempt(mock_http: aioresponses) -> None:
    from aioresponses import CallbackResult

    async def slow_429(url: Any, **kwargs: Any) -> CallbackResult:
        await asyncio.sleep(0.6)
        return CallbackResult(status=429, body=b"", headers={"Retry-After": "0.5"})

    mock_http.post(URL, callback=slow_429)
    mock_http.post(URL, status=200, body=b'{"id": "oppo_1"}')
    async with AsyncCloseClient("k", deadline=1.0, pace_from_headers=False) as close:
        with pytest.raises(RateLimitError):
            await close.opportunities.create()  # 0.6 s spent + 0.5 s wait > 1.0 s


@pytest.mark.parametrize(
    ("method", "path", "group"),
    [
        ("POST", "opportunity/", "POST opportunity"),
        ("get", "/opportunity/oppo_1/", "GET opportunity"),
        ("GET", "lead/?query=x", "GET lead"),
    ],
)
def test_the_rate_limit_group_is_named_from_method_and_resource(
    method: str, path: str, group: str
) -> None:
    assert endpoint_group(method, path) == group
