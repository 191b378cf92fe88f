"""Credentials never shown: an error's text, body and causes with the API key replaced by ``***``.

A server may echo what it was sent (an error page quoting the ``Authorization`` header, a proxy's
debug body), and aiohttp's own exceptions carry the request's headers in ``request_info``, which
their ``repr`` prints. Every ``CloseError`` the client raises passes through ``redact_error``
before anyone sees it (retry logs, bulk results, the journal, the CLI), so the secrets are:

- the API key (the Basic username), the header's base64 (with or without its ``=`` padding), the
  whole header value, and an OAuth token;
- each also with ``/`` escaped as ``\\/``, as some JSON encoders write it.

Secrets shorter than ``MIN_SECRET`` characters are not redacted: they would match ordinary words
(real Close keys are about 50 characters). ``.body``, ``.raw_body`` and ``.response_json`` are
redacted too (only the secret's own bytes change), so that logging ``exc.body`` is as safe as
logging ``exc``. An aiohttp exception in the cause chain keeps its type; its ``request_info`` is
replaced by one whose headers hide the credentials, and if its ``repr`` still shows one, it is
replaced by a stand-in ``RedactedError`` holding its redacted text.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Mapping
from typing import Any, TypeVar

from multidict import CIMultiDict, CIMultiDictProxy

from .._exceptions import APIStatusError, CloseError, DecodeError, status_message

ErrorT = TypeVar("ErrorT", bound=CloseError)

MIN_SECRET = 8
MASK = "***"
_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization"})


def secrets_of(authorization: str) -> tuple[str, ...]:
    """Every form of the credential in an ``Authorization`` header value, longest first."""
    scheme, _, token = authorization.partition(" ")
    found = {authorization, token, token.rstrip("=")}
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            user = ""
        found.add(user.removesuffix(":"))
    found |= {s.replace("/", "\\/") for s in found}
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET), key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _redact_bytes(data: bytes, secrets: tuple[str, ...]) -> bytes:
    for secret in secrets:
        raw = secret.encode("utf-8")
        if raw in data:
            data = data.replace(raw, MASK.encode())
    return data


class RedactedError(Exception):
    """Stands in a cause chain for an exception whose text showed a credential."""


def redact_error(exc: ErrorT, authorization: str) -> ErrorT:
    """``exc`` itself, with every credential in ``authorization`` removed from what it shows."""
    secrets = secrets_of(authorization)
    if not secrets:
        return exc
    message = redact(exc.message, secrets)
    if isinstance(exc, APIStatusError):
        body = _redact_bytes(exc.raw_body, secrets)
        if body != exc.raw_body:
            if exc.message == status_message(exc.status_code, exc.raw_body):
                # Built again from the redacted body: a message cut short could end in half a key.
                message = status_message(exc.status_code, body)
            exc.raw_body = body
        exc.headers = _redact_headers(exc.headers, secrets)
    elif isinstance(exc, DecodeError):
        exc.body = _redact_bytes(exc.body, secrets)
    if message != exc.message:
        exc.message = message
        exc.args = (message, *exc.args[1:])
    _redact_causes(exc, secrets)
    return exc


def _redact_headers(headers: Mapping[str, str], secrets: tuple[str, ...]) -> Mapping[str, str]:
    if not any(
        key.lower() in _SENSITIVE_HEADERS or redact(value, secrets) != value
        for key, value in headers.items()
    ):
        return headers
    # Built from pairs, not annotated: multidict 6.0.0's stubs give CIMultiDict two type
    # parameters and later releases one; inference fits both (the floors cell checks 6.0.0).
    clean = CIMultiDict(
        (key, MASK if key.lower() in _SENSITIVE_HEADERS else redact(value, secrets))
        for key, value in headers.items()
    )
    return CIMultiDictProxy(clean)


def _redact_causes(exc: BaseException, secrets: tuple[str, ...]) -> None:
    """Scrub ``__cause__`` and ``__context__`` all the way down (each exception once)."""
    seen = {id(exc)}
    node: BaseException = exc
    stack = [node]
    while stack:
        node = stack.pop()
        for attr in ("__cause__", "__context__"):
            cause = getattr(node, attr)
            if cause is None or id(cause) in seen:
                continue
            seen.add(id(cause))
            clean = cause if isinstance(cause, CloseError) else _scrub_foreign(cause, secrets)
            if clean is not cause:
                setattr(node, attr, clean)
            stack.append(clean)


def _with_headers(info: Any, headers: Mapping[str, str]) -> Any:
    """A copy of aiohttp's ``RequestInfo`` with other headers: a NamedTuple since aiohttp 3.11,
    a frozen attrs class (fields url, method, headers, real_url) in 3.10."""
    if hasattr(info, "_replace"):
        return info._replace(headers=headers)
    return type(info)(url=info.url, method=info.method, headers=headers, real_url=info.real_url)


def _scrub_foreign(exc: BaseException, secrets: tuple[str, ...]) -> BaseException:
    info: Any = getattr(exc, "request_info", None)
    if info is not None and hasattr(info, "headers"):
        try:
            clean_info = _with_headers(info, _redact_headers(info.headers, secrets))
            exc.request_info = clean_info  # type: ignore[attr-defined]
            if exc.args and exc.args[0] is info:
                exc.args = (clean_info, *exc.args[1:])
        except (AttributeError, TypeError):
            pass  # a read-only attribute: the check below replaces the exception if need be
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        with contextlib.suppress(AttributeError):
            exc.message = redact(message, secrets)  # type: ignore[attr-defined]
    exc.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in exc.args)
    try:
        shown = f"{exc!r} {exc!s}"
    except Exception:
        return exc  # an exception whose text cannot even be built shows nothing
    if redact(shown, secrets) == shown:
        return exc
    stand_in = RedactedError(f"{type(exc).__name__}: {redact(str(exc), secrets)}")
    stand_in.__cause__ = exc.__cause__
    stand_in.__context__ = exc.__context__
    stand_in.__traceback__ = exc.__traceback__
    return stand_in
