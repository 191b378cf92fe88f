"""``bench_import.py --faults``: exactly-once through faults, counted at the server's own record.

An import of ``--rows`` rows (10,000; ``--quick``: 1,000) with ``--reconcile`` against one
FakeCloseServer in its own process that drops 1% of creates after creating them, drops 1% before
creating, answers 0.5% with a 500 after creating (``FaultPlan``, seeded) and lists each
opportunity only ``--list-lag`` seconds (2 s; ``--quick``: 0.5 s) after its create. The import
reconciles its unknown rows at its end, with ``--settle`` (2x the lag by default: the settle must
exceed the list's lag, as Close's 120 s default exceeds its 30-60 s).

Reported, from the server's record (every note is unique, so a note is a row):

- rows created exactly once, duplicates (creates beyond the first per row), lost (rows with no
  opportunity at all), rows the import left unknown, and rows it called failed;
- the extra requests reconcile cost: list reads (GETs) and creates sent again, per row it
  looked up (target: 0 duplicates, 0 unknown, 0 lost, <= 3 reads per reconciled row).

    python benchmarks/bench_import.py --faults                 # 10,000 rows, 2 s lag (~1 min)
    python benchmarks/bench_import.py --faults --quick         # 1,000 rows, 0.5 s lag
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

API_KEY = "bench-key"
RATES = {"drop_after_create": 0.01, "drop_before_create": 0.01, "error_after_create": 0.005}


async def serve(list_lag: float, seed: int) -> None:
    from close_async.testing import FakeCloseServer, FaultPlan

    notes: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    plan = FaultPlan(**RATES, seed=seed)
    async with FakeCloseServer(rate_limit=None, faults=plan, list_lag=list_lag) as server:
        print(server.base_url, flush=True)

        def drain() -> None:  # the logs only: the store the list reads stays whole
            notes.update(str(o.get("note")) for o in server.created)
            methods.update(r.method for r in server.requests)
            server.created.clear()
            server.requests.clear()

        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            drain()
        drain()
    print(json.dumps({"notes": notes, "methods": methods}), flush=True)


async def child(args: argparse.Namespace) -> dict[str, Any]:
    from close_async import AsyncCloseClient
    from close_async._tools.importer import run_import
    from close_async._tools.journal import Journal
    from close_async._tools.preflight import check_input

    source = Path(args.file)
    started = time.perf_counter()
    async with AsyncCloseClient(API_KEY, base_url=args.base_url) as client:
        with Journal(args.journal, input=source) as journal:
            check_input(source, journal=journal)
            summary = await run_import(
                client,
                source,
                journal=journal,
                concurrency=args.concurrency,
                reconcile=True,
                settle=args.settle,
            )
    return {
        "rows": summary.rows,
        "created": summary.created,
        "reconciled": summary.reconciled,
        "resent": summary.resent,
        "unknown": len(summary.unknown),
        "failed": len(summary.failed),
        "unknown_rows": summary.unknown[:20],
        "seconds": time.perf_counter() - started,
    }


def run(args: argparse.Namespace, write_rows: Any) -> dict[str, Any]:
    """The parent: the rows, the server process, the import process; the figures."""
    rows = args.rows or (1_000 if args.quick else 10_000)
    lag = args.list_lag if args.list_lag is not None else (0.5 if args.quick else 2.0)
    settle = args.settle if args.settle is not None else 2 * lag
    me = [sys.executable, str(Path(__file__).resolve())]
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        source, journal = Path(tmp) / "rows.csv", Path(tmp) / "rows.journal"
        write_rows(source, rows)
        server = subprocess.Popen(
            [*me, "--serve", "--list-lag", str(lag), "--seed", str(args.seed)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        try:
            command = [*me, "--child", "--file", str(source), "--journal", str(journal)]
            command += ["--base-url", base_url, "--settle", str(settle)]
            command += ["--concurrency", str(args.concurrency)]
            print(f"import of {rows:,} rows, list lag {lag} s, settle {settle} s ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            report = dict(json.loads(out.stdout.strip().splitlines()[-1]))
        finally:
            server.send_signal(signal.SIGTERM)
            tail, _ = server.communicate(timeout=60)
    record = json.loads(tail.strip().splitlines()[-1])
    notes, methods = Counter(record["notes"]), Counter(record["methods"])
    expected = [f"bench row {i}:" for i in range(1, rows + 1)]
    per_row = Counter(note.split(":")[0] + ":" for note in notes.elements())
    once = sum(1 for n in expected if per_row[n] == 1)
    duplicates = sum(max(0, per_row[n] - 1) for n in expected)
    lost = sum(1 for n in expected if per_row[n] == 0)
    looked_up = report["reconciled"] + report["resent"] + report["unknown"]
    reads, posts = methods["GET"], methods["POST"]
    figures = {
        "rows": rows,
        "list_lag_s": lag,
        "settle_s": settle,
        "fault_rates": RATES,
        "created_exactly_once": once,
        "duplicates": duplicates,
        "lost": lost,
        "unknown": report["unknown"],
        "failed": report["failed"],
        "looked_up": looked_up,
        "found_created": report["reconciled"],
        "sent_again": report["resent"],
        "list_reads": reads,
        "creates_sent": posts,
        "reads_per_reconciled_row": round(reads / looked_up, 2) if looked_up else 0.0,
        "extra_requests_per_reconciled_row": (
            round((reads + posts - rows) / looked_up, 2) if looked_up else 0.0
        ),
        "seconds": round(report["seconds"], 1),
        "unknown_rows": report["unknown_rows"],
    }
    figures["target_met"] = (
        duplicates == 0
        and report["failed"] == 0
        and lost == 0
        and report["unknown"] == 0
        and figures["reads_per_reconciled_row"] <= 3
    )
    return figures


def table(f: dict[str, Any]) -> str:
    return "\n".join(
        [
            "| rows | lag s | settle s | exactly once | duplicates | unknown | lost | failed |"
            " looked up | found | sent again | reads/row | extra requests/row | s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {f['rows']:,} | {f['list_lag_s']:g} | {f['settle_s']:g} | "
            f"{f['created_exactly_once']:,} | {f['duplicates']} | {f['unknown']} | {f['lost']} | "
            f"{f['failed']} | "
            f"{f['looked_up']} | {f['found_created']} | {f['sent_again']} | "
            f"{f['reads_per_reconciled_row']:.2f} | {f['extra_requests_per_reconciled_row']:.2f} | "
            f"{f['seconds']:.1f} |",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--list-lag", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--file")
    parser.add_argument("--journal")
    parser.add_argument("--base-url")
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.list_lag, args.seed))
    else:
        print(json.dumps(asyncio.run(child(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
