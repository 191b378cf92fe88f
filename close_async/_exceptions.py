"""Every error close-async raises, one tree rooted at ``CloseError``.

```
CloseError                       base; every error has .may_have_succeeded: bool
├── InvalidInputError            also a ValueError: our own check failed, nothing was sent
├── DecodeError                  a 2xx body that is not an Opportunity (.body keeps it)
├── APIConnectionError           no HTTP response (connect failure, reset, protocol error)
│   └── APITimeoutError          the attempt timed out
└── APIStatusError               an HTTP error response: .status_code, .headers, .body
    ├── RedirectError            3xx: never followed; .location
    ├── BadRequestError          400: .errors (list), .field_errors (dict)
    ├── AuthenticationError      401
    ├── PermissionDeniedError    403 (and 402: plan limit)
    ├── NotFoundError            404
    ├── RateLimitError           429 after the retries ran out: .retry_after
    └── ServerError              5xx
```

``may_have_succeeded`` is True exactly when the server may have created the opportunity: the
request left and no definite answer came back (a timeout or a lost connection after sending, a 5xx).
Such a create is never retried by default, because Close has no idempotency keys.
"""

from __future__ import annotations

import datetime as dt
import reprlib
from collections.abc import Mapping
from typing import Any

import msgspec

_json_decoder = msgspec.json.Decoder()
# What msgspec can raise on bad input, for every decode on the error path (error bodies, 429
# bodies, failed responses): besides its own errors, invalid UTF-8 inside a string surfaces as
# UnicodeDecodeError and nesting deeper than ~1,000 levels as RecursionError.
MSGSPEC_DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
# Messages stay short whatever the body: a 5 MB error body must not become a 5 MB message (or
# journal line). The whole body stays on ``.body``.
MAX_DETAIL = 500
MAX_VALUE_REPR = 200


_repr = reprlib.Repr()  # bounded in length and depth, and safe from a repr() that raises
_repr.maxstring = _repr.maxother = MAX_VALUE_REPR
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = _repr.maxfrozenset = 20
_repr.maxlevel = 4


def short_repr(value: object) -> str:
    """``repr(value)`` for a message: at most about ``MAX_VALUE_REPR`` characters."""
    try:
        return bounded(_repr.repr(value), MAX_VALUE_REPR)
    except Exception:  # reprlib catches a failing repr of instances, not of every builtin
        return f"<{type(value).__name__} object>"


def bounded(text: str, limit: int = MAX_DETAIL) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class CloseError(Exception):
    """Base of every close-async error."""

    may_have_succeeded: bool = False
    """True when the request may have reached Close and done its work (a create
    may exist): check before sending it again. False: nothing was created."""
    sent_at: dt.datetime | None = None
    """When the request left (its first body byte handed to the socket), tz-aware UTC: set on
    every error of a create with ``may_have_succeeded``, for ``opportunities.reconcile``."""

    def __init__(self, message: str, *, may_have_succeeded: bool = False) -> None:
        # A lone surrogate (from the caller's input, or a JSON "\ud800" escape in an error body)
        # would make the message itself unwritable to a journal, a log file or a terminal.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.message = message
        """The error's message, as ``str(error)``."""
        self.may_have_succeeded = may_have_succeeded


class InvalidInputError(CloseError, ValueError):
    """Our own validation failed; nothing was sent."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"{field}={short_repr(value)}: {bounded(reason)}")
        self.field = field
        """The field at fault: ``value``, ``custom.cf_tier``, ``attachments[0].url``."""
        self.value = value
        """The value that was refused."""
        self.reason = reason
        """Why it was refused, in words."""


class DecodeError(CloseError):
    """A success response whose body is not an Opportunity. ``body`` keeps the raw bytes."""

    def __init__(self, message: str, *, body: bytes) -> None:
        super().__init__(message)
        self.body = body
        """The raw response body."""


class APIConnectionError(CloseError):
    """No HTTP response came back: connection refused or lost, DNS, TLS, protocol errors."""


class APITimeoutError(APIConnectionError):
    """The attempt took longer than the client's ``timeout``."""


class APIStatusError(CloseError):
    """Close answered with an error status. Carries the status, headers and raw body."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes,
        may_have_succeeded: bool = False,
    ) -> None:
        super().__init__(message, may_have_succeeded=may_have_succeeded)
        self.status_code = status_code
        """The HTTP status code."""
        self.headers = headers
        """The response headers (case-insensitive)."""
        self.raw_body = body
        """The response body as bytes (at most its first 64 KiB)."""

    @property
    def body(self) -> str:
        """The response body as text (undecodable bytes replaced)."""
        return self.raw_body.decode("utf-8", "replace")

    @property
    def response_json(self) -> Any:
        """The body parsed as JSON, or None when it is empty, HTML or otherwise not JSON."""
        try:
            return _json_decoder.decode(self.raw_body)
        except MSGSPEC_DECODE_ERRORS:
            return None


class RedirectError(APIStatusError):
    """3xx: redirects are never followed (a create would be re-sent elsewhere or turned into a
    GET). ``may_have_succeeded`` is False only for 307/308, which say the request was not
    processed; 303 says it was, and 301/302 may follow a processed request."""

    @property
    def location(self) -> str | None:
        """The ``Location`` header: where the server redirected to (never followed)."""
        return self.headers.get("Location")


class BadRequestError(APIStatusError):
    """400: Close rejected the request. ``errors`` and ``field_errors`` say why."""

    @property
    def errors(self) -> list[Any]:
        """Close's ``errors`` list (its ``error`` string as a list of one); empty if neither."""
        data = self.response_json
        if isinstance(data, dict):
            errors = data.get("errors")
            if isinstance(errors, list):
                return errors
            if isinstance(data.get("error"), str):
                return [data["error"]]
        return []

    @property
    def field_errors(self) -> dict[str, Any]:
        """Close's ``field-errors``: a message by field name; empty if none."""
        data = self.response_json
        if isinstance(data, dict) and isinstance(data.get("field-errors"), dict):
            return dict(data["field-errors"])
        return {}


class AuthenticationError(APIStatusError):
    """401: the API key or OAuth token was refused."""


class PermissionDeniedError(APIStatusError):
    """403, or 402 when the organization's plan does not allow the call."""


class NotFoundError(APIStatusError):
    """404."""


class RateLimitError(APIStatusError):
    """429 after the retries ran out, or a wait longer than the client's cap."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after
        """The seconds the server asked us to wait, if it said."""


class ServerError(APIStatusError):
    """5xx: the outcome of a create is unknown, so ``may_have_succeeded`` is True."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PermissionDeniedError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def error_for_status(
    status: int, headers: Mapping[str, str], body: bytes, *, retry_after: float | None = None
) -> APIStatusError:
    """The error for an HTTP error response, its message taken from the body when it has one."""
    cls = _STATUS_ERRORS.get(status, ServerError if status >= 500 else APIStatusError)
    kwargs: dict[str, Any] = {
        "status_code": status,
        "headers": headers,
        "body": body,
        "may_have_succeeded": status >= 500,
    }
    if cls is RateLimitError:
        return RateLimitError(status_message(status, body), retry_after=retry_after, **kwargs)
    return cls(status_message(status, body), **kwargs)


def status_message(status: int, body: bytes) -> str:
    """``HTTP <status>``, then the reason the body gives, if any, cut to ``MAX_DETAIL``."""
    detail = _summary(body)
    return f"HTTP {status}" + (f": {bounded(detail)}" if detail else "")


def _summary(body: bytes) -> str:
    """A one-line reason from Close's JSON error shapes; empty for bodies that are not JSON."""
    try:
        data = _json_decoder.decode(body)
    except MSGSPEC_DECODE_ERRORS:
        return ""
    if not isinstance(data, dict):
        return ""
    parts: list[str] = []
    error = data.get("error")
    if isinstance(error, str):
        parts.append(error)
    elif isinstance(error, dict) and isinstance(error.get("message"), str):
        parts.append(error["message"])
    if isinstance(data.get("message"), str):
        parts.append(data["message"])
    if isinstance(data.get("errors"), list):
        parts.extend(str(e) for e in data["errors"])
    field_errors = data.get("field-errors")
    if isinstance(field_errors, dict):
        parts.extend(f"{k}: {v}" for k, v in field_errors.items())
    return "; ".join(parts)
