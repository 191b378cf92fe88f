"""Bulk-create benchmark: creates per second against a local FakeCloseServer that limits nothing.

Two server settings, one after the other: no rate-limit headers at all, then a ``RateLimit``
header on every response (a limit far above what is sent, so nobody waits: the cost of reading
the header is what shows). Three clients in one run, sending the same JSON body:

* close-async: ``AsyncCloseClient.opportunities.create`` fanned out with ``asyncio.gather``
  (default ``max_connections=100``), responses decoded to ``Opportunity``.
* raw aiohttp, the floor of client overhead: the same session settings
  (``TCPConnector(limit=100)``), the same headers (Basic auth built by hand), the body encoded
  with msgspec and the response decoded with ``msgspec.json.decode`` to a dict. Nothing else:
  no validation, retries, pacing or error classification. Behind an ``asyncio.Semaphore`` of
  the same size as the pool, like close-async's own slots: without it, the requests over 100
  queue inside aiohttp's connector, whose waiter bookkeeping costs raw aiohttp ~10% more CPU
  than the fair floor.
* closeio, Close's official sync client, in a ``ThreadPoolExecutor`` (the server then runs on its
  own event loop in a background thread).

close-async and raw aiohttp run alternately (the order flips every round), several rounds each,
against one server in the same event loop: the server shares the process and its CPU with the
client, so a client's overhead shows diluted by the server's. Results are medians over rounds.

    python benchmarks/bench_bulk.py            # full run, writes benchmarks/results/bulk.json
    python benchmarks/bench_bulk.py --quick    # CI smoke run: a few seconds
    python benchmarks/bench_bulk.py --profile  # also profile one close-async round (cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import datetime as dt
import gc
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from multidict import CIMultiDict, CIMultiDictProxy
from payloads import load_average, machine_info, write_report

from close_async import AsyncCloseClient, CreateOpportunity, Opportunity, decode_opportunity
from close_async._constants import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, USER_AGENT
from close_async._fake.opportunity import build_opportunity
from close_async._resources.opportunities.codec import encode_create
from close_async._transport.ratelimit import parse_rate_limit
from close_async.testing import FakeCloseServer

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "bulk.json"
API_KEY = "bench-key"
LEAD_ID = "lead_" + "BulkBenchmark".ljust(43, "0")
CUSTOM = {  # a string, a number and a list, like real custom fields
    "cf_BulkBenchmarkText0000000000000000000000000000": "Gold",
    "cf_BulkBenchmarkNumber00000000000000000000000000": 12.5,
    "cf_BulkBenchmarkChoices0000000000000000000000000": ["a", "b"],
}
CLOSE_ASYNC, RAW, CLOSEIO = "close-async", "raw aiohttp", "closeio"


def fields(i: int) -> dict[str, Any]:
    """The create of item ``i`` as keyword arguments of ``opportunities.create``."""
    return {
        "lead_id": LEAD_ID,
        "value": 100 * (i + 1),
        "value_period": "monthly",
        "confidence": 50,
        "note": f"item-{i}",
        "custom": CUSTOM,
    }


def body(i: int) -> bytes:
    """The JSON body of item ``i`` as raw aiohttp and closeio send it: what close-async sends."""
    item = fields(i)
    custom = item.pop("custom")
    return msgspec.json.encode({**item, **{f"custom.{k}": v for k, v in custom.items()}})


def check_round(server: FakeCloseServer, n: int, results: list[Any]) -> None:
    """Every item created once, every answer what it should be."""
    assert len(results) == n, (len(results), n)
    notes = sorted(opp["note"] for opp in server.created)
    assert notes == sorted(f"item-{i}" for i in range(n)), "missing or duplicated creates"
    first = results[0]
    custom = first.custom if isinstance(first, Opportunity) else {
        k.removeprefix("custom."): v for k, v in first.items() if k.startswith("custom.")
    }  # fmt: skip
    assert custom == CUSTOM, custom


# --- the async clients ---------------------------------------------------------------------------


async def close_async_round(close: AsyncCloseClient, n: int) -> list[Any]:
    return await asyncio.gather(*(close.opportunities.create(**fields(i)) for i in range(n)))


def raw_aiohttp(session: aiohttp.ClientSession, url: str) -> Callable[[int], Awaitable[Any]]:
    token = base64.b64encode(f"{API_KEY}:".encode()).decode("ascii")
    headers = {
        "Authorization": f"Basic {token}",
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    timeout = aiohttp.ClientTimeout(total=DEFAULT_TIMEOUT)
    decode = msgspec.json.decode
    slots = asyncio.Semaphore(DEFAULT_MAX_CONNECTIONS)  # no request waits in aiohttp's pool

    async def create(i: int) -> Any:
        async with (
            slots,
            session.post(url, data=body(i), headers=headers, timeout=timeout) as response,
        ):
            raw = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {raw[:200]!r}")
        return decode(raw)

    return create


async def raw_round(create: Callable[[int], Awaitable[Any]], n: int) -> list[Any]:
    return await asyncio.gather(*(create(i) for i in range(n)))


async def timed(server: FakeCloseServer, n: int, run: Awaitable[list[Any]]) -> dict[str, float]:
    server.reset()
    # Every round starts from the same collector state: the cyclic GC costs ~20% of a create
    # here (thousands of live tasks), and whichever round a full collection of the previous
    # round's garbage lands in loses ~0.1 s. Collections during the round still count.
    gc.collect()
    cpu, start = time.process_time(), time.perf_counter()
    results = await run
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    check_round(server, n, results)
    return {"elapsed": elapsed, "creates_per_s": n / elapsed, "cpu_us_per_create": cpu / n * 1e6}


# A limit nobody reaches: every response carries "RateLimit: limit=..., remaining=..., reset=...".
HEADERS_LIMIT = 10**9
WITH_HEADERS = " + RateLimit"


async def run_async_clients(
    args: argparse.Namespace, *, headers: bool
) -> tuple[dict[str, list[dict[str, float]]], cProfile.Profile | None]:
    rounds: dict[str, list[dict[str, float]]] = {CLOSE_ASYNC: [], RAW: []}
    profiler = None
    limit = HEADERS_LIMIT if headers else None
    async with FakeCloseServer(rate_limit=limit, api_keys=[API_KEY]) as server:
        url = server.base_url + "opportunity/"
        connector = aiohttp.TCPConnector(limit=DEFAULT_MAX_CONNECTIONS)
        async with (
            AsyncCloseClient(API_KEY, base_url=server.base_url) as close,
            aiohttp.ClientSession(connector=connector) as session,
        ):
            create = raw_aiohttp(session, url)
            runs: dict[str, Callable[[], Awaitable[list[Any]]]] = {
                CLOSE_ASYNC: lambda: close_async_round(close, args.n),
                RAW: lambda: raw_round(create, args.n),
            }
            # Warm up both (connections opened, decoder types built), not timed.
            for name, run in runs.items():
                await timed(server, args.n, run())
                print(f"  warm-up {name} done", flush=True)
            order = list(runs)
            for r in range(args.rounds):
                for name in order if r % 2 == 0 else order[::-1]:
                    result = await timed(server, args.n, runs[name]())
                    rounds[name].append(result)
                    print(
                        f"  round {r + 1}/{args.rounds} {name:12} "
                        f"{result['creates_per_s']:8.0f} creates/s",
                        flush=True,
                    )
            if args.profile and headers:
                profiler = await profile_close_async(runs[CLOSE_ASYNC], server, args.n)
    return rounds, profiler


async def profile_close_async(
    run: Callable[[], Awaitable[list[Any]]], server: FakeCloseServer, n: int
) -> cProfile.Profile:
    """One close-async round under cProfile (the server's work, in the same loop, is in it too)."""
    server.reset()
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        results = await run()
    finally:
        profiler.disable()
    check_round(server, n, results)
    return profiler


# --- closeio -------------------------------------------------------------------------------------


def run_closeio(args: argparse.Namespace) -> list[dict[str, float]] | None:
    try:
        import requests
        from closeio_api import Client
    except ImportError:
        return None
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-close-server", daemon=True)
    thread.start()
    server = FakeCloseServer(rate_limit=None, api_keys=[API_KEY])
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    rounds: list[dict[str, float]] = []
    try:
        client = Client(API_KEY)
        client.base_url = server.base_url  # Client() hardcodes api.close.com
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=args.threads)
        client.session.mount("http://", adapter)  # one pooled connection per thread

        def create(i: int) -> Any:
            item = fields(i)
            custom = item.pop("custom")
            data = {**item, **{f"custom.{k}": v for k, v in custom.items()}}
            return client.post("opportunity", data=data)

        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            list(pool.map(create, range(min(args.n, 200))))  # warm-up: connections, imports
            for r in range(args.closeio_rounds):
                server.reset()
                cpu, start = time.process_time(), time.perf_counter()
                results = list(pool.map(create, range(args.n)))
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                check_round(server, args.n, results)
                rounds.append(
                    {
                        "elapsed": elapsed,
                        "creates_per_s": args.n / elapsed,
                        "cpu_us_per_create": cpu / args.n * 1e6,
                    }
                )
                print(
                    f"  round {r + 1}/{args.closeio_rounds} {CLOSEIO:12} "
                    f"{args.n / elapsed:8.0f} creates/s",
                    flush=True,
                )
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
    return rounds


# --- report --------------------------------------------------------------------------------------


def summarize(rounds: list[dict[str, float]], raw: list[dict[str, float]]) -> dict[str, Any]:
    rates = [r["creates_per_s"] for r in rounds]
    median = statistics.median(rates)
    cpu = statistics.median(r["cpu_us_per_create"] for r in rounds)
    raw_rates = [r["creates_per_s"] for r in raw]
    summary = {
        "creates_per_s": round(median, 1),
        "min": round(min(rates), 1),
        "max": round(max(rates), 1),
        "cpu_us_per_create": round(cpu, 1),
        # Ratio of the medians; for close-async (interleaved with raw aiohttp) also the median of
        # the ratios within each round, which cancels slow drifts of a shared machine.
        "ratio_to_raw_aiohttp": round(median / statistics.median(raw_rates), 4),
        "paired_ratio_to_raw_aiohttp": None,
        "cpu_ratio_to_raw_aiohttp": round(
            statistics.median(r["cpu_us_per_create"] for r in raw) / cpu, 4
        ),
        "rounds": [{k: round(v, 4) for k, v in r.items()} for r in rounds],
    }
    if len(rounds) == len(raw):
        paired = [a / b for a, b in zip(rates, raw_rates, strict=True)]
        summary["paired_ratio_to_raw_aiohttp"] = round(statistics.median(paired), 4)
    return summary


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.n} creates per round, asyncio.gather with {DEFAULT_MAX_CONNECTIONS} connections"
        f" (closeio: {args.threads} threads); server in this process, limiting nothing"
    )
    head = (
        "client",
        "rounds",
        "creates/s",
        "min-max",
        "x raw (paired)",
        "x raw (medians)",
        "CPU us/create",
        "x raw (CPU)",
    )
    rows = [
        (
            name,
            str(len(r["rounds"])),
            f"{r['creates_per_s']:,.0f}",
            f"{r['min']:,.0f}-{r['max']:,.0f}",
            "-" if (paired := r["paired_ratio_to_raw_aiohttp"]) is None else f"{paired:.2f}",
            f"{r['ratio_to_raw_aiohttp']:.2f}",
            f"{r['cpu_us_per_create']:.0f}",
            f"{r['cpu_ratio_to_raw_aiohttp']:.2f}",
        )
        for name, r in results.items()
    ]
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        cells = [c.rjust(w) for c, w in zip(row, widths, strict=True)]
        cells[0] = row[0].ljust(widths[0])
        print("  ".join(cells))
    print(
        "creates/s: median over rounds. x raw (paired): median over rounds of creates/s relative"
        " to raw aiohttp's in the same round (the headline: it cancels the drift of a shared"
        " machine); x raw (medians): ratio of the medians.\nCPU us/create: CPU time of the whole"
        " process (client AND server) per create; x raw (CPU): raw aiohttp's CPU per create /"
        " this client's."
    )


def _is_fake(path: Path) -> bool:
    """A file of the fake server (``close_async/_fake/``, ``close_async/testing/``)."""
    return bool({"_fake", "testing"} & set(path.parts))


def print_profile(profiler: cProfile.Profile, n: int) -> None:
    """close_async's client code (not the fake server), by own time."""
    stats = pstats.Stats(profiler)
    raw_stats: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw_stats.values())
    rows = []
    for (filename, line, func), (_, calls, tottime, cumtime, _) in raw_stats.items():
        path = Path(filename)
        if "close_async" not in path.parts or _is_fake(path):
            continue
        rows.append((f"{path.name}:{line}({func})", calls, tottime, cumtime))
    print(f"\ncProfile of one close-async round ({n} creates; server included): {total:.2f} s CPU")
    print("(calls count coroutine resumptions; profiling inflates small functions)")
    print(f"{'close_async client function':52} {'calls':>7} {'own us/create':>14}")
    for name, calls, tottime, _ in sorted(rows, key=lambda r: -r[2])[:12]:
        print(f"{name:52} {calls:7d} {tottime / n * 1e6:14.1f}")
    own = sum(r[2] for r in rows)
    print(f"close_async client code, own time: {own / n * 1e6:.0f} us/create ({own / total:.1%})")
    by_package: dict[str, float] = {}
    for (filename, _, _), entry in raw_stats.items():
        path = Path(filename)
        if "close_async" in path.parts:
            package = "close_async (fake server)" if _is_fake(path) else "close_async (client)"
        elif "site-packages" in path.parts:
            package = path.parts[path.parts.index("site-packages") + 1]
        elif filename.startswith("~") or filename.startswith("<"):
            package = "builtins / C"
        else:
            package = "stdlib" if "python3" in filename else path.name
        by_package[package] = by_package.get(package, 0.0) + entry[2]
    print("own time by package (us/create):")
    for package, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {package:30} {seconds / n * 1e6:8.0f}  ({seconds / total:.1%})")


def breakdown() -> dict[str, float]:
    """CPU cost of the steps close-async adds around one request, measured alone (us/create),
    next to what raw aiohttp does instead. Private internals on purpose (only with --profile).
    (Retries cost nothing here: tenacity is only set up after a failed attempt.)
    """
    item = CreateOpportunity(**fields(0))
    response = msgspec.json.encode(build_opportunity(msgspec.json.decode(body(0)), "orga_1"))
    headers = CIMultiDictProxy(
        CIMultiDict(
            {
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(response)),
                "Date": "Mon, 01 Jan 2024 00:00:00 GMT",
                "Server": "Python/3.11 aiohttp/3.14",
            }
        )
    )

    limited = CIMultiDictProxy(
        CIMultiDict({**headers, "RateLimit": "limit=600, remaining=599, reset=0.123456"})
    )

    def per_call(fn: Callable[[], Any], n: int = 5000) -> float:
        best = float("inf")
        for _ in range(5):
            start = time.thread_time()
            for _ in range(n):
                fn()
            best = min(best, (time.thread_time() - start) / n)
        return round(best * 1e6, 2)

    return {
        "CreateOpportunity(**fields) + validation": per_call(
            lambda: CreateOpportunity(**fields(0))
        ),
        "encode_create(item)": per_call(lambda: encode_create(item)),
        "  raw: msgspec.json.encode(dict)": per_call(lambda: body(0)),
        "parse_rate_limit(headers without RateLimit)": per_call(lambda: parse_rate_limit(headers)),
        "parse_rate_limit(headers with RateLimit)": per_call(lambda: parse_rate_limit(limited)),
        "decode_opportunity(response)": per_call(lambda: decode_opportunity(response)),
        "  raw: msgspec.json.decode(response)": per_call(lambda: msgspec.json.decode(response)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=3000, help="creates per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per async client")
    parser.add_argument("--closeio-rounds", type=int, default=3, help="rounds of closeio")
    parser.add_argument("--threads", type=int, default=16, help="closeio thread pool size")
    parser.add_argument("--no-closeio", action="store_true", help="skip the closeio client")
    parser.add_argument("--profile", action="store_true", help="profile a close-async round")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: n=300, 2 rounds")
    parser.add_argument("--json", metavar="PATH", default=str(DEFAULT_JSON), help="JSON output")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.rounds, args.closeio_rounds = 300, 2, 1
    if args.n < 1 or args.rounds < 1 or args.closeio_rounds < 1:
        parser.error("--n, --rounds and --closeio-rounds must be >= 1")
    # What close-async sends is byte for byte what the others send.
    assert encode_create(CreateOpportunity(**fields(0))) == body(0)

    machine = machine_info()
    results: dict[str, dict[str, Any]] = {}
    profiler = None
    for headers in (False, True):
        suffix = WITH_HEADERS if headers else ""
        setting = "RateLimit on every response" if headers else "no rate-limit headers"
        print(f"close-async and raw aiohttp, interleaved; {setting}:")
        rounds, profiled = asyncio.run(run_async_clients(args, headers=headers))
        profiler = profiled or profiler
        for name, r in rounds.items():
            results[name + suffix] = summarize(r, rounds[RAW])
    closeio_rounds = None
    if not args.no_closeio:
        print("closeio:")
        closeio_rounds = run_closeio(args)
        if closeio_rounds is None:
            print("  skipped: closeio is not installed")
    if closeio_rounds:
        raw_rounds = [
            {"creates_per_s": r["creates_per_s"], "cpu_us_per_create": r["cpu_us_per_create"]}
            for r in results[RAW]["rounds"]
        ]
        results[CLOSEIO] = summarize(closeio_rounds, raw_rounds)
    print_table(results, args)
    ratio = results[CLOSE_ASYNC]["paired_ratio_to_raw_aiohttp"]
    verdict = "met" if ratio >= 0.9 else "NOT met"
    print(f"close-async target: >= 0.90 x raw aiohttp (paired): {ratio:.2f} ({verdict})")
    for suffix in ("", WITH_HEADERS):
        cpu = 1 / results[CLOSE_ASYNC + suffix]["cpu_ratio_to_raw_aiohttp"]
        verdict = "met" if cpu <= 1.10 else "NOT met"
        label = "RateLimit on every response" if suffix else "no headers"
        print(f"CPU per create, {label}: {cpu:.2f} x raw aiohttp (target <= 1.10: {verdict})")
    profile: dict[str, Any] | None = None
    if profiler is not None:
        print_profile(profiler, args.n)
        steps = breakdown()
        print("\nCPU per create of the steps close-async adds, each measured alone:")
        for step, us in steps.items():
            print(f"  {step:46} {us:8.2f} us")
        profile = {"steps_us_per_create": steps}

    machine["load_average_end"] = load_average()
    report = {
        "benchmark": "bulk",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "params": {
            "n": args.n,
            "rounds": args.rounds,
            "closeio_rounds": args.closeio_rounds,
            "threads": args.threads,
            "max_connections": DEFAULT_MAX_CONNECTIONS,
            "quick": args.quick,
            "server": "FakeCloseServer in this process: rate_limit=None (no headers), then"
            f" rate_limit={HEADERS_LIMIT} (RateLimit on every response, nobody waits)",
        },
        "results": results,
        "profile": profile,
    }
    print(f"wrote {write_report(args.json, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
