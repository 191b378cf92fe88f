"""CPU per create of close-async against raw aiohttp, counted in instructions: a figure the load
of a shared machine does not move.

``bench_bulk.py`` times creates/s and CPU seconds per create; on a 2-core machine shared with
other work its CPU ratio moved from 1.09x to 1.38x between two runs of the same tree minutes
apart. This script counts instead: each measurement is a fresh interpreter under
``valgrind --tool=callgrind`` that warms up (200 creates: the pool of 100 connections is open),
then makes ``n`` creates with ``asyncio.gather`` against a FakeCloseServer in the same process
(so, as in ``bench_bulk.py``, the figure is the client AND the server: the server's share is the
same for both clients). Only the ``n`` creates are counted: the child stops before and after
them, and the parent zeroes and then reads callgrind's counters (``callgrind_control``).
The clients are ``bench_bulk.py``'s own: close-async at its defaults, raw aiohttp behind a
semaphore of the pool's size (its fairest setting), the same bodies. Each against a server that
sends no rate-limit headers, and one that sends ``RateLimit`` on every answer with a limit nobody
reaches and a window that does not roll during the run (``--headers``), so what shows is reading
the header and keeping the pacer's view, not waiting at a roll.

Target (issue 11): with headers, close-async <= 1.10x raw aiohttp's CPU per create.

    python benchmarks/bulk_cpu.py               # n = 300: 4 runs under callgrind, ~4 min
    python benchmarks/bulk_cpu.py --n 150       # quicker
    python benchmarks/bulk_cpu.py --quick --json PATH   # CI smoke: no valgrind, process_time
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import counting
from bench_bulk import (
    API_KEY,
    CLOSE_ASYNC,
    HEADERS_LIMIT,
    RAW,
    WITH_HEADERS,
    close_async_round,
    raw_aiohttp,
)
from bench_bulk import raw_round as raw_gather
from payloads import machine_info, write_report

from close_async import AsyncCloseClient
from close_async.testing import FakeCloseServer

TARGET = 1.10
WINDOW = 3600.0
WARM_UP = 200  # >= the pool (100 connections): none is opened while counting


async def creates(client: str, n: int, *, headers: bool, handshake: bool = False) -> float:
    """Warm up, then ``n`` creates; the CPU seconds of the ``n`` (process_time)."""
    limit = HEADERS_LIMIT if headers else None
    # A window that does not roll while counting (a 1 s one rolls every few dozen creates under
    # callgrind, ~50x slower): what is counted is the headers' reading, never a wait at a roll.
    async with (
        FakeCloseServer(rate_limit=limit, window=WINDOW, api_keys=[API_KEY]) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        if client == CLOSE_ASYNC:
            if handshake:  # counted: connections live as long as natively
                counting.keep_connections()
            close = await stack.enter_async_context(
                AsyncCloseClient(API_KEY, base_url=server.base_url)
            )

            def round_(k: int) -> Awaitable[list[Any]]:
                return close_async_round(close, k)
        else:
            keepalive = counting.SLOW_KEEPALIVE if handshake else 15.0  # 15 s: aiohttp's default
            connector = aiohttp.TCPConnector(keepalive_timeout=keepalive)
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            create = raw_aiohttp(session, server.base_url + "opportunity/")

            def round_(k: int) -> Awaitable[list[Any]]:
                return raw_gather(create, k)

        await round_(WARM_UP)
        gc.collect()
        if handshake:
            counting.handshake("ready")
        started = time.process_time()
        await round_(n)
        seconds = time.process_time() - started
        if handshake:
            counting.handshake("done")
        if len(server.created) != WARM_UP + n:
            raise RuntimeError(f"{client}: {len(server.created)} created, not {WARM_UP + n}")
    return seconds


def instructions(client: str, n: int, *, headers: bool) -> int:
    """Instructions of the ``n`` creates alone, by callgrind (``counting.instructions``)."""
    command = [sys.executable, __file__, "--child", client, "--n", str(n), "--handshake"]
    return counting.instructions([*command, "--headers"] if headers else command)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="creates per measurement (300)")
    parser.add_argument("--quick", action="store_true", help="no valgrind: process_time (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--only",
        choices=[CLOSE_ASYNC, RAW, CLOSE_ASYNC + WITH_HEADERS, RAW + WITH_HEADERS],
        help="count this one alone",
    )
    parser.add_argument("--child", choices=[CLOSE_ASYNC, RAW], help=argparse.SUPPRESS)
    parser.add_argument("--headers", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--handshake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(creates(args.child, args.n, headers=args.headers, handshake=args.handshake))
        return 0
    counted = not args.quick and counting.can_count()
    unit = "instructions" if counted else "CPU µs (process_time, not counted)"
    per_create: dict[str, float] = {}
    for headers in (False, True):
        for client in (CLOSE_ASYNC, RAW):
            name = client + (WITH_HEADERS if headers else "")
            if args.only and name != args.only:
                continue
            if counted:
                per_create[name] = instructions(client, args.n, headers=headers) / args.n
            else:
                n = 100 if args.quick else args.n
                per_create[name] = asyncio.run(creates(client, n, headers=headers)) / n * 1e6
            print(f"  {name}: {per_create[name]:,.0f} {unit} per create", file=sys.stderr)
    if args.only:
        return 0
    print(f"| server sends | close-async {unit}/create | raw aiohttp | close-async x raw |")
    print("|---|--:|--:|--:|")
    ratios = {}
    for label, suffix in (
        ("no rate-limit headers", ""),
        ("`RateLimit` on every answer", WITH_HEADERS),
    ):
        ours, raw = per_create[CLOSE_ASYNC + suffix], per_create[RAW + suffix]
        ratios[label] = ours / raw
        print(f"| {label} | {ours:,.0f} | {raw:,.0f} | {ours / raw:.3f} |")
    met = ratios["`RateLimit` on every answer"] <= TARGET
    print(f"target: with headers <= {TARGET:.2f}x raw aiohttp: {'met' if met else 'NOT met'}")
    if args.json:
        report: dict[str, Any] = {
            "benchmark": "bulk_cpu",
            "machine": machine_info(),
            "params": {"n": args.n, "quick": args.quick, "counted": counted, "unit": unit},
            "per_create": per_create,
            "ratios": ratios,
            "target_met": met,
        }
        write_report(Path(args.json), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
