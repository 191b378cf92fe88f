"""The request body that knows whether it left, and the pooled connections it must not take.

``RequestBody`` is where "sent" is decided (``outcome.py`` reads it): it is set just before the
body is handed to the transport, and never when the body refuses a connection. It refuses, with
``NotSent`` (the request is retried at once on another connection, or after the backoff for a
new one), a connection that is closing, a pooled one idle past its server's keep-alive
(``KeepAlive``), and a pooled one with bytes or an EOF waiting to be read: the server's close
that the loop has not run yet to see.
"""

from __future__ import annotations

import asyncio
import re
import select
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp.abc import AbstractStreamWriter

from .._constants import ASSUMED_SERVER_KEEPALIVE

_KEEPALIVE_TIMEOUT = re.compile(r"(?:^|[,\s])timeout\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)


class NotSent(Exception):
    """Raised by ``RequestBody`` instead of writing: this connection must not carry the request."""


def retire_after(server_timeout: float) -> float:
    """How long we reuse an idle connection whose server closes idle ones after
    ``server_timeout`` seconds: a second less (half of it under 2 s), so that the server's
    close (its FIN) cannot cross our request on the wire."""
    return max(0.0, server_timeout - min(1.0, server_timeout / 2))


class KeepAlive:
    """When each pooled connection went idle, and when its server will close it.

    aiohttp keeps idle connections 15 s and ignores ``Keep-Alive: timeout``; servers close theirs
    after 2-5 s (gunicorn 2, uvicorn/Node/Apache 5). A request written on a connection the
    server is closing is lost, and we could not tell that from a crash after processing.
    """

    def __init__(self) -> None:
        self.default = retire_after(ASSUMED_SERVER_KEEPALIVE)
        self._deadlines: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def went_idle(self, protocol: object, headers: Mapping[str, str]) -> None:
        idle = self.default
        header = headers.get("Keep-Alive")
        if header is not None and (match := _KEEPALIVE_TIMEOUT.search(header)) is not None:
            idle = min(idle, retire_after(float(match.group(1))))
        self._deadlines[protocol] = time.monotonic() + idle

    def deadline(self, protocol: object) -> float | None:
        """When a pooled connection stops being reusable; None for one never used before."""
        return self._deadlines.get(protocol)


class RequestBody(aiohttp.BytesPayload):
    """The request body, which records whether it was written and refuses a dying connection.

    aiohttp writes the headers together with the body (3.12+), or the headers alone first
    (3.10/3.11: a server cannot act on a request whose body it lacks, but it can on a body-less
    one, which is then sent). So "sent" is set just before the body is handed to the
    transport, never after a refusal, and ``on_write`` is told at that moment (the import's
    journal learns "it left" from here, nowhere else)."""

    def __init__(
        self, value: bytes, keepalive: KeepAlive, on_write: Callable[[], None] | None = None
    ) -> None:
        super().__init__(value, content_type="application/json")
        self.keepalive = keepalive
        self.on_write = on_write
        self.sent = False
        self.stale = False
        self.protocol: object | None = None  # the connection it was written on

    async def write(self, writer: AbstractStreamWriter) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        protocol = getattr(writer, "protocol", None)
        # A body-less request (a DELETE) whose headers already left (aiohttp 3.10/3.11 writes
        # them first; 3.12+ holds them for the body: ``_headers_written``) is whole on the
        # wire: the server may act on it, so it is sent, whatever its connection looks like.
        # Refusing it here re-sent a DELETE the server had done (a 404 on the floors' CI cell).
        whole = not self._value and getattr(writer, "_headers_written", True)
        if protocol is not None and not whole:
            deadline = self.keepalive.deadline(protocol)
            # Only a pooled connection is "stale" (re-sent at once, on another): a new one that
            # is already closing is a server refusing us, which waits for the backoff.
            self.stale = deadline is not None
            transport = getattr(protocol, "transport", None)
            if transport is None or transport.is_closing():
                raise NotSent("the connection was closed before the request was written")
            if deadline is not None:
                if time.monotonic() >= deadline:
                    raise NotSent("a pooled connection idle past its keep-alive was retired")
                if _has_input(transport):
                    # An idle connection with something to read: the server's close (or a
                    # stray answer) arrived and the loop has not run since to see it.
                    raise NotSent("the server closed this pooled connection")
            self.stale = False
        self.protocol = protocol
        self.sent = True
        if self.on_write is not None:
            self.on_write()
        value = self._value if content_length is None else self._value[:content_length]
        await writer.write(value)


def _has_input(transport: asyncio.BaseTransport) -> bool:
    """Whether the socket under ``transport`` has bytes (or an EOF) waiting: one poll(0)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):  # select() cannot take descriptors past 1023
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # a socket we cannot poll is no connection to write on
