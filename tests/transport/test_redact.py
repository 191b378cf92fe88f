"""Credentials never shown: servers that echo the API key, and aiohttp errors that carry it."""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.client_exceptions import ClientResponseError
from aiohttp.client_reqrep import RequestInfo
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from close_async import (
    APIConnectionError,
    APIStatusError,
    AsyncCloseClient,
    CloseError,
    Opportunity,
    ServerError,
)
from close_async._tools.cli_summary import print_summary
from close_async._tools.importer import run_import
from close_async._tools.journal import Journal
from close_async._transport.redact import MASK, redact_error, secrets_of
from tests.support.servers import serving

API_KEY = "api_4Pq2kR9sT7vW1xY3zA5bC7dE9fG1hJ3kL5mN7pQ9rS1tU3vW5"
OAUTH_TOKEN = "oa2_" + "Zx9/Yw8+Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7"
LEAD = "lead_" + "RedactTests".ljust(43, "0")


def basic_b64(key: str) -> str:
    return base64.b64encode(f"{key}:".encode()).decode()


def shown(exc: BaseException) -> str:
    """Everything a user, a log or a traceback could show of ``exc``."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, APIStatusError):
        parts += [exc.body, repr(exc.response_json), repr(dict(exc.headers))]
    node: BaseException | None = exc
    while node is not None:
        parts += [repr(node), str(node)]
        node = node.__cause__ or node.__context__
    return "\n".join(parts)


def leaks(text: str, *secrets: str) -> list[str]:
    return [s for s in secrets if s in text]


@contextlib.asynccontextmanager
async def echo_server(status: int, *, then_ok: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Answers ``status`` with a body quoting what it was sent: the Authorization header, the
    key it decodes from it, and (in a header) the token again. With ``then_ok``, answers 200 to
    every request after the first."""
    stats: dict[str, Any] = {"seen": 0}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        stats["seen"] += 1
        if then_ok and stats["seen"] > 1:
            body = msgspec.json.encode({"id": "oppo_1", "lead_id": LEAD})
            return web.Response(body=body, content_type="application/json")
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        key = base64.b64decode(token).decode().rstrip(":") if scheme == "Basic" else token
        body = msgspec.json.encode(
            {
                "error": f"Invalid credentials: {auth!r} (key {key})",
                "field-errors": {"api_key": f"{key} is revoked"},
                "debug": {"token": token, "escaped": token.replace("/", "\\/")},
            }
        )
        headers = {"Retry-After": "0", "X-Debug-Auth": auth}
        return web.Response(
            status=status, body=body, headers=headers, content_type="application/json"
        )

    async with serving(handle) as base_url:
        stats["base_url"] = base_url
        yield stats


CREDENTIALS = [
    pytest.param({"api_key": API_KEY}, (API_KEY, basic_b64(API_KEY)), id="api_key"),
    pytest.param(
        {"oauth_token": OAUTH_TOKEN},
        (OAUTH_TOKEN, OAUTH_TOKEN.replace("/", "\\/")),
        id="oauth_token",
    ),
]


@pytest.mark.parametrize(("auth", "secrets"), CREDENTIALS)
@pytest.mark.parametrize("status", [400, 401, 402, 404, 409, 500, 503])
async def test_an_echoed_credential_is_redacted_from_every_text_of_the_error(
    auth: dict[str, str], secrets: tuple[str, ...], status: int
) -> None:
    async with (
        echo_server(status) as server,
        AsyncCloseClient(base_url=server["base_url"], max_retries=0, **auth) as close,
    ):
        with pytest.raises(APIStatusError) as info:
            await close.opportunities.create(lead_id=LEAD)
    exc = info.value
    assert exc.status_code == status
    assert leaks(shown(exc), *secrets) == []
    assert leaks(repr(exc.raw_body), *secrets) == []
    assert MASK in str(exc)  # the rest of the message is kept
    assert "Invalid credentials" in exc.message
    assert exc.response_json["field-errors"]["api_key"] == f"{MASK} is revoked"
    assert exc.headers["X-Debug-Auth"].endswith(MASK)


@pytest.mark.parametrize(("auth", "secrets"), CREDENTIALS)
async def test_retry_logs_never_show_an_echoed_credential(
    auth: dict[str, str], secrets: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="close_async")
    async with (
        echo_server(429, then_ok=True) as server,
        AsyncCloseClient(base_url=server["base_url"], **auth) as close,
    ):
        opp = await close.opportunities.create(lead_id=LEAD)
    assert isinstance(opp, Opportunity)
    assert server["seen"] == 2
    assert "retrying" in caplog.text
    assert "Invalid credentials" in caplog.text  # the 429's reason is logged...
    assert leaks(caplog.text, *secrets) == []  # ...without the key


async def test_bulk_results_and_refusal_copies_are_redacted() -> None:
    secrets = (API_KEY, basic_b64(API_KEY))
    async with (
        echo_server(401) as server,
        AsyncCloseClient(API_KEY, base_url=server["base_url"]) as close,
    ):
        rows = [{"lead_id": LEAD, "note": f"row-{i}"} for i in range(30)]
        results = await close.opportunities.create_many(rows, concurrency=3)
    assert all(isinstance(r, CloseError) for r in results)
    assert all(leaks(shown(r), *secrets) == [] for r in results)


async def test_journal_output_and_cli_summary_never_show_an_echoed_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = (API_KEY, basic_b64(API_KEY))
    path = tmp_path / "rows.jsonl"
    path.write_text(msgspec.json.encode({"lead_id": LEAD, "note": "x"}).decode() + "\n")
    journal_path = tmp_path / "journal.jsonl"
    output = io.StringIO()
    for status in (400, 500):  # a definite failure, then an unknown outcome
        async with (
            echo_server(status) as server,
            AsyncCloseClient(API_KEY, base_url=server["base_url"]) as client,
        ):
            with Journal(journal_path) as journal:
                summary = await run_import(
                    client, path, journal=journal, concurrency=2, output=output, retry_unknown=True
                )
        print_summary(summary, dry_run=False, journal=journal_path)
        assert summary.failed or summary.unknown
    written = journal_path.read_text() + output.getvalue() + capsys.readouterr().out
    assert "Invalid credentials" in written
    assert leaks(written, *secrets) == []


@contextlib.asynccontextmanager
async def redirect_loop() -> AsyncIterator[str]:
    """Every request is sent back to itself with a 307 (which keeps the method and body)."""

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPTemporaryRedirect(str(request.url))

    async with serving(handle) as base_url:
        yield base_url


async def test_a_redirect_failure_never_shows_the_authorization_header() -> None:
    # Following redirects, aiohttp raised TooManyRedirects, whose repr prints the request's
    # headers; whatever the client makes of a redirect, no text of the error shows the key.
    async with (
        redirect_loop() as base_url,
        AsyncCloseClient(API_KEY, base_url=base_url, max_retries=0) as close,
    ):
        with pytest.raises(CloseError) as info:
            await close.opportunities.create(lead_id=LEAD)
    assert leaks(shown(info.value), API_KEY, basic_b64(API_KEY)) == []


def _request_info(authorization: str) -> RequestInfo:
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": authorization, "Accept": "x"}))
    url = URL("https://api.close.com/api/v1/opportunity/")
    return RequestInfo(url, "POST", headers, url)


def test_aiohttp_causes_keep_their_type_without_the_header() -> None:
    authorization = f"Basic {basic_b64(API_KEY)}"
    cause = ClientResponseError(_request_info(authorization), (), status=307, message="loop")
    assert basic_b64(API_KEY) in repr(cause)  # what aiohttp shows by itself
    exc = APIConnectionError("connection lost", may_have_succeeded=True)
    exc.__cause__ = cause
    assert redact_error(exc, authorization) is exc
    assert exc.__cause__ is cause  # still the aiohttp exception users may inspect
    assert cause.request_info.headers["Authorization"] == MASK
    assert cause.request_info.headers["Accept"] == "x"
    assert leaks(shown(exc), API_KEY, basic_b64(API_KEY)) == []


def test_a_cause_that_still_shows_a_secret_is_replaced_by_a_stand_in() -> None:
    class Stubborn(Exception):
        def __repr__(self) -> str:
            return f"Stubborn(sent {API_KEY})"

    exc = ServerError("HTTP 500", status_code=500, headers={}, body=b"")
    exc.__cause__ = Stubborn()
    redact_error(exc, f"Basic {basic_b64(API_KEY)}")
    assert type(exc.__cause__).__name__ == "RedactedError"
    assert "Stubborn" in str(exc.__cause__)
    assert leaks(shown(exc), API_KEY) == []


def test_secrets_of_each_credential_form() -> None:
    b64 = basic_b64(API_KEY)
    assert set(secrets_of(f"Basic {b64}")) >= {API_KEY, b64, b64.rstrip("="), f"Basic {b64}"}
    assert OAUTH_TOKEN in secrets_of(f"Bearer {OAUTH_TOKEN}")
    # A key short enough to be an ordinary word is not redacted (it would mangle messages).
    assert "k" not in secrets_of(f"Basic {basic_b64('k')}")
