"""Every program in examples/ runs here against FakeCloseServer (and a real Redis for the worker).

The docs include these files (or sections of them) with pymdownx.snippets, so what the docs show
is what runs here.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from close_async.testing import FakeCloseServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TESTED = {"web_backend.py", "bulk_from_csv.py", "worker.py", "test_with_fake_server.py"}


@functools.cache
def load(name: str) -> ModuleType:
    """Import ``examples/<name>.py`` (examples/ is not a package), once."""
    spec = importlib.util.spec_from_file_location(f"examples.{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


@pytest.fixture
def close_env(close_server: FakeCloseServer, monkeypatch: pytest.MonkeyPatch) -> FakeCloseServer:
    """The environment an example reads: a key, and $CLOSE_BASE_URL pointing at the fake."""
    monkeypatch.setenv("CLOSE_API_KEY", "test-key")
    monkeypatch.setenv("CLOSE_BASE_URL", close_server.base_url)
    return close_server


async def run_script(*args: str | Path) -> tuple[int, str]:
    """Run a script in a child process (the fake server keeps serving in this loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *map(str, args),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, output.decode()


# -- the aiohttp.web backend ---------------------------------------------------------------------

Post = Callable[..., Awaitable[tuple[int, Any, Any]]]


class Backend:
    """``async with Backend(**client_options) as (app, post):`` the example app, served by
    aiohttp's test server; ``post(body)`` answers ``(status, json, headers)``."""

    def __init__(self, **client_options: Any) -> None:
        self.app = load("web_backend").make_app(**client_options)
        self.client = TestClient(TestServer(self.app))

    async def __aenter__(self) -> tuple[Any, Post]:
        await self.client.start_server()

        async def post(body: Any = None, **kwargs: Any) -> tuple[int, Any, Any]:
            if body is not None:
                kwargs["json"] = body
            async with self.client.post("/opportunities", **kwargs) as response:
                return response.status, await response.json(), response.headers

        return self.app, post

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.close()


async def test_backend_creates_and_shares_one_client(close_env: FakeCloseServer) -> None:
    web_backend = load("web_backend")
    async with Backend() as (app, post):
        client = app[web_backend.CLOSE]
        bodies = [{"lead_id": f"lead_{i}", "value": 500000 + i} for i in range(20)]
        answers = await asyncio.gather(*(post(body) for body in bodies))
        assert app[web_backend.CLOSE] is client  # one client for the app's lifetime
        status, body, _ = await post(
            {"lead_id": "lead_x", "value": 1250, "value_period": "annual", "custom": {"cf_a": 1}}
        )
    assert client.closed  # closed at shutdown
    assert [a[0] for a in answers] == [201] * 20
    assert {a[1]["id"] for a in answers} | {body["id"]} == {o["id"] for o in close_env.created}
    assert (status, body["value_formatted"]) == (201, "$12.50 annually")
    assert close_env.created[-1]["custom.cf_a"] == 1


async def test_backend_bad_input_is_422_and_sends_nothing(close_env: FakeCloseServer) -> None:
    async with Backend() as (_, post):
        invalid = await post({"lead_id": "lead_1", "confidence": 150})
        unknown_field = await post({"lead_id": "lead_1", "colour": "red"})
        not_json = await post(data=b"{not json")
    assert invalid[0] == 422
    assert invalid[1]["field"] == "confidence"
    assert unknown_field[0] == 422
    assert not_json[0] == 400
    assert close_env.requests == []


async def test_backend_close_rejection_is_400_with_field_errors(close_env: FakeCloseServer) -> None:
    async with Backend() as (_, post):
        status, body, _ = await post({"lead_id": "lead_missing"})
    assert status == 400
    assert body["field_errors"] == {"lead": "Object does not exist."}


async def test_backend_rate_limit_is_503_with_retry_after(close_env: FakeCloseServer) -> None:
    close_env.fail_next("429")
    async with Backend(max_retries=0) as (_, post):
        status, _, headers = await post({"lead_id": "lead_1"})
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    assert close_env.created == []


async def test_backend_unknown_outcomes_are_502_and_504(close_env: FakeCloseServer) -> None:
    close_env.fail_next("500_after_create")
    close_env.fail_next("hang")
    async with Backend(timeout=0.2) as (_, post):
        server_error = await post({"lead_id": "lead_1"})
        timeout = await post({"lead_id": "lead_2"})
    assert server_error[0] == 502
    assert timeout[0] == 504
    for _, body, _ in (server_error, timeout):
        assert body["outcome"].startswith("unknown")
    assert len(close_env.created) == 2  # both were in fact created: hence "unknown", not "failed"


async def test_backend_refused_api_key_is_502(
    close_env: FakeCloseServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        FakeCloseServer(api_keys={"the-right-key"}) as strict,
        Backend(base_url=strict.base_url) as (_, post),
    ):
        status, body, _ = await post({"lead_id": "lead_1"})
    assert (status, body["outcome"]) == (502, "not created")
    assert "Close refused our API key" in caplog.text


# -- the bulk script -----------------------------------------------------------------------------


async def test_bulk_script_imports_the_sample_csv(
    close_env: FakeCloseServer, capsys: pytest.CaptureFixture[str]
) -> None:
    bulk = load("bulk_from_csv")
    assert await bulk.main([str(EXAMPLES / "deals.csv")]) == 0
    assert capsys.readouterr().out.endswith("3 rows: 3 created, 0 failed, 0 unknown\n")
    by_lead = {o["lead_id"]: o for o in close_env.created}
    assert by_lead["lead_1"]["custom.cf_products"] == ["CRM", "Calling"]
    assert by_lead["lead_1"]["value_formatted"] == "$5,000 monthly"
    assert by_lead["lead_2"]["date_won"] == "2024-06-30"
    assert "custom.cf_tier" not in by_lead["lead_2"]  # an empty cell is not sent


async def test_bulk_script_as_a_program_reports_every_row(
    close_env: FakeCloseServer, tmp_path: Path
) -> None:
    csv_file = tmp_path / "deals.csv"
    csv_file.write_text(
        "lead_id,value,confidence\n"
        "lead_1,1000,10\n"  # its create answers 500 after creating: unknown outcome
        "lead_2,12.50,10\n"  # not an integer: never sent
        "lead_missing,1000,10\n"  # Close answers 400
        "lead_3,2000,150\n"  # confidence out of range: never sent
        "lead_4,3000,\n"
    )
    close_env.fail_next("500_after_create")
    code, output = await run_script(EXAMPLES / "bulk_from_csv.py", csv_file, "--concurrency", "1")
    assert code == 1, output
    lines = output.splitlines()
    expected = [
        "line 2: UNKNOWN, check in Close before re-sending: HTTP 500",
        "line 3: failed, not created: value='12.50': must be an integer number of cents",
        "line 4: failed, not created: HTTP 400: lead: Object does not exist.",
        "line 5: failed, not created: confidence=150: must be between 0 and 100",
        "line 6: created oppo_",
    ]
    for line, start in zip(lines, expected, strict=False):
        assert line.startswith(start)
    assert lines[5:] == ["5 rows: 1 created, 3 failed, 1 unknown"]
    assert [o["lead_id"] for o in close_env.created] == ["lead_1", "lead_4"]


# -- the Redis worker ----------------------------------------------------------------------------


async def push_jobs(redis_url: str, jobs: list[str]) -> Any:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.delete("close:jobs", "close:created", "close:failed", "close:unknown")
    await client.rpush("close:jobs", *jobs)
    return client


async def outcomes(client: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [json.loads(r) for r in await client.lrange(f"close:{name}", 0, -1)]
        for name in ("created", "failed", "unknown")
    }


async def test_worker_processes_share_one_rate(close_env: FakeCloseServer, redis_url: str) -> None:
    worker = load("worker")
    jobs = [json.dumps({"lead_id": f"lead_{i}", "value": 100 * i}) for i in range(20)]
    client = await push_jobs(redis_url, jobs)
    try:
        start = time.monotonic()
        # Two "processes" (each with its own client and bucket) and four tasks in each.
        await asyncio.gather(
            worker.run(redis_url, tasks=4, rate=50, burst=5, drain=True),
            worker.run(redis_url, tasks=4, rate=50, burst=5, drain=True),
        )
        elapsed = time.monotonic() - start
        done = await outcomes(client)
    finally:
        await client.aclose()
    assert len(done["created"]) == 20
    assert {r["id"] for r in done["created"]} == {o["id"] for o in close_env.created}
    assert done["failed"] == done["unknown"] == []
    # 20 requests at 50/s after a burst of 5 take >= 0.3 s together: the rate was shared.
    assert elapsed >= 0.25


async def test_worker_sorts_outcomes(close_env: FakeCloseServer, redis_url: str) -> None:
    worker = load("worker")
    jobs = [
        json.dumps({"lead_id": "lead_1", "value": 1000}),  # answered 504: outcome unknown
        json.dumps({"lead_id": "lead_missing"}),  # Close answers 400
        json.dumps({"lead_id": "lead_2", "confidence": 101}),  # our own check: never sent
        json.dumps({"lead_id": "lead_3", "colour": "red"}),  # not an argument of create()
        "{not json",
        json.dumps({"lead_id": "lead_4", "custom": {"cf_tier": "Gold"}}),
    ]
    client = await push_jobs(redis_url, jobs)
    close_env.fail_next("504")
    try:
        await worker.run(redis_url, api_key="test-key", tasks=1, rate=100, burst=10, drain=True)
        done = await outcomes(client)
    finally:
        await client.aclose()
    assert [r["job"] for r in done["unknown"]] == [jobs[0]]
    assert [r["job"] for r in done["failed"]] == jobs[1:5]
    assert [r["job"] for r in done["created"]] == [jobs[5]]
    assert close_env.created[0]["custom.cf_tier"] == "Gold"
    assert len(close_env.requests) == 3  # 504, 400 and the created one; nothing retried


# -- the pytest example --------------------------------------------------------------------------


async def test_the_pytest_example_passes() -> None:
    env_keys = ("CLOSE_API_KEY", "CLOSE_BASE_URL")
    assert not any(os.environ.get(k) for k in env_keys)  # the example sets its own
    code, output = await run_script(
        "-m",
        "pytest",
        EXAMPLES / "test_with_fake_server.py",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
    )
    assert code == 0, output
    assert "3 passed" in output
