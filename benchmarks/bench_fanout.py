"""Fan-out benchmark: N creates at once against every rate-limit model of FakeCloseServer.

For each model (``RateLimitModel.preset``) and window size, ONE FakeCloseServer runs on its
own event loop in a background thread; close-async (``asyncio.gather`` in the main thread)
and Close's official sync client ``closeio`` (a thread pool) fan out against it one after the
other, the server's record and clock reset in between. Reported per model and client:

* ``ratio``: creates / what the model admits to a perfect client between the fan-out start
  and the last completion, **every partial window counted in full** (fixed: every window
  touched at its limit; sliding: ``limit * (floor(T / W) + 1)``; token bucket: the full
  bucket plus the refill over T). A perfect client scores 1.0, nothing scores more.
* ``429 %`` of every request the server saw (retries included), ``failed`` (the client
  raised), ``dups`` (extra creates of one item) and ``lost`` (items never created); dups and
  lost are counted from the server's own record (each item carries a unique ``note``).

    python benchmarks/bench_fanout.py --quick --json /tmp/fanout.json     # CI smoke, seconds
    python benchmarks/bench_fanout.py                                     # every model, ~10 min
    python benchmarks/bench_fanout.py --models whole,ingress --windows 1 --clients close-async
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import faulthandler
import logging
import math
import sys
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import requests
from closeio_api import APIError, Client  # type: ignore[import-untyped]
from payloads import machine_info, write_report

from close_async import AsyncCloseClient
from close_async.testing import FAULTS, PRESETS, FakeCloseServer, RateLimitModel

T = TypeVar("T")
LEAD_ID = "lead_" + "FanoutBenchmark".ljust(43, "0")
HANG_SECONDS = 2.0  # a scripted "hang" answers 200 after this (closeio has no timeout)
# The table; "none" (no headers at all, empty 429s) runs only when asked for.
MODELS = ("decimal", "whole", "semicolon", "on_429", "ingress", "hidden", "sliding",
          "token_bucket", "changing", "shared")  # fmt: skip
NO_USABLE_HEADERS = {"on_429", "ingress", "hidden", "none"}  # target: <= 5% 429s, >= 0.85
QUICK_MODELS = ("decimal", "sliding", "token_bucket")  # no whole-second waits: seconds in all


@dataclass
class Result:
    model: str
    window: float
    client: str
    n: int
    ok: int
    failed: int  # the client raised
    elapsed: float  # fan-out start to the last completion, seconds
    allowed: float  # what the model admits over that span, partial windows in full
    ratio: float  # ok / allowed
    rate: float  # ok / elapsed, creates per second
    requests: int  # every attempt the server saw
    count_429: int
    pct_429: float
    duplicates: int  # sum over items of (times created - 1), from the server's record
    lost: int  # items never created, from the server's record
    failed_but_created: int
    faults_hit: int
    errors: dict[str, int]
    target: str  # close-async only: "met" or what is missed


class Stalled(Exception):
    """A create still pending ``--stall-after`` seconds after the fan-out started."""


class ServerThread:
    """An event loop in a daemon thread that hosts the FakeCloseServer of each model."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


async def reset(server: FakeCloseServer, offset: float = 0.0) -> None:
    server.reset()  # in the server's loop, between two of its requests
    if offset:  # the fan-out starts this far into the server's first window
        await asyncio.sleep(offset)


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
    faster or slower (or fails items) still meets every fault. Runs in the server's loop.
    """
    for k, fault in enumerate(faults):
        threshold = (k + 1) * n // (2 * (len(faults) + 1))
        while True:  # FakeCloseServer has no hook for "created": poll its list
            if len(server.created) >= threshold:
                server.fail_next(fault)
                break
            await asyncio.sleep(0.002)


def capacity(model: RateLimitModel, start: float, end: float) -> float:
    """Creates ``model`` admits to a perfect client in [start, end] (server-clock seconds).

    Every partial window counts in full, so a client that needs one more window than a
    perfect one is charged the whole of it.
    """
    w, span = model.window, end - start
    if model.algorithm == "fixed":
        return sum(model.enforced_at(k * w) for k in range(int(start // w), int(end // w) + 1))
    if model.algorithm == "sliding":
        return model.enforced_at(start) * (math.floor(span / w) + 1)
    return model.enforced_at(start) * (1 + span / w)  # full bucket, then the refill


def error_name(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if isinstance(exc, APIError):
        status = exc.response.status_code
    return type(exc).__name__ + (f" {status}" if status is not None else "")


def target(model: str, ratio: float, pct_429: float, failed: int, dups: int, lost: int) -> str:
    """What the issue's targets for close-async say about one row."""
    max_429, min_ratio = (5.0, 0.85) if model in NO_USABLE_HEADERS else (1.0, 0.95)
    misses = [f"429 {pct_429:.1f}% > {max_429:g}%"] if pct_429 > max_429 else []
    misses += [f"ratio {ratio:.3f} < {min_ratio}"] if ratio < min_ratio else []
    misses += [f"{k} {v}" for k, v in (("failed", failed), ("dups", dups), ("lost", lost)) if v]
    return "; ".join(misses) or "met"


def tally(name: str, model_name: str, server: FakeCloseServer, outcomes: Sequence[object],
          span: tuple[float, float], faults: int) -> Result:  # fmt: skip
    model = server.rate_limit_model
    assert model is not None
    start, end = span  # time.monotonic(), which is the server loop's clock too
    seen = collections.Counter(opp["note"] for opp in server.created)
    errors = collections.Counter(error_name(o) for o in outcomes if isinstance(o, BaseException))
    failed = sum(errors.values())
    ok = len(outcomes) - failed
    allowed = capacity(model, start - server.started_at, end - server.started_at)
    count_429, requests_seen = server.count_429, len(server.requests)
    pct_429 = 100 * count_429 / max(requests_seen, 1)
    dups = sum(c - 1 for c in seen.values() if c > 1)
    lost = sum(1 for i in range(len(outcomes)) if seen[f"item-{i}"] == 0)
    ratio = ok / allowed
    return Result(
        model=model_name,
        window=model.window,
        client=name,
        n=len(outcomes),
        ok=ok,
        failed=failed,
        elapsed=round(end - start, 3),
        allowed=round(allowed, 1),
        ratio=round(ratio, 4),
        rate=round(ok / (end - start), 1),
        requests=requests_seen,
        count_429=count_429,
        pct_429=round(pct_429, 3),
        duplicates=dups,
        lost=lost,
        failed_but_created=sum(
            1 for i, o in enumerate(outcomes) if isinstance(o, BaseException) and seen[f"item-{i}"]
        ),
        faults_hit=sum(1 for record in server.requests if record.fault is not None),
        errors=dict(sorted(errors.items())),
        target=target(model_name, ratio, pct_429, failed, dups, lost) if faults == 0 else "-",
    )


def api_keys(model: str) -> list[str]:
    """One key, or two for the model whose organisation limit two keys share."""
    return ["bench-key-a", "bench-key-b"] if model == "shared" else ["bench-key"]


async def run_close_async(host: ServerThread, server: FakeCloseServer, name: str,
                          args: argparse.Namespace) -> Result:  # fmt: skip
    keys = api_keys(name)
    clients = [AsyncCloseClient(key, base_url=server.base_url) for key in keys]
    try:
        creates = [
            clients[i % len(keys)].opportunities.create(
                lead_id=LEAD_ID, value=100 * (i + 1), note=f"item-{i}"
            )
            for i in range(args.n)
        ]
        await host.arun(reset(server, args.offset))
        injector = asyncio.run_coroutine_threadsafe(
            inject_faults(server, args.faults, args.n), host.loop
        )
        start = time.monotonic()
        tasks = [asyncio.ensure_future(create) for create in creates]
        _, stalled = await asyncio.wait(tasks, timeout=args.stall_after)
        end = time.monotonic()
        for task in stalled:  # a hang is reported as one, not waited out
            task.cancel()
        await asyncio.gather(*stalled, return_exceptions=True)
        outcomes = [Stalled() if t in stalled else t.exception() or t.result() for t in tasks]
        injector.cancel()
    finally:
        for client in clients:
            await client.aclose()
    return tally("close-async", name, server, outcomes, (start, end), len(args.faults))


def run_closeio(host: ServerThread, server: FakeCloseServer, name: str,
                args: argparse.Namespace) -> Result:  # fmt: skip
    clients = []
    for key in api_keys(name):
        client = Client(key)  # default max_retries=5 and its own 429/503 handling
        client.base_url = server.base_url  # Client() hardcodes api.close.com; API takes it
        # requests pools 10 connections per host; give every thread one (no retry change).
        client.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=args.threads))
        clients.append(client)

    def create(i: int) -> Any:
        data = {"lead_id": LEAD_ID, "value": 100 * (i + 1), "note": f"item-{i}"}
        return clients[i % len(clients)].post("opportunity", data=data)

    host.run(reset(server, args.offset))
    injector = asyncio.run_coroutine_threadsafe(
        inject_faults(server, args.faults, args.n), host.loop
    )
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        futures = [pool.submit(create, i) for i in range(args.n)]
        outcomes = [f.exception() or f.result() for f in futures]
    end = time.monotonic()
    injector.cancel()
    return tally("closeio", name, server, outcomes, (start, end), len(args.faults))


def run_model(host: ServerThread, name: str, window: float, args: argparse.Namespace
              ) -> list[Result]:  # fmt: skip
    model = RateLimitModel.preset(name, limit=round(args.rate * window), window=window)
    server = FakeCloseServer(rate_limit=model, hang_seconds=HANG_SECONDS)
    host.run(server.start())
    results = []
    # Should anything else hang (not a create), say where on stderr instead of waiting mutely.
    faulthandler.dump_traceback_later(len(args.clients) * (args.stall_after + 60))
    try:
        for client in args.clients:  # one after the other, never overlapping
            if client == "closeio":
                results.append(run_closeio(host, server, name, args))
            else:
                results.append(asyncio.run(run_close_async(host, server, name, args)))
    finally:
        host.run(server.close())
        faulthandler.cancel_dump_traceback_later()
    return results


def table_row(r: Result) -> tuple[str, ...]:
    errors = ", ".join(f"{k}: {v}" for k, v in r.errors.items()) or "-"
    return (r.model, f"{r.window:g}", r.client, f"{r.ok}/{r.n}", f"{r.elapsed:.2f}",
            f"{r.rate:.1f}", f"{r.ratio:.3f}", str(r.requests), f"{r.pct_429:.2f}", str(r.failed),
            str(r.duplicates), str(r.lost), errors,
            r.target if r.client == "close-async" else "")  # fmt: skip


def print_table(results: list[Result]) -> None:
    head = ("model", "W s", "client", "ok/n", "elapsed s", "rate/s", "ratio", "reqs", "429 %",
            "failed", "dups", "lost", "errors", "close-async target")  # fmt: skip
    rows = [table_row(r) for r in results]
    widths = [max(len(c) for c in col) for col in zip(head, *rows, strict=True)]
    for row in (head, *rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def print_markdown(results: list[Result]) -> None:
    """One row per model and window, the clients side by side (docs/benchmarks.md)."""
    clients = list(dict.fromkeys(r.client for r in results))
    cells = " | ".join(f"{c} ratio | 429 % | failed / dups / lost" for c in clients)
    print(f"| model | W s | {cells} | close-async target |")
    print("|---|--:|" + "--:|--:|--:|" * len(clients) + "---|")
    by_run: dict[tuple[str, float], dict[str, Result]] = collections.defaultdict(dict)
    for r in results:
        by_run[r.model, r.window][r.client] = r
    for (model, window), run in by_run.items():
        parts = [
            f"{run[c].ratio:.3f} | {run[c].pct_429:.1f} | "
            f"{run[c].failed} / {run[c].duplicates} / {run[c].lost}"
            for c in clients
        ]
        mine = run.get("close-async")
        print(f"| {model} | {window:g} | {' | '.join(parts)} | {mine.target if mine else ''} |")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="creates to fan out per run")
    parser.add_argument("--rate", type=float, default=200.0, help="allowed creates per second")
    parser.add_argument("--windows", default="1,0.5", help="window sizes W in seconds")
    parser.add_argument("--models", default=",".join(MODELS), help=f"any of {PRESETS}")
    parser.add_argument("--threads", type=int, default=16, help="closeio thread pool size")
    parser.add_argument("--clients", default="close-async,closeio", help="comma-separated")
    parser.add_argument("--faults", type=parse_faults, default=[], help="e.g. drop:3,504:3")
    parser.add_argument("--quick", action="store_true", help="CI smoke: n=40, W=0.1, 3 models")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON here")
    parser.add_argument("--stall-after", type=float, help="s; default 60 + 5 n / rate")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    parser.add_argument(
        "--offset",
        type=float,
        default=0.0,
        help="s: start each fan-out this far into the server's first window (live Close's "
        "windows do not begin with your fan-out; default 0: they do)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.windows = 40, "0.1"
        if args.models == ",".join(MODELS):
            args.models = ",".join(QUICK_MODELS)
    if args.stall_after is None:  # close-async creates still pending then count as Stalled
        args.stall_after = 60 + 5 * args.n / args.rate
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    windows = [float(w) for w in args.windows.split(",") if w.strip()]
    unknown = set(args.clients) - {"close-async", "closeio"}
    if unknown or not args.clients:
        parser.error(f"--clients: unknown {sorted(unknown)}; use close-async and/or closeio")
    if set(models) - set(PRESETS) or not models:
        parser.error(f"--models: expected some of {PRESETS}")
    # closeio logs on the root logger (an ERROR per unparsable 429): keep the table readable.
    logging.getLogger().addFilter(lambda record: False)
    print(f"n={args.n} per run, allowed {args.rate:g}/s, windows {windows} s, {args.clients}")
    print("ratio = ok / what the model admits over the run, partial windows counted in full")

    host = ServerThread()
    results: list[Result] = []
    try:
        for window in windows:
            for name in models:
                results += run_model(host, name, window, args)
                print_table(results[-len(args.clients) :])
                sys.stdout.flush()
    finally:
        host.close()
    print("\nall runs:")
    print_table(results)
    if args.markdown:
        print()
        print_markdown(results)
    if args.json:
        params = {k: v for k, v in vars(args).items() if k != "json"}
        report = {
            "machine": machine_info(),
            "params": {**params, "models": models, "windows": windows},
            "results": [asdict(r) for r in results],
        }
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
