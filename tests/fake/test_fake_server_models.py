"""FakeCloseServer's rate-limit models: the limiter on explicit times, the headers over sockets."""

from __future__ import annotations

import ast
import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from close_async import testing
from close_async._fake.limits import Limiter
from close_async.testing import ALGORITHMS, PRESETS, FakeCloseServer, RateLimitModel

BEARER = {"Authorization": "Bearer key-a"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(
    session: aiohttp.ClientSession, server: FakeCloseServer, key: str = "key-a"
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {key}"}
    async with session.post(server.base_url + "opportunity/", json={}, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def run(limiter: Limiter, times: list[float], key: str = "k") -> list[tuple[bool, int, float]]:
    """(admitted, remaining, reset) for one request of ``key`` at each time."""
    return [
        (v.admitted, v.remaining, round(v.reset, 6)) for v in (limiter.check(key, t) for t in times)
    ]


# -- the limiter on explicit times ---------------------------------------------------------


def test_fixed_window_admits_limit_per_window_and_resets_at_its_end() -> None:
    limiter = Limiter(RateLimitModel(limit=2, window=1.0))
    assert run(limiter, [0.1, 0.2, 0.3, 1.0, 1.5]) == [
        (True, 1, 0.9),
        (True, 0, 0.8),
        (False, 0, 0.7),  # the 429 consumed nothing: the next window starts fresh
        (True, 1, 1.0),
        (True, 0, 0.5),
    ]


def test_sliding_window_frees_one_slot_when_the_oldest_admission_leaves() -> None:
    limiter = Limiter(RateLimitModel(limit=2, window=1.0, algorithm="sliding"))
    assert run(limiter, [0.0, 0.5, 0.9, 1.0, 1.1, 1.5]) == [
        (True, 1, 1.0),
        (True, 0, 0.5),
        (False, 0, 0.1),  # reset: when the admission at 0.0 leaves
        (True, 0, 0.5),  # 0.0 left; 0.5 and 1.0 are in the log
        (False, 0, 0.4),  # a fixed window would admit here: 1.1 is in a new window
        (True, 0, 0.5),
    ]


def test_token_bucket_429_reset_is_the_time_to_the_next_token() -> None:
    limiter = Limiter(RateLimitModel(limit=4, window=1.0, algorithm="token_bucket"))
    assert run(limiter, [0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.25, 0.3]) == [
        (True, 3, 0.25),  # successes: the time until the bucket is full again
        (True, 2, 0.5),
        (True, 1, 0.75),
        (True, 0, 1.0),
        (False, 0, 0.25),  # 429s: the time until the next token
        (False, 0, 0.15),
        (True, 0, 1.0),
        (False, 0, 0.2),
    ]


def test_hidden_limit_answers_429_while_remaining_is_positive() -> None:
    limiter = Limiter(RateLimitModel(limit=5, window=1.0, hidden_limit=2))
    verdicts = [limiter.check("k", 0.1) for _ in range(3)]
    assert [(v.admitted, v.limit, v.remaining) for v in verdicts] == [
        (True, 5, 4),
        (True, 5, 3),
        (False, 5, 3),
    ]


def test_schedule_changes_the_announced_and_enforced_limit_mid_run() -> None:
    model = RateLimitModel(limit=3, window=1.0, schedule=[(4.0, 2), (2.0, 1)])  # type: ignore[arg-type]
    assert model.schedule == ((2.0, 1), (4.0, 2))
    assert [model.limit_at(t) for t in (0.0, 1.9, 2.0, 3.9, 4.0, 9.0)] == [3, 3, 1, 1, 2, 2]
    limiter = Limiter(model)
    assert [limiter.check("k", 0.5).admitted for _ in range(4)] == [True] * 3 + [False]
    assert [limiter.check("k", 2.5).admitted for _ in range(2)] == [True, False]
    assert limiter.check("k", 4.5).limit == 2


def test_scope_key_counts_each_key_and_organization_shares_one_limit() -> None:
    per_key = Limiter(RateLimitModel(limit=1, window=1.0))
    shared = Limiter(RateLimitModel(limit=1, window=1.0, scope="organization"))
    assert [per_key.check(k, 0.1).admitted for k in ("a", "b", "a")] == [True, True, False]
    assert [shared.check(k, 0.1).admitted for k in ("a", "b", "a")] == [True, False, False]


def test_peeking_consumes_nothing() -> None:
    limiter = Limiter(RateLimitModel(limit=1, window=1.0))
    assert limiter.check("k", 0.1, consume=False).remaining == 1
    assert limiter.check("k", 0.2).admitted
    assert not limiter.check("k", 0.3, consume=False).admitted


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    limit=st.integers(1, 5),
    gaps=st.lists(st.floats(0.0, 0.4), min_size=1, max_size=60),
)
def test_no_model_admits_more_than_its_limit_allows(
    algorithm: str, limit: int, gaps: list[float]
) -> None:
    window = 1.0
    model = RateLimitModel(limit=limit, window=window, algorithm=algorithm)  # type: ignore[arg-type]
    limiter, now, admitted = Limiter(model), 0.0, []
    for gap in gaps:
        now += gap
        if limiter.check("k", now).admitted:
            admitted.append(now)
    for start in admitted:  # any window-long span starting at an admission
        inside = sum(1 for t in admitted if start <= t < start + window)
        if algorithm == "fixed":
            inside = sum(1 for t in admitted if t // window == start // window)
        bound = 2 * limit if algorithm == "token_bucket" else limit  # burst + refill
        assert inside <= bound


# -- the model's options -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"limit": 0}, "rate_limit", id="limit"),
        pytest.param({"hidden_limit": 0}, "hidden_limit", id="hidden_limit"),
        pytest.param({"schedule": ((1.0, 0),)}, "schedule", id="schedule_limit"),
        pytest.param({"schedule": ((-1.0, 2),)}, "schedule times", id="schedule_time"),
        pytest.param({"window": 0}, "window", id="window"),
        pytest.param({"algorithm": "leaky"}, "algorithm", id="algorithm"),
        pytest.param({"dialect": "klingon"}, "dialect", id="dialect"),
        pytest.param({"reset_format": "hex"}, "reset_format", id="reset_format"),
        pytest.param({"scope": "planet"}, "scope", id="scope"),
        pytest.param({"announced_reset": -1.0}, "announced_reset", id="announced_reset"),
    ],
)
def test_model_rejects_bad_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RateLimitModel(**{"limit": 2, **options})


def test_presets_admit_the_given_limit_and_name_unknown_ones() -> None:
    for name in PRESETS:
        model = RateLimitModel.preset(name, limit=10, window=0.5)
        assert (model.enforced_at(0.0), model.window) == (10, 0.5), name
    hidden = RateLimitModel.preset("hidden", limit=10)
    assert (hidden.limit, hidden.hidden_limit) == (20, 10)
    assert RateLimitModel.preset("changing", limit=10).enforced_at(3.5) == 5
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        RateLimitModel.preset("nope", limit=1)


def test_server_takes_window_and_dialect_from_the_model_only() -> None:
    with pytest.raises(ValueError, match="belong in the RateLimitModel"):
        FakeCloseServer(rate_limit=RateLimitModel(limit=1), window=2.0)
    assert FakeCloseServer().rate_limit_model is None
    assert FakeCloseServer(rate_limit=3, window=2.0).rate_limit_model == RateLimitModel(
        limit=3, window=2.0
    )


def test_the_fake_server_imports_nothing_of_the_sdk() -> None:
    package = Path(testing.__file__).parent.parent
    files = [package / "testing" / "__init__.py", *sorted((package / "_fake").glob("*.py"))]
    assert len(files) >= 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.level:  # relative: only within _fake/ itself
                    assert path.parent.name in ("_fake", "testing"), (path.name, node.module)
                    if path.parent.name == "_fake":
                        assert node.level == 1, (path.name, node.level)
                    else:  # the face: only from _fake
                        assert node.level == 2, (path.name, node.level)
                        assert (node.module or "").startswith("_fake."), (path.name, node.module)
            for name in names:
                if name.split(".")[0] == "close_async":
                    assert name.startswith("close_async._fake."), (path.name, name)
    assert testing.__all__ == sorted(testing.__all__)


# -- what the client sees, over real sockets -----------------------------------------------


async def test_whole_second_reset_and_retry_after_as_live_close_sends(
    session: aiohttp.ClientSession,
) -> None:
    model = RateLimitModel(limit=1, window=0.5, reset_format="whole", retry_after=True)
    async with FakeCloseServer(rate_limit=model) as server:
        ok = await post(session, server)
        denied = await post(session, server)
    assert ok[0] == 200
    assert ok[1]["RateLimit"] == "limit=1, remaining=0, reset=1"  # a 0.5 s window says 1
    assert "Retry-After" not in ok[1]
    assert denied[0] == 429
    assert denied[1]["RateLimit"] == "limit=1, remaining=0, reset=1"
    assert denied[1]["Retry-After"] == "1"


@pytest.mark.parametrize("dialect", ["legacy_nested", "legacy_flat"])
async def test_whole_second_reset_in_legacy_headers_and_bodies(
    session: aiohttp.ClientSession, dialect: str
) -> None:
    model = RateLimitModel(limit=1, window=60.0, dialect=dialect, reset_format="whole")
    async with FakeCloseServer(rate_limit=model) as server:
        ok = await post(session, server)
        status, headers, body = await post(session, server)
    assert ok[1]["X-Rate-Limit-Reset"] == "60"
    assert (status, headers["X-Rate-Limit-Reset"]) == (429, "60")
    assert "Retry-After" not in headers
    rate_reset = b'"rate_reset":60' if dialect == "legacy_nested" else b'"rate_reset":"60"'
    assert rate_reset in body


@pytest.mark.parametrize(
    ("announced", "header", "retry_after"), [(0.0, "0", "0"), (1e5, "100000", "100000")]
)
async def test_announced_reset_lies_while_the_real_limit_holds(
    session: aiohttp.ClientSession, announced: float, header: str, retry_after: str
) -> None:
    model = RateLimitModel(
        limit=1, window=60.0, reset_format="whole", retry_after=True, announced_reset=announced
    )
    async with FakeCloseServer(rate_limit=model) as server:
        ok = await post(session, server)
        denied = [await post(session, server) for _ in range(2)]
    assert ok[1]["RateLimit"] == f"limit=1, remaining=0, reset={header}"
    assert [status for status, _, _ in denied] == [429, 429]  # still limited
    assert denied[0][1]["RateLimit"] == f"limit=1, remaining=0, reset={header}"
    assert denied[0][1]["Retry-After"] == retry_after


async def test_semicolon_separator_with_decimal_reset(session: aiohttp.ClientSession) -> None:
    model = RateLimitModel(limit=2, window=60.0, dialect="semicolon")
    async with FakeCloseServer(rate_limit=model) as server:
        _, headers, _ = await post(session, server)
    limit, remaining, reset = (part.split("=")[1] for part in headers["RateLimit"].split("; "))
    assert (limit, remaining) == ("2", "1")
    assert 59.0 < float(reset) <= 60.0
    assert len(reset.split(".")[1]) == 6


async def test_headers_only_on_429s(session: aiohttp.ClientSession) -> None:
    model = RateLimitModel(limit=1, window=60.0, success_headers=False, retry_after=True)
    async with FakeCloseServer(rate_limit=model) as server:
        ok = await post(session, server)
        denied = await post(session, server)
        unauthorized = await post(session, server, key="")
    for status, headers, _ in (ok, unauthorized):
        assert not any(h.lower().startswith(("ratelimit", "retry")) for h in headers), status
    assert denied[0] == 429
    assert denied[1]["RateLimit"].startswith("limit=1, remaining=0, reset=")
    assert denied[1]["Retry-After"] == "60"


async def test_ingress_no_headers_on_successes_and_html_429s(
    session: aiohttp.ClientSession,
) -> None:
    async with FakeCloseServer(rate_limit=RateLimitModel.preset("ingress", limit=1)) as server:
        ok = await post(session, server)
        denied = await post(session, server)
    assert ok[0] == 200
    assert not any(h.lower().startswith(("ratelimit", "x-rate", "retry")) for h in ok[1])
    assert denied[0] == 429
    assert denied[1]["Content-Type"].startswith("text/html")
    assert denied[2].startswith(b"<html>")
    assert denied[1]["Retry-After"] == "1"
    assert not any(h.lower().startswith(("ratelimit", "x-rate")) for h in denied[1])


async def test_hidden_limit_429_shows_remaining_above_zero(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=RateLimitModel.preset("hidden", limit=2)) as server:
        answers = [await post(session, server) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    assert answers[2][1]["RateLimit"] == "limit=4, remaining=2, reset=1"
    assert answers[2][1]["Retry-After"] == "1"
    assert len(server.created) == 2


async def test_token_bucket_429_says_when_the_next_token_comes(
    session: aiohttp.ClientSession,
) -> None:
    model = RateLimitModel(limit=2, window=100.0, algorithm="token_bucket")
    async with FakeCloseServer(rate_limit=model) as server:
        answers = [await post(session, server) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    reset = float(answers[2][1]["RateLimit"].rpartition("=")[2])
    assert 49.0 < reset <= 50.0  # one token per 50 s, not the 100 s to a full bucket
    full = float(answers[1][1]["RateLimit"].rpartition("=")[2])
    assert 99.0 < full <= 100.0


async def test_two_keys_share_one_organisation_limit(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=RateLimitModel.preset("shared", limit=2)) as server:
        a = await post(session, server, key="key-a")
        b = await post(session, server, key="key-b")
        denied = await post(session, server, key="key-a")
    assert (a[0], b[0], denied[0]) == (200, 200, 429)
    assert b[1]["RateLimit"] == "limit=2, remaining=0, reset=1"
    assert {r.api_key for r in server.requests} == {"key-a", "key-b"}


def test_reset_from_another_thread_restarts_the_clock() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = FakeCloseServer(rate_limit=1)
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result()
        started = server.started_at
        server.reset()  # like the CLI tests: the server's loop runs in its own thread
        assert server.started_at > started
        asyncio.run_coroutine_threadsafe(server.close(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def test_reset_restarts_the_schedule(session: aiohttp.ClientSession) -> None:
    model = RateLimitModel(limit=5, window=60.0, schedule=((0.05, 1),))
    async with FakeCloseServer(rate_limit=model) as server:
        await asyncio.sleep(0.06)  # past the change: the limit is 1 now
        assert (await post(session, server))[1]["RateLimit"].startswith("limit=1, ")
        started = server.started_at
        server.reset()
        assert server.started_at > started
        status, headers, _ = await post(session, server)
    assert status == 200
    assert headers["RateLimit"].startswith("limit=5, remaining=4, ")
    assert len(server.created) == 1
