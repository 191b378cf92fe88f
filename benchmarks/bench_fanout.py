"""Fan-out benchmark: N creates at once against FakeCloseServer limited to L per W seconds.

Runs close-async (``asyncio.gather``) and Close's official sync client ``closeio`` (a thread
pool) one after the other in ONE process, each against a fresh server with the same config, and
reports achieved rate / allowed rate, 429s, duplicates and missing items. See benchmarks/README.md.

    python benchmarks/bench_fanout.py --quick
    python benchmarks/bench_fanout.py --n 2000 --limit 100 --window 1 --faults drop:3,504:3
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import math
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import requests
from closeio_api import APIError, Client  # type: ignore[import-untyped]
from payloads import machine_info, write_report

from close_async import AsyncCloseClient
from close_async.testing import DIALECTS, FAULTS, FakeCloseServer

LEAD_ID = "lead_" + "FanoutBenchmark".ljust(43, "0")
API_KEY = "bench-key"
HANG_SECONDS = 2.0  # a scripted "hang" answers 200 after this (closeio has no timeout)


@dataclass
class Result:
    client: str
    n: int
    ok: int
    elapsed: float  # fan-out start (gather / first submit) to the last completion, seconds
    first_request_after: float  # fan-out start to the first request reaching the server
    achieved_rate: float  # successful creates per second
    allowed_rate: float  # L / W
    ratio: float  # achieved / allowed
    requests: int  # every attempt the server saw
    count_429: int
    pct_429: float  # 429s as % of requests
    duplicates: int  # extra creates: sum over items of (times created - 1)
    duplicated_items: int  # items created more than once
    missing: int  # items never created
    failed_but_created: int  # the client raised, yet the server created the item
    faults_hit: int  # scripted faults the server actually served
    errors: dict[str, int]  # raised errors by type (and status)


def parse_faults(text: str | None) -> list[str]:
    """``"drop:3,504:3"`` -> ``["drop", "drop", "drop", "504", "504", "504"]``."""
    faults: list[str] = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, _, times = part.partition(":")
        if name not in FAULTS:
            raise argparse.ArgumentTypeError(f"unknown fault {name!r}; expected one of {FAULTS}")
        faults += [name] * int(times or 1)
    return faults


async def inject_faults(server: FakeCloseServer, faults: Sequence[str], n: int) -> None:
    """Queue fault k once the server has created (k + 1) * n / (2 * (F + 1)) items.

    Spread by progress over the first half of the items, not by time, so a client that runs
    faster or slower (or fails items) still meets every fault. Run in the server's loop.
    """
    for k, fault in enumerate(faults):
        threshold = (k + 1) * n // (2 * (len(faults) + 1))
        while True:  # FakeCloseServer has no hook for "created": poll its list
            if len(server.created) >= threshold:
                server.fail_next(fault)
                break
            await asyncio.sleep(0.002)


def make_server(args: argparse.Namespace) -> FakeCloseServer:
    return FakeCloseServer(
        rate_limit=args.limit, window=args.window, dialect=args.dialect, hang_seconds=HANG_SECONDS
    )


def error_name(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, APIError):
        status = exc.response.status_code
    return type(exc).__name__ + (f" {status}" if status is not None else "")


def tally(name: str, server: FakeCloseServer, outcomes: Sequence[object], start: float,
          end: float, args: argparse.Namespace) -> Result:  # fmt: skip
    elapsed = end - start  # loop.time() (the server's request log) is time.monotonic() too
    seen = collections.Counter(opp["note"] for opp in server.created)
    errors = collections.Counter(error_name(o) for o in outcomes if isinstance(o, BaseException))
    ok = len(outcomes) - sum(errors.values())
    allowed = args.limit / args.window
    achieved = ok / elapsed if elapsed > 0 else 0.0
    requests_seen = len(server.requests)
    count_429 = server.count_429
    return Result(
        client=name,
        n=args.n,
        ok=ok,
        elapsed=round(elapsed, 3),
        first_request_after=round(server.requests[0].at - start, 3) if server.requests else 0.0,
        achieved_rate=round(achieved, 2),
        allowed_rate=round(allowed, 2),
        ratio=round(achieved / allowed, 4),
        requests=requests_seen,
        count_429=count_429,
        pct_429=round(100 * count_429 / max(requests_seen, 1), 3),
        duplicates=sum(c - 1 for c in seen.values() if c > 1),
        duplicated_items=sum(1 for c in seen.values() if c > 1),
        missing=sum(1 for i in range(args.n) if seen[f"item-{i}"] == 0),
        failed_but_created=sum(
            1 for i, o in enumerate(outcomes) if isinstance(o, BaseException) and seen[f"item-{i}"]
        ),
        faults_hit=sum(1 for record in server.requests if record.fault is not None),
        errors=dict(sorted(errors.items())),
    )


async def run_close_async(args: argparse.Namespace, faults: list[str]) -> Result:
    async with make_server(args) as server:
        injector = asyncio.create_task(inject_faults(server, faults, args.n))
        async with AsyncCloseClient(API_KEY, base_url=server.base_url) as close:
            creates = (
                close.opportunities.create(lead_id=LEAD_ID, value=100 * (i + 1), note=f"item-{i}")
                for i in range(args.n)
            )
            start = time.monotonic()
            outcomes = await asyncio.gather(*creates, return_exceptions=True)
            end = time.monotonic()
        injector.cancel()
    return tally("close-async", server, outcomes, start, end, args)


def run_closeio(args: argparse.Namespace, faults: list[str]) -> Result:
    # The server runs on its own event loop in a background thread; closeio is sync.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-close-server", daemon=True)
    thread.start()
    server = make_server(args)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    try:
        injector = asyncio.run_coroutine_threadsafe(inject_faults(server, faults, args.n), loop)
        client = Client(API_KEY)  # default max_retries=5 and its own 429/503 handling
        client.base_url = server.base_url  # Client() hardcodes api.close.com; API takes base_url
        # requests keeps 10 pooled connections per host; give every thread one (no retry change).
        client.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=args.threads))

        def create(i: int) -> Any:
            data = {"lead_id": LEAD_ID, "value": 100 * (i + 1), "note": f"item-{i}"}
            return client.post("opportunity", data=data)

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            futures = [pool.submit(create, i) for i in range(args.n)]
            outcomes = [f.exception() or f.result() for f in futures]
        end = time.monotonic()
        injector.cancel()
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    return tally("closeio", server, outcomes, start, end, args)


def print_table(results: list[Result], args: argparse.Namespace, faults: list[str]) -> None:
    fault_text = ",".join(f"{k}:{v}" for k, v in collections.Counter(faults).items())
    ideal = (math.ceil(args.n / args.limit) - 1) * args.window
    print(
        f"n={args.n} limit={args.limit}/{args.window:g}s (allowed {args.limit / args.window:g}/s)"
        f" dialect={args.dialect} faults={fault_text or 'none'}"
        f" | best possible elapsed ~{ideal:g}s (ratio can exceed 1 for few windows)"
    )
    head = ("client", "ok/n", "elapsed s", "1st req s", "rate/s", "ratio", "reqs", "429s",
            "429 %", "dups", "missing", "err+created", "faults", "errors")  # fmt: skip
    rows = [
        (
            r.client,
            f"{r.ok}/{r.n}",
            f"{r.elapsed:.2f}",
            f"{r.first_request_after:.2f}",
            f"{r.achieved_rate:.1f}",
            f"{r.ratio:.3f}",
            str(r.requests),
            str(r.count_429),
            f"{r.pct_429:.2f}",
            str(r.duplicates),
            str(r.missing),
            str(r.failed_but_created),
            f"{r.faults_hit}/{len(faults)}",
            ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "-",
        )
        for r in results
    ]
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="creates to fan out")
    parser.add_argument("--limit", type=int, default=100, help="server limit L per window")
    parser.add_argument("--window", type=float, default=1.0, help="window W in seconds")
    parser.add_argument("--dialect", default="modern", choices=DIALECTS)
    parser.add_argument("--threads", type=int, default=16, help="closeio thread pool size")
    parser.add_argument("--clients", default="close-async,closeio", help="comma-separated")
    parser.add_argument("--faults", type=parse_faults, default=[], help="e.g. drop:3,504:3")
    parser.add_argument("--quick", action="store_true", help="CI smoke: n=200 L=50 W=0.25")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.limit, args.window = 200, 50, 0.25
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = set(clients) - {"close-async", "closeio"}
    if unknown or not clients:
        parser.error(f"--clients: unknown {sorted(unknown)}; use close-async and/or closeio")
    # closeio logs on the root logger (an ERROR per 429 in the legacy dialects): keep the table
    # readable. Only records logged on the root logger itself are dropped.
    logging.getLogger().addFilter(lambda record: False)

    results: list[Result] = []
    for name in clients:  # one after the other, never overlapping
        if name == "closeio":
            results.append(run_closeio(args, args.faults))
        else:
            results.append(asyncio.run(run_close_async(args, args.faults)))
    print_table(results, args, args.faults)

    if args.json:
        params = {k: v for k, v in vars(args).items() if k != "json"}
        report = {
            "machine": machine_info(),
            "params": {**params, "clients": clients},
            "results": {r.client: asdict(r) for r in results},
        }
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
