"""Helpers of the command-line tests: a FakeCloseServer on a background loop, ``invoke``, CSVs.

The CLI runs its own event loop (``asyncio.run``), so the FakeCloseServer it talks to runs on a
loop in a background thread (:func:`server_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from click.testing import CliRunner, Result

from close_async._tools.cli import main
from close_async.testing import FakeCloseServer

T = TypeVar("T")
LEAD = "lead_" + "CliTests".ljust(43, "0")


class ThreadedServer:
    """A FakeCloseServer serving from its own loop on a background thread."""

    def __init__(self, server: FakeCloseServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.base_url = server.base_url

    def call(self, fn: Callable[[FakeCloseServer], T]) -> T:
        """Run ``fn(server)`` on the server's loop (where its state changes) and return it."""

        async def run() -> T:
            return fn(self.server)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def created_notes(self) -> Counter[str]:
        return self.call(lambda s: Counter(str(o.get("note")) for o in s.created))

    def sent_notes(self) -> list[str]:
        return self.call(lambda s: [msgspec.json.decode(r.body).get("note") for r in s.requests])


@contextlib.contextmanager
def server_thread(**options: Any) -> Iterator[ThreadedServer]:
    """Start ``FakeCloseServer(**options)`` on a new loop in a daemon thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-close", daemon=True)
    thread.start()
    server = FakeCloseServer(**options)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield ThreadedServer(server, loop)
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def invoke(args: list[str], base_url: str | None = None, key: str | None = "api_test") -> Result:
    env = {"CLOSE_API_KEY": key, "CLOSE_BASE_URL": base_url}
    return CliRunner().invoke(main, args, env=env, catch_exceptions=False)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") for c in columns] for row in rows])
    return path


def csv_rows(n: int, tag: str = "row") -> list[dict[str, str]]:
    """Row i (1-based) sits on line i + 1, with the note ``{tag}-{i}``."""
    return [{"lead_id": LEAD, "value": str(100 * i), "note": f"{tag}-{i}"} for i in range(1, n + 1)]


def journal_records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_bytes().splitlines():
        with contextlib.suppress(msgspec.DecodeError):
            out.append(msgspec.json.decode(line))
    return [r for r in out if "row" in r]  # not the header line


def cli_process(args: list[str]) -> list[str]:
    """The command line of a real ``close-async`` process (its own interpreter)."""
    return [sys.executable, "-m", "close_async._tools.cli", *args]
