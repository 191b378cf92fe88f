"""A raw-socket HTTP/1.1 server on 127.0.0.1 whose connections end exactly as a test scripts.

Not aiohttp.web: a framework would finish what a test wants cut. Each request takes the next
``Ending`` from ``script`` (then ``ok``). The server's own record says what happened:
``received`` holds every request read in full, ``processed`` those it acted on (a create),
``connections`` counts accepted connections.

Endings, in the order a connection can end:

* ``during_write``: read 16 bytes of the request, then reset (the rest is never read).
* ``before_status``: read the whole request, act on it, close without a byte of answer.
* ``stall``: act, then wait ``slow`` seconds before answering.
* ``after_headers``: act, send the status line and headers (Content-Length promised), close.
* ``mid_body``: act, send half of the body, close.
* ``after_body``: act, send the whole response, then close the connection.
* ``ok``: act, send the whole response, keep the connection.
* ``slow_body``: act, send the headers, then wait ``slow`` seconds before the body.
* ``bad_gzip``: act, send ``Content-Encoding: gzip`` and a body that is not gzip.
* ``huge``: act, send a body of ``huge_size`` bytes (stopping if the client hangs up).

``idle`` models a server that closes idle keep-alive connections: a request that arrives on a
connection idle for longer is dropped unread, as when the server's FIN crosses it on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import msgspec

OPPORTUNITY = {"id": "oppo_1", "lead_id": "lead_1", "value": 100}


@dataclass
class Ending:
    how: str = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # None: an Opportunity for 2xx, a JSON error otherwise


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Wire:
    def __init__(
        self,
        script: list[Ending] | None = None,
        *,
        idle: float | None = None,
        keepalive_header: str | None = None,
        hold: float = 0.0,
        slow: float = 5.0,
        huge_size: int = 5 * 1024 * 1024,
        sock: socket.socket | None = None,
    ) -> None:
        self.script = list(script or [])
        self.idle = idle
        self.keepalive_header = keepalive_header
        self.hold = hold
        self.slow = slow
        self.huge_size = huge_size
        self.sock = sock
        self.received: list[Request] = []
        self.processed: list[Request] = []
        self.dropped_idle = 0
        self.arrived = 0  # requests whose first bytes arrived, read in full or not
        self.arrival = asyncio.Event()  # set at the first arrival
        self.connections = 0
        self.huge_sent = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/api/v1/"

    async def __aenter__(self) -> Wire:
        if self.sock is not None:
            self._server = await asyncio.start_server(self._serve, sock=self.sock)
        else:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        loop = asyncio.get_running_loop()
        try:
            idle_since = loop.time()
            while True:
                # Peek: an ending belongs to the next request that arrives, on any connection.
                ending = self.script[0] if self.script else Ending()
                try:
                    if ending.how == "during_write":
                        await reader.readexactly(16)
                    else:
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # closed before a request came (say, by the client's pool)
                if self.script:
                    self.script.pop(0)
                self.arrived += 1
                self.arrival.set()
                if ending.how == "during_write":
                    _reset(writer)
                    return
                request = _parse(head)
                length = int(request.headers.get("content-length", "0"))
                request.body = await reader.readexactly(length) if length else b""
                if self.idle is not None and loop.time() - idle_since > self.idle:
                    self.dropped_idle += 1  # closed as idle: the request is never read
                    _reset(writer)
                    return
                self.received.append(request)
                self.processed.append(request)
                if self.hold:
                    await asyncio.sleep(self.hold)
                if not await self._answer(writer, ending):
                    return
                idle_since = loop.time()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # a test server: its own end is no error
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, writer: asyncio.StreamWriter, ending: Ending) -> bool:
        """Send the answer ``ending`` scripts; False when the connection is now finished."""
        how = ending.how
        if how == "before_status":
            _reset(writer)
            return False
        if how == "stall":
            await asyncio.sleep(self.slow)
        body = ending.body
        if body is None:
            ok = 200 <= ending.status < 300
            body = msgspec.json.encode(OPPORTUNITY if ok else {"error": "scripted"})
        if how == "bad_gzip":
            ending.headers.setdefault("Content-Encoding", "gzip")
        size = self.huge_size if how == "huge" else len(body)
        headers = {"Content-Type": "application/json", "Content-Length": str(size)}
        if self.keepalive_header is not None:
            headers["Keep-Alive"] = self.keepalive_header
        headers.update(ending.headers)
        head = f"HTTP/1.1 {ending.status} Scripted\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        writer.write(head.encode() + b"\r\n")
        if how == "after_headers":
            await writer.drain()
            _reset(writer)
            return False
        if how == "mid_body":
            writer.write(body[: len(body) // 2])
            await writer.drain()
            _reset(writer)
            return False
        if how == "slow_body":
            await writer.drain()
            await asyncio.sleep(self.slow)
        if how == "huge":
            chunk = b"x" * 65536
            while self.huge_sent < size:
                writer.write(chunk)
                await writer.drain()
                self.huge_sent += len(chunk)
            return False
        writer.write(body)
        await writer.drain()
        return how not in ("after_body",)


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers, b"")


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a server that gives up on a connection does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
