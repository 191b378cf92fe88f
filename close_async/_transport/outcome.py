"""How a request ends on the wire, and what that ending says about its outcome: the one rule.

``may_have_succeeded`` is True exactly when the request was sent and no definite answer came back.
Two facts decide it, and nothing else:

* ``sent``: whether a byte of the request body was handed to the socket. ``RequestBody`` records
  it at the moment of writing. A failure before that (no connection, a wait for a pooled
  connection that timed out, a pooled connection that was already closing or idle past its
  server's keep-alive) means the server cannot have seen the request: it is retried.
* the status line: once it has arrived the server has answered, whatever happens to the body
  after it (cut off, badly gzipped, slow). A 429 is then retried, a 4xx is a definite failure,
  a 5xx stays unknown. A 2xx whose body never arrived did happen.

``exchange`` runs one attempt on the wire; ``classify(exc, sent=..., method=...)`` turns the
exception it ended with into its ``CloseError``, ``response_error`` does the same for an error
response. Safe methods (GET, HEAD, OPTIONS) change nothing on the server, so for them nothing
"may have succeeded" and every ending without an answer is retried; PUT and DELETE are
idempotent, so the client retries them even when their outcome is unknown.

Redirects are never followed: a 3xx on a create is an error naming ``Location``. Following one
would re-send the body to wherever the server points (or, for 301/302/303, turn it into a GET).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import aiohttp

from .._constants import MAX_ERROR_BODY
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CloseError,
    RedirectError,
    error_for_status,
)
from .body import KeepAlive, NotSent, RequestBody
from .ratelimit import retry_after

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENT_METHODS = SAFE_METHODS | {"PUT", "DELETE"}


def classify(
    exc: BaseException,
    *,
    sent: bool,
    method: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    retry_after: float | None = None,
    url: str | None = None,
) -> CloseError:
    """The error for an attempt that ended with ``exc``: the whole rule, read top to bottom.

    ``status``/``headers``/``body`` are what arrived before the failure (a status line means the
    server answered). Raises ``exc`` itself when it is not a network failure (a bug)."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if status is not None and not 200 <= status < 300:
        # The status is the answer; the body after it is only detail.
        return response_error(
            status, headers or {}, body, method=method, retry_after=retry_after, url=url
        )
    unknown = sent and method not in SAFE_METHODS
    if status is not None:
        return APIConnectionError(
            f"HTTP {status} arrived but its body did not ({what})"
            + ("; the request was processed" if unknown else ""),
            may_have_succeeded=unknown,
        )
    timeout = isinstance(exc, asyncio.TimeoutError)
    if not isinstance(exc, (aiohttp.ClientError, OSError, NotSent)) and not timeout:
        raise exc
    if not sent:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return APITimeoutError(f"timed out connecting: {exc}")
        if timeout:
            return APITimeoutError("timed out before the request was sent (no free connection)")
        if isinstance(exc, aiohttp.ClientConnectorError):
            return APIConnectionError(f"could not connect: {exc}")
        return APIConnectionError(f"the request was not sent ({what})")
    if timeout:
        return APITimeoutError(
            "timed out waiting for the response"
            + ("; the request may have been processed" if unknown else ""),
            may_have_succeeded=unknown,
        )
    return APIConnectionError(
        f"connection lost after sending ({what})"
        + ("; the request may have been processed" if unknown else ""),
        may_have_succeeded=unknown,
    )


# What each redirect status says about a request that was not followed there.
_REDIRECTS = {
    303: (True, "the server says it processed the request (303 See Other)"),
    307: (False, "the server did not process it (307: repeat it at Location)"),
    308: (False, "the server did not process it (308: repeat it at Location)"),
}
_REDIRECT_UNKNOWN = (True, "a 301/302 may also follow a processed request: it may have been")
_REDIRECT_UPGRADE = (False, "the same URL on https: the TLS front answered, it was not processed")


def _upgraded(url: str | None, location: str | None) -> bool:
    """Whether ``location`` is ``url`` itself (host, path and query) moved from http to https.

    A 301/302 says "the target resource" is (permanently or for now) at another URI (RFC 9110
    15.4.2-3): the resource that would create the opportunity is not here. Moving only the
    scheme to https is what a TLS front (an ingress or load balancer) answers to plain http,
    before any application sees the request. A processed POST answered with a 302
    (post/redirect/get) points to what it made, a different path; a redirect to another host
    is left "may have succeeded": a server can create, then send clients elsewhere."""
    if url is None or not location:
        return False
    here, there = urlsplit(url), urlsplit(location)
    return (
        (here.scheme, there.scheme.lower()) == ("http", "https")
        and here.hostname == there.hostname
        and (here.path, here.query) == (there.path, there.query)
    )


def response_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    retry_after: float | None = None,
    url: str | None = None,
) -> APIStatusError:
    """The error for a complete (or cut-off) non-2xx response to ``url``."""
    if 300 <= status < 400:
        location = headers.get("Location")
        processed, meaning = _REDIRECTS.get(status, _REDIRECT_UNKNOWN)
        if status in (301, 302) and _upgraded(url, location):
            processed, meaning = _REDIRECT_UPGRADE
        return RedirectError(
            f"HTTP {status} redirect to {location!r} not followed (a {method} is never re-sent "
            f"elsewhere; check base_url): {meaning}",
            status_code=status,
            headers=headers,
            body=body,
            may_have_succeeded=processed and method not in SAFE_METHODS,
        )
    error = error_for_status(status, headers, body, retry_after=retry_after)
    if method in SAFE_METHODS:
        error.may_have_succeeded = False
    return error


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str],
    timeout: aiohttp.ClientTimeout,
    keepalive: KeepAlive,
    max_refusals: int,
    on_write: Callable[[], None] | None = None,
) -> tuple[int | None, Mapping[str, str], bytes, CloseError | None]:
    """One HTTP exchange: ``(status, headers, body, failure)``, classified by ``classify``.

    A pooled connection that must not carry the request (closing, or idle past its server's
    keep-alive) is refused before a byte is written and the request goes out at once on
    another; each refusal retires one pooled connection, so this ends. ``on_write`` is called
    when a body byte is handed to the socket (see ``RequestBody``)."""
    refusals = 0
    while True:
        request_body = RequestBody(body, keepalive, on_write)
        status: int | None = None
        answer: Mapping[str, str] = {}
        received = bytearray()
        try:
            async with session.request(
                method,
                url,
                data=request_body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                status, answer = response.status, response.headers
                if 200 <= status < 300:
                    payload = await response.read()
                else:
                    await read_capped(response, received, MAX_ERROR_BODY)
                    payload = bytes(received)
                if request_body.protocol is not None:  # the connection it went on
                    keepalive.went_idle(request_body.protocol, answer)
            return status, answer, payload, None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if request_body.stale and refusals < max_refusals:
                refusals += 1
                continue
            error = classify(
                exc,
                sent=request_body.sent,
                method=method,
                status=status,
                headers=answer,
                body=bytes(received),
                retry_after=retry_after(answer, bytes(received)) if status == 429 else None,
                url=url,
            )
            error.__cause__ = exc
            return status, answer, bytes(received), error


async def read_capped(response: aiohttp.ClientResponse, into: bytearray, limit: int) -> None:
    """Read at most ``limit`` bytes of an error body into ``into`` (kept if the read fails).
    The rest is left unread: aiohttp then closes the connection instead of reusing it."""
    content = response.content
    while len(into) < limit:
        chunk = await content.read(limit - len(into))
        if not chunk:
            return
        into += chunk
