"""RedisTokenBucket against a real redis-server (started here on a free loopback port)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from close_async import AsyncCloseClient, CloseError
from close_async._transport.redis import _ACQUIRE, _CHECK, _PAUSE, RedisTokenBucket
from close_async.testing import FakeCloseServer
from tests.support.servers import RedisServer, free_port

# -- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def make_bucket(redis_server: RedisServer) -> AsyncIterator[Any]:
    """``make_bucket(**kwargs)``: a RedisTokenBucket on the test server, closed afterwards."""
    buckets: list[RedisTokenBucket] = []

    def make(**kwargs: Any) -> RedisTokenBucket:
        kwargs.setdefault("rate", 10)
        kwargs.setdefault("burst", 1)
        bucket = RedisTokenBucket(kwargs.pop("url", redis_server.url), **kwargs)
        buckets.append(bucket)
        return bucket

    yield make
    for bucket in buckets:
        await bucket.aclose()


def _eval(client: sync_redis.Redis, script: str, keys: list[str], *args: object) -> int:
    return int(client.eval(script, len(keys), *keys, *args))  # type: ignore[no-untyped-call]


def _commandstat(client: sync_redis.Redis, name: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


def _down_url() -> str:
    """A Redis URL nobody listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(r.levelno == logging.WARNING and text in r.getMessage() for r in caplog.records)


# -- the Lua script's arithmetic, under a clock the test sets ---------------------------------

KEYS = ["{t}:tat", "{t}:paused"]
T0 = 1_700_000_000_000_000  # microseconds, a realistic epoch: the arithmetic must stay exact


def test_gcra_script_arithmetic(redis_server: RedisServer) -> None:
    r = redis_server.client()
    interval, burst = 100_000, 3  # 10/s, bursts of 3

    def acquire(now: int) -> int:
        return _eval(r, _ACQUIRE, KEYS, interval, burst, now)

    # A full bucket admits `burst` at once; each later call reserves the next slot, one per
    # interval, and is told the exact wait until it.
    assert [acquire(T0) for _ in range(3)] == [0, 0, 0]
    assert acquire(T0) == 100_000
    assert acquire(T0 + 30_000) == 170_000  # the slot at T0 + 200 ms
    assert acquire(T0 + 299_999) == 1  # the slot at T0 + 300 ms
    assert int(r.get(KEYS[0]) or 0) == T0 + 6 * interval  # the TAT, stored exactly
    assert 0 < r.pttl(KEYS[0]) <= 1000 + 301  # expires once the bucket would be full again
    # The slots a late caller leaves unused are not handed out twice, nor given back.
    assert acquire(T0 + 350_000) == 50_000  # the slot at T0 + 400 ms
    # After a quiet spell the bucket is full again, never fuller.
    later = T0 + 10_000_000
    assert [acquire(later) for _ in range(4)] == [0, 0, 0, 100_000]


def test_pause_script_arithmetic(redis_server: RedisServer) -> None:
    r = redis_server.client()
    assert _eval(r, _PAUSE, KEYS[1:], 2_000_000, T0) == 2_000_000
    assert _eval(r, _PAUSE, KEYS[1:], 500_000, T0 + 1_000_000) == 1_000_000  # max(): kept
    assert _eval(r, _CHECK, KEYS[1:], T0 + 1_500_000) == 500_000
    # Paused: the first slot is at the end of the pause (then GCRA goes on from there).
    assert _eval(r, _ACQUIRE, KEYS, 100_000, 1, T0 + 1_250_000) == 750_000
    assert _eval(r, _ACQUIRE, KEYS, 100_000, 1, T0 + 1_250_000) == 850_000
    assert _eval(r, _PAUSE, KEYS[1:], 3_000_000, T0 + 1_000_000) == 3_000_000  # extended
    assert 0 < r.pttl(KEYS[1]) <= 3000 + 1000
    assert _eval(r, _ACQUIRE, KEYS, 100_000, 1, T0 + 3_000_000) == 1_000_000
    assert _eval(r, _CHECK, KEYS[1:], T0 + 4_000_000) == 0
    assert _eval(r, _ACQUIRE, KEYS, 100_000, 1, T0 + 4_500_000) == 0  # pause over


def test_scripts_use_redis_time_not_the_callers(redis_server: RedisServer) -> None:
    r = redis_server.client()
    # "" means: read TIME inside the script. A second call right after waits for ~1/rate.
    assert _eval(r, _ACQUIRE, KEYS, 1_000_000, 1, "") == 0
    wait = _eval(r, _ACQUIRE, KEYS, 1_000_000, 1, "")
    assert 900_000 < wait <= 1_000_000
    seconds, micros = r.time()
    now = seconds * 1_000_000 + micros
    assert abs(int(r.get(KEYS[0]) or 0) - (now + wait + 1_000_000)) < 50_000


# -- the limiter in one process --------------------------------------------------------------


async def test_shared_between_buckets_and_never_polls(
    make_bucket: Any, redis_server: RedisServer
) -> None:
    rate, burst, n = 50, 5, 30
    a, b = make_bucket(rate=rate, burst=burst), make_bucket(rate=rate, burst=burst)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def take(bucket: RedisTokenBucket) -> None:
        await bucket.acquire()
        times.append(loop.time())

    start = loop.time()
    await asyncio.gather(*(take(a if i % 2 else b) for i in range(n)))
    elapsed = times[-1] - start
    # Two buckets, one budget: (n - burst) / rate, not half of it.
    assert (n - burst) / rate - 0.02 <= elapsed <= (n - burst) / rate + 0.25
    for i, t in enumerate(sorted(times)):  # never more than burst + rate * T
        assert i + 1 <= burst + rate * (t - start + 0.005)
    # One call reserves a slot, one more after sleeping checks for a pause: no polling.
    calls = _commandstat(redis_server.client(), "evalsha")
    assert n <= calls <= 2 * n


async def test_identity_is_hashed_and_group_is_in_the_key(
    make_bucket: Any, redis_server: RedisServer
) -> None:
    secret = "api_very_secret_key"
    bucket = make_bucket(identity=secret, group="POST opportunity", key="myapp")
    digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
    assert bucket.key == f"myapp:{digest}:POST opportunity"
    await bucket.acquire()
    await bucket.pause(5)
    keys = sorted(k.decode() for k in redis_server.client().keys("*"))
    assert keys == [f"{{{bucket.key}}}:paused", f"{{{bucket.key}}}:tat"]
    assert not any(secret in k for k in keys)
    assert secret not in repr(bucket)
    assert make_bucket().key == "close-async:POST opportunity"
    # Another identity or group is another budget.
    assert make_bucket(identity="other", key="myapp").key != bucket.key


async def test_script_flush_mid_run_reloads_the_script(
    make_bucket: Any, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = make_bucket(rate=1000, burst=10)
    for _ in range(3):
        await bucket.acquire()
    r = redis_server.client()
    r.script_flush()
    assert r.script_exists(bucket._acquire_script.sha) == [False]
    for _ in range(3):
        await bucket.acquire()
    assert r.script_exists(bucket._acquire_script.sha) == [True]
    # Loaded on first use and once more after the flush: EVALSHA, NOSCRIPT, SCRIPT LOAD.
    assert _commandstat(r, "script|load") == 2
    assert _warnings(caplog, "unavailable") == 0
    assert "state='redis'" in repr(bucket)


async def test_pause_holds_every_bucket_back(make_bucket: Any) -> None:
    a, b = make_bucket(rate=1000, burst=10), make_bucket(rate=1000, burst=10)
    loop = asyncio.get_running_loop()
    await a.pause(0.3)
    await a.pause(0.1)  # shorter: the longer pause stands
    await a.pause(0)  # ignored
    start = loop.time()
    async with b:
        pass
    assert 0.25 <= loop.time() - start <= 0.45


async def test_a_pause_set_while_a_caller_sleeps_holds_it_back(make_bucket: Any) -> None:
    a, b = make_bucket(rate=10, burst=1), make_bucket(rate=10, burst=1)
    loop = asyncio.get_running_loop()
    await a.acquire()
    start = loop.time()
    waiter = asyncio.create_task(a.acquire())  # reserves the slot at +100 ms, sleeps
    await asyncio.sleep(0.03)
    await b.pause(0.3)
    await waiter
    assert loop.time() - start >= 0.33  # checked after its sleep, found the pause, waited


async def test_cancelled_waiters_release_the_queue(make_bucket: Any) -> None:
    bucket = make_bucket(rate=5, burst=1)
    loop = asyncio.get_running_loop()
    await bucket.acquire()
    waiters = [asyncio.create_task(bucket.acquire()) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert "waiters=3" in repr(bucket)
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert all(task.cancelled() for task in waiters)
    assert "waiters=0" in repr(bucket)
    start = loop.time()
    await bucket.acquire()  # the cancelled holder's slot (+200 ms) went unused, not reused
    assert 0.2 <= loop.time() - start <= 0.45


async def test_a_429_seen_by_one_client_pauses_the_others(make_bucket: Any) -> None:
    async with FakeCloseServer() as server:
        a, b = make_bucket(rate=1000, burst=10), make_bucket(rate=1000, burst=10)
        first = AsyncCloseClient("k", base_url=server.base_url, limiter=a)
        second = AsyncCloseClient("k", base_url=server.base_url, limiter=b)
        async with first, second:
            server.fail_next("429")  # the fake asks to come back at its window reset (<= 1 s)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await first.opportunities.create(lead_id="lead_1")  # 429, paused, retried
            await second.opportunities.create(lead_id="lead_1")
            retried_at = server.requests[1].at
            assert [r.status for r in server.requests] == [429, 200, 200]
            # The second client's only request waited for the pause the first one shared.
            assert server.requests[2].at >= retried_at - 0.05
            assert loop.time() - start >= 0.1


async def test_validation_and_repr(make_bucket: Any) -> None:
    with pytest.raises(ValueError, match="rate"):
        make_bucket(rate=0)
    with pytest.raises(ValueError, match="burst"):
        make_bucket(burst=0)
    with pytest.raises(ValueError, match="on_redis_error"):
        make_bucket(on_redis_error="ignore")
    with pytest.raises(ValueError, match="timeout"):
        make_bucket(timeout=0)
    bucket = make_bucket(rate=5, burst=2, identity="k")
    assert repr(bucket).startswith("RedisTokenBucket(rate=5.0, burst=2, key='close-async:")
    assert repr(bucket).endswith("state='redis', waiters=0)")


async def test_accepts_a_caller_owned_client(redis_server: RedisServer) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_server.url)
    bucket = RedisTokenBucket(client, rate=100, burst=1)
    await bucket.acquire()
    await bucket.aclose()  # not ours: still usable
    assert await client.ping()
    await (getattr(client, "aclose", None) or client.close)()  # aclose() since redis 5.0.1


def test_import_close_async_without_redis_installed() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import close_async\n"
        "from close_async._transport.redis import RedisTokenBucket\n"
        "assert getattr(close_async, 'RedisTokenBucket', RedisTokenBucket) is RedisTokenBucket\n"
        "try:\n"
        "    RedisTokenBucket('redis://localhost', rate=1, burst=1)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'close-async[redis]'" in out.stdout


# -- faults ------------------------------------------------------------------------------------


async def test_redis_down_falls_back_to_the_local_bucket_with_one_warning(
    make_bucket: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = make_bucket(url=_down_url(), rate=50, burst=5)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(25):
        await bucket.acquire()
    elapsed = loop.time() - start
    assert 20 / 50 - 0.02 <= elapsed <= 20 / 50 + 0.3  # the local bucket still limits
    assert _warnings(caplog, "Redis unavailable") == 1
    assert "state='local for" in repr(bucket)
    await bucket.pause(1.0)  # never raises, never waits
    other = make_bucket(url=_down_url())
    await other.pause(1.0)  # a pause may be the first to find Redis down: same single warning
    assert _warnings(caplog, "Redis unavailable") == 2


async def test_fail_closed_raises_and_sends_nothing(make_bucket: Any) -> None:
    bucket = make_bucket(url=_down_url(), on_redis_error="fail")
    with pytest.raises(CloseError, match="shared rate limiter unavailable") as info:
        await bucket.acquire()
    assert info.value.may_have_succeeded is False
    await bucket.pause(1.0)  # a pause that cannot be shared is not an error
    async with FakeCloseServer() as server:
        async with AsyncCloseClient("k", base_url=server.base_url, limiter=bucket) as close:
            with pytest.raises(CloseError, match="shared rate limiter unavailable"):
                await close.opportunities.create(lead_id="lead_1")
        assert server.requests == []


async def test_slow_redis_times_out_to_the_fallback_and_comes_back(
    make_bucket: Any, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="close_async")
    bucket = make_bucket(rate=100, burst=1, timeout=0.2)
    await bucket.acquire()
    assert redis_server.process is not None
    redis_server.process.send_signal(signal.SIGSTOP)  # alive, connected, silent
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        # Ten callers queued behind the lock meet one timeout between them, not one each.
        await asyncio.gather(*(bucket.acquire() for _ in range(10)))
        assert loop.time() - start < 0.2 + 0.1 + 0.2
    finally:
        redis_server.process.send_signal(signal.SIGCONT)
    await asyncio.sleep(1.1)  # the next probe is due
    await bucket.acquire()
    assert "state='redis'" in repr(bucket)
    assert _warnings(caplog, "Redis unavailable") == 1
    assert any("Redis is back" in r.getMessage() for r in caplog.records)


async def test_a_restart_while_idle_goes_unnoticed(
    make_bucket: Any, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = make_bucket(rate=100, burst=1)
    await bucket.acquire()
    redis_server.kill()
    redis_server.start()  # the pooled connection is stale now: retried once, on a new one
    await bucket.acquire()
    assert _warnings(caplog, "Redis unavailable") == 0
    assert redis_server.client().exists(bucket._keys[0])


async def test_redis_killed_and_restarted_mid_run(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers keep creating while Redis is SIGKILLed, then return to it once restarted."""
    caplog.set_level(logging.INFO, logger="close_async")
    rate, burst = 40, 4
    buckets = [RedisTokenBucket(redis_server.url, rate=rate, burst=burst) for _ in range(2)]
    loop = asyncio.get_running_loop()
    async with FakeCloseServer() as server:
        stop = asyncio.Event()

        async def worker(bucket: RedisTokenBucket, name: str) -> None:
            async with AsyncCloseClient("k", base_url=server.base_url, limiter=bucket) as close:
                i = 0
                while not stop.is_set():
                    await close.opportunities.create(lead_id="lead_1", note=f"{name}-{i}")
                    i += 1

        tasks = [asyncio.create_task(worker(b, f"w{n}")) for n, b in enumerate(buckets)]
        await asyncio.sleep(0.8)
        killed_at = loop.time()
        redis_server.kill()
        await asyncio.sleep(1.2)
        restarted_at = loop.time()
        redis_server.start()  # same port, empty: the workers must find it again
        await asyncio.sleep(1.6)
        stop.set()
        await asyncio.gather(*tasks)
    for bucket in buckets:
        await bucket.aclose()

    during = [r for r in server.requests if killed_at + 0.1 < r.at < restarted_at]
    after = [r for r in server.requests if r.at > restarted_at + 1.1]
    assert len(during) >= rate  # never stopped: each worker went on at its local rate
    assert all(r.status == 200 for r in server.requests)
    notes = [o["note"] for o in server.created]
    assert len(notes) == len(set(notes))  # no duplicates
    assert _warnings(caplog, "Redis unavailable") == 2  # one per bucket, not one per call
    assert sum("Redis is back" in r.getMessage() for r in caplog.records) == 2
    # Back on the shared budget: one rate for both workers again, and the keys are in Redis.
    span = after[-1].at - after[0].at
    assert len(after) <= burst + rate * span + 2
    assert redis_server.client().exists("{close-async:POST opportunity}:tat")


# -- four OS processes sharing one key ---------------------------------------------------------

ROOT = str(Path(__file__).resolve().parents[2])

WORKER = r"""
import asyncio, json, sys, time
from close_async import AsyncCloseClient, CloseError
from close_async._transport.redis import RedisTokenBucket

class Recording:  # the limiter, noting when each request was let through (wall clock)
    def __init__(self, inner):
        self.inner, self.admitted = inner, []
    async def acquire(self):
        await self.inner.acquire()
        self.admitted.append(time.time())
    async def pause(self, seconds):
        await self.inner.pause(seconds)

async def main(redis_url, base_url, name, n, rate, burst):
    shared = RedisTokenBucket(redis_url, rate=rate, burst=burst, identity="k")
    limiter = Recording(shared)
    errors = []
    async with AsyncCloseClient("k", base_url=base_url, limiter=limiter) as close:
        async def one(i):
            try:
                await close.opportunities.create(lead_id="lead_1", note=f"{name}-{i}")
            except CloseError as exc:
                errors.append(repr(exc))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await asyncio.gather(*(one(i) for i in range(n)))
    await shared.aclose()
    print(json.dumps({"errors": errors, "admitted": limiter.admitted}), flush=True)

redis_url, base_url, name, n, rate, burst = sys.argv[1:]
asyncio.run(main(redis_url, base_url, name, int(n), float(rate), int(burst)))
"""


async def test_four_processes_share_one_limit(redis_server: RedisServer) -> None:
    # The fake counts fixed windows of L=40 per W=0.5 s (80/s). GCRA(rate, burst) admits at
    # most burst + rate * T in any T; a request reaches the server a few ms (d) after admission,
    # so one server window sees at most burst + rate * (W + d) = 3 + 60 * 0.55 = 36 < 40
    # requests: a correct shared limiter never meets a 429, nor drains a window to remaining=0
    # (which would pause everyone). Four unshared 60/s buckets would send 240/s.
    rate, burst, per_worker, workers = 60.0, 3, 30, 4
    async with FakeCloseServer(rate_limit=40, window=0.5) as server:
        procs = []
        for i in range(workers):
            args = [redis_server.url, server.base_url, f"w{i}", per_worker, rate, burst]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                *map(str, args),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": ROOT},
            )
            procs.append(proc)
        try:
            for proc in procs:  # all started and connected: then go at once
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                assert line.strip() == b"ready", line
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
            results = [await asyncio.wait_for(proc.communicate(), 30) for proc in procs]
        finally:
            for proc in procs:
                if proc.returncode is None:  # pragma: no cover - only when the test failed
                    proc.kill()
                    await proc.wait()
    assert [proc.returncode for proc in procs] == [0] * workers
    reports = [json.loads(out.decode().splitlines()[-1]) for out, _ in results]
    assert [report["errors"] for report in reports] == [[]] * workers

    total = workers * per_worker
    assert server.count_429 == 0
    notes = [o["note"] for o in server.created]
    assert len(notes) == total  # all created
    assert len(set(notes)) == total  # no duplicates
    # When the four limiters let requests through (one wall clock: one host): never more than
    # burst + rate * T in any T from the start. 50 ms of slack for a late first wake-up.
    admitted = sorted(t for report in reports for t in report["admitted"])
    assert len(admitted) == total
    for i, t in enumerate(admitted):
        assert i + 1 <= burst + rate * (t - admitted[0] + 0.05)
    span = admitted[-1] - admitted[0]
    assert total / span >= 0.75 * rate  # and used the shared budget (slack for a busy CI)
    # The workers really ran side by side, not one after the other.
    spans = [(min(r["admitted"]), max(r["admitted"])) for r in reports]
    assert max(first for first, _ in spans) < min(last for _, last in spans)


# -- the arq worker of docs/workers.md ---------------------------------------------------------


def _docs_block(page: Path, marker: str) -> str:
    """The ```python block of ``page`` that contains ``marker``."""
    for block in page.read_text(encoding="utf-8").split("```python\n")[1:]:
        code = block.split("\n```", 1)[0]
        if marker in code:
            return code + "\n"
    raise AssertionError(f"no python block with {marker!r} in {page}")


# arq's Worker.close() calls redis-py's deprecated close(); nothing of ours does.
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_docs_arq_worker_example(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The arq worker of docs/workers.md, run as written: two workers, one shared limit."""
    import arq.worker as arq_worker  # in the test extra: this test never skips

    code = _docs_block(Path(ROOT) / "docs" / "workers.md", "class WorkerSettings")
    (tmp_path / "arq_docs_worker.py").write_text(code, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    async with FakeCloseServer() as server:
        monkeypatch.setenv("REDIS_URL", redis_server.url)
        monkeypatch.setenv("CLOSE_API_KEY", "api_docs")
        monkeypatch.setenv("CLOSE_BASE_URL", server.base_url)
        import arq_docs_worker as worker  # reads the environment

        workers = [
            arq_worker.create_worker(worker.WorkerSettings, handle_signals=False) for _ in range(2)
        ]
        runs = [asyncio.create_task(w.main()) for w in workers]
        rows = [{"lead_id": "lead_1", "value": 1000 + i, "note": f"row {i}"} for i in range(40)]
        try:
            results = await asyncio.wait_for(worker.enqueue(rows), 30)
        finally:
            for w in workers:
                await w.close()
            for run in runs:
                run.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
        sys.modules.pop("arq_docs_worker", None)
    assert [r["outcome"] for r in results] == ["created"] * len(rows)
    assert sorted(o["note"] for o in server.created) == sorted(r["note"] for r in rows)
    assert all(w.jobs_complete > 0 for w in workers)  # both took jobs
    times = sorted(r.at for r in server.requests if r.status == 200)
    rate, burst = worker.RATE, worker.BURST
    for i, t in enumerate(times):  # one budget for both workers
        assert i + 1 <= burst + rate * (t - times[0] + 0.05)
