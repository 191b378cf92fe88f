"""The error tree, status mapping, and error bodies that must never crash error handling."""

from __future__ import annotations

import sys

import pytest

from close_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CloseError,
    DecodeError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RedirectError,
    ServerError,
)
from close_async._exceptions import error_for_status

UNAUTHORIZED = (
    b'{\n  "error": "The server could not verify that you are authorized to access the URL '
    b"requested.  You either supplied the wrong credentials (e.g. a bad password), or your "
    b"browser doesn't understand how to supply the credentials required.\"\n}"
)


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        (InvalidInputError, CloseError),
        (InvalidInputError, ValueError),
        (DecodeError, CloseError),
        (APIConnectionError, CloseError),
        (APITimeoutError, APIConnectionError),
        (APIStatusError, CloseError),
        (BadRequestError, APIStatusError),
        (AuthenticationError, APIStatusError),
        (PermissionDeniedError, APIStatusError),
        (NotFoundError, APIStatusError),
        (RateLimitError, APIStatusError),
        (ServerError, APIStatusError),
        (RedirectError, APIStatusError),
    ],
    ids=lambda c: c.__name__,
)
def test_tree(child: type, parent: type) -> None:
    assert issubclass(child, parent)


@pytest.mark.parametrize(
    ("status", "cls", "may_have_succeeded"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (402, PermissionDeniedError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (409, APIStatusError, False),
        (429, RateLimitError, False),
        (500, ServerError, True),
        (502, ServerError, True),
        (503, ServerError, True),
        (504, ServerError, True),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else None,
)
def test_status_mapping(status: int, cls: type, may_have_succeeded: bool) -> None:
    error = error_for_status(status, {"X-Test": "1"}, b"")
    assert type(error) is cls
    assert error.status_code == status
    assert error.headers == {"X-Test": "1"}
    assert error.may_have_succeeded is may_have_succeeded


@pytest.mark.parametrize(
    ("body", "message_part", "errors", "field_errors"),
    [
        pytest.param(
            b'{"errors": [], "field-errors": {"lead": "This field is required."}}',
            "lead: This field is required.",
            [],
            {"lead": "This field is required."},
            id="field-errors",
        ),
        pytest.param(
            b'{"errors": ["Bad things"], "field-errors": {}}',
            "Bad things",
            ["Bad things"],
            {},
            id="errors-list",
        ),
        pytest.param(
            b'{"error": "Invalid JSON"}', "Invalid JSON", ["Invalid JSON"], {}, id="plain-error"
        ),
        pytest.param(b"", "HTTP 400", [], {}, id="empty"),
        pytest.param(b"<html><body>Bad</body></html>", "HTTP 400", [], {}, id="html"),
        pytest.param(b'{"errors": ', "HTTP 400", [], {}, id="invalid-json"),
        pytest.param(b"\xff\xfe\x00", "HTTP 400", [], {}, id="invalid-utf8"),
        pytest.param(b"[1, 2]", "HTTP 400", [], {}, id="json-array"),
        pytest.param(b'{"field-errors": ["x"]}', "HTTP 400", [], {}, id="odd-field-errors"),
    ],
)
def test_bad_request_bodies(
    body: bytes, message_part: str, errors: list[str], field_errors: dict[str, str]
) -> None:
    error = error_for_status(400, {}, body)
    assert isinstance(error, BadRequestError)
    assert message_part in str(error)
    assert error.errors == errors
    assert error.field_errors == field_errors
    assert error.body == body.decode("utf-8", "replace")
    assert error.raw_body == body


def test_unauthorized_message_comes_from_body() -> None:
    error = error_for_status(401, {}, UNAUTHORIZED)
    assert "could not verify" in str(error)
    assert error.response_json["error"].startswith("The server")


@pytest.mark.parametrize(
    ("body", "part"),
    [
        pytest.param(
            b'{"error": {"rate_reset": 1, "message": "API call count exceeded"}}',
            "API call count exceeded",
            id="nested-legacy",
        ),
        pytest.param(
            b'{"message": "API call count exceeded for this period", "rate_reset": "0.59"}',
            "for this period",
            id="flat-legacy",
        ),
    ],
)
def test_rate_limit_messages(body: bytes, part: str) -> None:
    error = error_for_status(429, {}, body, retry_after=0.59)
    assert isinstance(error, RateLimitError)
    assert part in str(error)
    assert error.retry_after == 0.59


def test_gateway_timeout_with_empty_json_body() -> None:
    # Close's real 504: empty body, JSON content type.
    error = error_for_status(504, {"Content-Type": "application/json"}, b"")
    assert isinstance(error, ServerError)
    assert error.response_json is None
    assert str(error) == "HTTP 504"


def test_invalid_input_error_carries_field_and_value() -> None:
    error = InvalidInputError("confidence", 150, "must be between 0 and 100")
    assert (error.field, error.value, error.reason) == (
        "confidence",
        150,
        "must be between 0 and 100",
    )
    assert str(error) == "confidence=150: must be between 0 and 100"
    assert error.may_have_succeeded is False


def test_decode_error_keeps_body() -> None:
    error = DecodeError("x", body=b"x")
    assert error.body == b"x"
    assert error.may_have_succeeded is False  # the client sets it when a 2xx carried the body


def _nested(levels: int, inner: bytes = b'"boom"') -> bytes:
    return b'{"error": ' * levels + inner + b"}" * levels


@pytest.mark.parametrize("status", [400, 429, 500, 503])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_nested(3000), id="objects-3000-deep"),
        pytest.param(b"[" * 3000 + b"]" * 3000, id="arrays-3000-deep"),
        pytest.param(b'{"error": "caf\xc3"}', id="bad-utf8-in-string"),
    ],
)
def test_pathological_bodies_still_give_the_status_error(status: int, body: bytes) -> None:
    error = error_for_status(status, {}, body)
    assert error.status_code == status
    assert error.may_have_succeeded is (status >= 500)
    assert str(error) == f"HTTP {status}"
    # None where msgspec refused the body (nesting past the recursion limit, which some test
    # tools raise: then the body decodes, to no string reason); never an exception.
    assert error.response_json is None or not isinstance(error.response_json, str)
    if isinstance(error, BadRequestError):
        assert error.errors == []
        assert error.field_errors == {}


def test_nesting_past_any_recursion_limit_gives_the_status_error() -> None:
    levels = sys.getrecursionlimit() * 4 + 3000
    for body in (_nested(levels), b"[" * levels + b"]" * levels):
        error = error_for_status(503, {}, body)
        assert isinstance(error, ServerError)
        assert error.response_json is None
        assert str(error) == "HTTP 503"


def test_a_5mb_error_body_gives_a_short_message_and_keeps_the_whole_body() -> None:
    huge = "x" * 5_000_000
    body = b'{"error": "' + huge.encode() + b'", "field-errors": {"note": "too long"}}'
    error = error_for_status(400, {}, body)
    assert len(str(error)) < 1000
    assert str(error).startswith("HTTP 400: xxx")
    assert "more characters" in str(error)
    assert error.raw_body == body
    assert isinstance(error, BadRequestError)
    assert error.errors == [huge]


def test_invalid_input_messages_are_bounded_whatever_the_value() -> None:
    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    for value in ("n" * 5_000_000, deep, Unprintable(), list(range(100_000))):
        error = InvalidInputError("note", value, "is bad")
        assert len(str(error)) < 1000
        assert error.value is value  # the value itself is kept whole
        assert str(error).startswith("note=")


async def test_the_client_raises_server_error_for_a_deeply_nested_5xx_body() -> None:
    from aiohttp import web

    from close_async import AsyncCloseClient
    from tests.support.servers import serving

    seen: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        seen.append(1)
        status = 429 if len(seen) == 1 else 500  # a deep 429 body is read for its wait too
        headers = {"Retry-After": "0"}
        return web.Response(status=status, body=_nested(3000), headers=headers)

    async with serving(handle) as base_url, AsyncCloseClient("k", base_url=base_url) as close:
        with pytest.raises(ServerError) as info:
            await close.opportunities.create(lead_id="lead_x")
    assert info.value.may_have_succeeded is True
    assert len(seen) == 2  # the 429 was retried, the 500 was not
