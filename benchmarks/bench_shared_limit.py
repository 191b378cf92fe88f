"""Shared-limit benchmark: K worker processes, one API key, one server limit.

For K in 1, 2, 4, 8 worker processes (each an AsyncCloseClient with C tasks creating in a loop
for D seconds) against ONE FakeCloseServer(rate_limit=L, window=W), compare:

- ``shared``: every worker uses ``RedisTokenBucket(redis, rate=L/W, burst=B)`` on one key;
- ``local``: every worker uses its own ``TokenBucket(rate=L/W, burst=B)``, which cannot see the
  others (K workers send up to K times the allowed rate).

Reports achieved rate / allowed rate (creates that reached the server in the D seconds after a
synchronised start, divided by L/W * D) and 429s. Both use the client's defaults otherwise
(header pacing on unless ``--no-pacing``). Writes JSON to
benchmarks/results/bench_shared_limit.json.

    python benchmarks/bench_shared_limit.py --quick       # CI smoke, K = 1 and 4, ~20 s
    python benchmarks/bench_shared_limit.py               # K = 1, 2, 4, 8, D = 5 s
    python benchmarks/bench_shared_limit.py --redis-url redis://localhost:6379/0

Without ``--redis-url`` a throwaway ``redis-server`` is started on a free loopback port.
Workers are started once and reused for every run (``--worker`` is the worker's entry point).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from payloads import machine_info, write_report  # noqa: E402

from close_async import AsyncCloseClient, CloseError, TokenBucket  # noqa: E402
from close_async._transport.redis import RedisTokenBucket  # noqa: E402
from close_async.testing import FakeCloseServer  # noqa: E402

API_KEY = "bench-key"
LEAD_ID = "lead_" + "SharedLimitBenchmark".ljust(43, "0")
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "bench_shared_limit.json"


@dataclass
class Result:
    mode: str  # "shared" (RedisTokenBucket) or "local" (a TokenBucket per process)
    processes: int
    duration: float  # D, seconds
    allowed_rate: float  # L / W
    ok: int  # 200s that reached the server within the D seconds
    achieved_rate: float  # ok / D
    ratio: float  # achieved / allowed
    requests: int  # every attempt the server saw within the D seconds
    count_429: int
    pct_429: float  # 429s as % of requests
    duplicates: int  # extra creates of one item (each create carries a unique note)
    errors: dict[str, int]  # errors raised in the workers, by type


# -- worker process ---------------------------------------------------------------------------


async def worker_main(name: str) -> None:
    """Read one JSON command per line: prepare a run, wait for "go", run it, print results."""
    loop = asyncio.get_running_loop()

    async def readline() -> str:
        return await loop.run_in_executor(None, sys.stdin.readline)

    print("up", flush=True)
    while line := await readline():
        errors = await worker_run(name, json.loads(line), readline)
        print(json.dumps({"errors": errors}), flush=True)


async def worker_run(
    name: str, cmd: dict[str, Any], readline: Callable[[], Awaitable[str]]
) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    if cmd["mode"] == "shared":
        limiter: Any = RedisTokenBucket(
            cmd["redis_url"], rate=cmd["rate"], burst=cmd["burst"], key=cmd["key"],
            identity=API_KEY,
        )  # fmt: skip
        await limiter.pause(1e-6)  # connect before the clock starts
    else:
        limiter = TokenBucket(cmd["rate"], cmd["burst"])
    errors: collections.Counter[str] = collections.Counter()
    async with AsyncCloseClient(
        API_KEY, base_url=cmd["base_url"], limiter=limiter, pace_from_headers=cmd["pacing"]
    ) as close:
        print("ready", flush=True)
        await readline()  # "go"
        deadline = loop.time() + cmd["duration"]

        async def task(j: int) -> None:
            i = 0
            while loop.time() < deadline:
                try:
                    note = f"{cmd['run']}-{name}-{j}-{i}"
                    await close.opportunities.create(lead_id=LEAD_ID, note=note)
                except CloseError as exc:
                    errors[type(exc).__name__] += 1
                i += 1

        await asyncio.gather(*(task(j) for j in range(cmd["concurrency"])))
    if isinstance(limiter, RedisTokenBucket):
        await limiter.aclose()
    return dict(errors)


# -- driver -----------------------------------------------------------------------------------


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, what: str | None = None) -> str:
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 60)).decode().strip()
        if what is not None and line != what:
            raise RuntimeError(f"worker said {line!r}, expected {what!r}")
        return line


@contextlib.contextmanager
def redis_server() -> Any:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    executable = shutil.which("redis-server")
    if executable is None:
        sys.exit("redis-server not found: apt-get install -y redis-server, or pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(
            [executable, *args, "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.01)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait()


async def run_one(
    workers: list[Worker], mode: str, args: argparse.Namespace, redis_url: str
) -> Result:
    allowed = args.limit / args.window
    run = uuid.uuid4().hex[:8]
    async with FakeCloseServer(rate_limit=args.limit, window=args.window) as server:
        cmd = {
            "mode": mode, "run": run, "redis_url": redis_url, "key": f"bench-{run}",
            "base_url": server.base_url, "rate": allowed * args.rate_factor, "burst": args.burst,
            "duration": args.duration, "concurrency": args.concurrency, "pacing": args.pacing,
        }  # fmt: skip
        for worker in workers:
            await worker.send(cmd)
        for worker in workers:
            await worker.expect("ready")
        # Start at a window boundary, so the D seconds hold exactly D / W server windows.
        loop = asyncio.get_running_loop()
        t0 = server._t0
        windows = int((loop.time() - t0) / args.window) + 1
        start = t0 + windows * args.window
        await asyncio.sleep(max(0.0, start - loop.time()))
        for worker in workers:
            await worker.send("go")
        reports = [json.loads(await worker.expect()) for worker in workers]
        end = start + args.duration
        seen = [r for r in server.requests if start <= r.at < end]
        notes = collections.Counter(o["note"] for o in server.created)
    ok = sum(r.status == 200 for r in seen)
    count_429 = sum(r.status == 429 for r in seen)
    errors: collections.Counter[str] = collections.Counter()
    for report in reports:
        errors.update(report["errors"])
    return Result(
        mode=mode,
        processes=len(workers),
        duration=args.duration,
        allowed_rate=allowed,
        ok=ok,
        achieved_rate=round(ok / args.duration, 2),
        ratio=round(ok / (allowed * args.duration), 3),
        requests=len(seen),
        count_429=count_429,
        pct_429=round(100 * count_429 / len(seen), 2) if seen else 0.0,
        duplicates=sum(n - 1 for n in notes.values()),
        errors=dict(errors),
    )


async def bench(args: argparse.Namespace, redis_url: str) -> list[Result]:
    n = max(args.processes)
    procs = []
    for i in range(n):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--worker",
            f"w{i}",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
    workers = [Worker(p) for p in procs]
    try:
        for worker in workers:
            await worker.expect("up")
        results = []
        for k in args.processes:
            for mode in args.modes:
                result = await run_one(workers[:k], mode, args, redis_url)
                print_row(result)
                results.append(result)
        return results
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


HEADER = "mode    procs     ok   rate/s   ratio   reqs   429s   429 %"


def print_row(r: Result) -> None:
    errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "-"
    print(
        f"{r.mode:<7}{r.processes:>6}{r.ok:>7}{r.achieved_rate:>9.1f}{r.ratio:>8.3f}"
        f"{r.requests:>7}{r.count_429:>7}{r.pct_429:>7.2f}%  dups={r.duplicates} errors={errors}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", metavar="NAME", help=argparse.SUPPRESS)
    parser.add_argument("--processes", default="1,2,4,8", help="worker process counts (1,2,4,8)")
    parser.add_argument("--modes", default="shared,local", help="shared,local")
    parser.add_argument("--limit", type=int, default=50, help="server limit L per window (50)")
    parser.add_argument("--window", type=float, default=1.0, help="server window W, s (1.0)")
    parser.add_argument("--duration", type=float, default=5.0, help="D, seconds per run (5)")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks per worker (16)")
    parser.add_argument("--burst", type=int, default=1, help="limiter burst B (1)")
    parser.add_argument("--rate-factor", type=float, default=1.0, help="limiter rate / (L/W)")
    parser.add_argument(
        "--no-pacing", dest="pacing", action="store_false", help="pace_from_headers=False"
    )
    parser.add_argument("--redis-url", help="use this Redis instead of a throwaway server")
    parser.add_argument("--quick", action="store_true", help="K = 1 and 4, D = 2 s, W = 0.5 s")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(args.worker))
        return
    if args.quick:
        args.processes, args.duration, args.limit, args.window = "1,4", 2.0, 25, 0.5
    args.processes = [int(k) for k in str(args.processes).split(",")]
    args.modes = args.modes.split(",")
    print(
        f"L={args.limit} per W={args.window}s (allowed {args.limit / args.window:g}/s), "
        f"D={args.duration}s, {args.concurrency} tasks/worker, burst={args.burst}, "
        f"header pacing {'on' if args.pacing else 'off'}"
    )
    print(HEADER)
    with contextlib.ExitStack() as stack:
        url = args.redis_url or stack.enter_context(redis_server())
        results = asyncio.run(bench(args, url))
    params = {k: v for k, v in vars(args).items() if k not in ("worker", "json")}
    payload = {"params": params, "machine": machine_info(), "results": [asdict(r) for r in results]}
    print(f"wrote {write_report(args.json, payload)}")


if __name__ == "__main__":
    main()
