"""Shared fixtures: no Close credentials from the environment, aioresponses, a FakeCloseServer,
a redis-server; the payload fixtures are in tests/resources/opportunities/conftest.py."""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import aiohttp
import pytest
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core
from hypothesis import Phase, settings

from close_async.testing import FakeCloseServer
from tests.support.servers import RedisServer, server_executable

# HYPOTHESIS_PROFILE=ci (.ci/run's matrix): no shrinking, so a failing property fails in seconds
# instead of shrinking for minutes on a slow cell; the failure prints a blob for
# @reproduce_failure, and the default profile shrinks it on a developer's machine.
settings.register_profile(
    "ci", phases=[phase for phase in Phase if phase is not Phase.shrink], print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _no_close_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own Close credentials or API root."""
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSE_BASE_URL", raising=False)


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


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis server for one test. None to be found fails the test: never skipped."""
    executable = server_executable()
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
