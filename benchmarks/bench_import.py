"""Import benchmark: rows/s and peak memory of ``close-async import`` for a small and a big file.

Target: the import streams its input, so peak memory at 200,000 rows is at most 1.3 times the
peak at 2,000 rows.

For each size, three processes:

1. this script (the parent) generates the CSV in a temporary directory, before anything is
   measured, and starts the two others;
2. a FakeCloseServer (no rate limit) in its own process (``--serve``), so that neither its
   memory nor its CPU is counted against the importer. FakeCloseServer keeps a log of every
   request and every created opportunity; the server process counts and drops them every half
   second so that it, too, stays flat over 200,000 creates;
3. the importer (``--child``), a fresh interpreter per size so that peak RSS is per size: it
   runs ``run_import`` the way ``close-async import FILE --journal J`` does (default client,
   default concurrency 50, a journal in the temporary directory, no progress display) and
   reports ``ru_maxrss`` (peak RSS) at the end, with its RSS before the import for reference.

    python benchmarks/bench_import.py             # 2,000 and 200,000 rows (about 5 minutes)
    python benchmarks/bench_import.py --quick     # 500 and 5,000 rows (CI smoke, ~15 s)
    python benchmarks/bench_import.py --json      # also writes benchmarks/results/bench_import.json
    python benchmarks/bench_import.py --sizes 2000,50000 --trace   # tracemalloc top allocations
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from payloads import machine_info, write_report

RESULTS = Path(__file__).parent / "results" / "bench_import.json"
TARGET_RATIO = 1.3
API_KEY = "bench-key"
COLUMNS = [
    "lead_id",
    "value",
    "value_period",
    "confidence",
    "note",
    "custom.cf_tier",
    "custom.cf_products",
]


def write_rows(path: Path, rows: int, seed: int = 11) -> None:
    """A CSV shaped like a real export: every row valid, a unique note per row."""
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(1, rows + 1):
            writer.writerow(
                [
                    f"lead_bench{rng.randrange(10**6):06d}",
                    rng.randrange(50, 5000) * 10000,
                    rng.choice(["one_time", "monthly", "annual"]),
                    rng.randrange(0, 101, 5),
                    f"bench row {i}: {rng.choice(['renewal', 'upsell', 'new business'])}",
                    rng.choice(["Gold", "Silver", "Bronze", ""]),
                    rng.choice(['["CRM"]', '["CRM", "Dialer"]', ""]),
                ]
            )


def rss_kib() -> int:
    """Current resident set size in KiB (Linux); 0 elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


# --- the server process ------------------------------------------------------------------------


async def serve() -> None:
    from close_async.testing import FakeCloseServer

    created = requests = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with FakeCloseServer(rate_limit=None) as server:
        print(server.base_url, flush=True)

        def drain() -> None:
            nonlocal created, requests
            created += len(server.created)
            requests += len(server.requests)
            server.created.clear()
            server.requests.clear()

        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
            drain()
    drain()
    report = {"created": created, "requests": requests, "cpu_seconds": cpu_seconds()}
    print(json.dumps(report), flush=True)


# --- the importer process ----------------------------------------------------------------------


async def child(args: argparse.Namespace) -> dict[str, Any]:
    from close_async import AsyncCloseClient
    from close_async._importer import run_import
    from close_async._journal import Journal

    trace = args.trace
    if trace:
        import tracemalloc

        tracemalloc.start(8)
    client = AsyncCloseClient(API_KEY, base_url=args.base_url)
    before = rss_kib()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    async with client:
        with Journal(args.journal) as journal:
            if trace:
                first = tracemalloc.take_snapshot()
            summary = await run_import(
                client, Path(args.child), journal=journal, concurrency=args.concurrency
            )
    wall = time.perf_counter() - started
    report: dict[str, Any] = {
        "rows": summary.rows,
        "created": summary.created,
        "failed": len(summary.failed),
        "unknown": len(summary.unknown),
        "import_seconds": summary.seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "rss_before_kib": before,
        "rss_end_kib": rss_kib(),
        "peak_rss_kib": peak_rss_kib(),
    }
    if trace:
        last = tracemalloc.take_snapshot()
        peak = tracemalloc.get_traced_memory()[1]
        report["traced_peak_kib"] = peak // 1024
        stats = last.compare_to(first, "traceback")[:10]
        report["top_growth"] = [
            {
                "kib": round(s.size_diff / 1024, 1),
                "count": s.count_diff,
                "where": [f"{fr.filename}:{fr.lineno}" for fr in s.traceback][-4:],
            }
            for s in stats
        ]
    return report


# --- the parent --------------------------------------------------------------------------------


@dataclass
class Result:
    rows: int
    created: int
    server_created: int
    failed: int
    unknown: int
    import_seconds: float
    rows_per_s: float
    wall_seconds: float
    client_cpu_ms_per_row: float
    server_cpu_ms_per_row: float
    rss_before_mib: float
    peak_rss_mib: float
    journal_mib: float
    file_mib: float
    top_growth: list[dict[str, Any]] | None = None


def run_size(rows: int, concurrency: int, trace: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        source, journal = Path(tmp) / "rows.csv", Path(tmp) / "journal.jsonl"
        write_rows(source, rows)
        me = [sys.executable, str(Path(__file__).resolve())]
        server = subprocess.Popen(
            [*me, "--serve"], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip()
            if not base_url.startswith("http"):
                raise RuntimeError(f"the server did not start: {base_url!r}")
            command = [*me, "--child", str(source), "--journal", str(journal)]
            command += ["--base-url", base_url, "--concurrency", str(concurrency)]
            if trace:
                command.append("--trace")
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            report = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            server.send_signal(signal.SIGTERM)
            server_out, _ = server.communicate(timeout=30)
        counts = json.loads(server_out.strip().splitlines()[-1])
        return Result(
            rows=report["rows"],
            created=report["created"],
            server_created=counts["created"],
            failed=report["failed"],
            unknown=report["unknown"],
            import_seconds=round(report["import_seconds"], 2),
            rows_per_s=round(report["created"] / report["import_seconds"], 1),
            wall_seconds=round(report["wall_seconds"], 2),
            client_cpu_ms_per_row=round(1000 * report["cpu_seconds"] / rows, 3),
            server_cpu_ms_per_row=round(1000 * counts["cpu_seconds"] / rows, 3),
            rss_before_mib=round(report["rss_before_kib"] / 1024, 1),
            peak_rss_mib=round(report["peak_rss_kib"] / 1024, 1),
            journal_mib=round(journal.stat().st_size / 2**20, 1),
            file_mib=round(source.stat().st_size / 2**20, 1),
            top_growth=report.get("top_growth"),
        )


def table(results: list[Result]) -> str:
    head = (
        "| rows | created | server created | rows/s | import s | client CPU ms/row "
        "| server CPU ms/row | RSS before MiB | peak RSS MiB |"
    )
    lines = [head, "|---" * 9 + "|"]
    for r in results:
        lines.append(
            f"| {r.rows:,} | {r.created:,} | {r.server_created:,} | {r.rows_per_s:,.0f} | "
            f"{r.import_seconds:.1f} | {r.client_cpu_ms_per_row:.2f} | "
            f"{r.server_cpu_ms_per_row:.2f} | {r.rss_before_mib:.1f} | {r.peak_rss_mib:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 and 5,000 rows (CI smoke)")
    parser.add_argument("--sizes", help="comma-separated row counts (default 2000,200000)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--json",
        nargs="?",
        const=str(RESULTS),
        metavar="PATH",
        help="write the results as JSON (default path: benchmarks/results/bench_import.json)",
    )
    parser.add_argument("--trace", action="store_true", help="tracemalloc in the importer")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        asyncio.run(serve())
        return 0
    if args.child:
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return 0

    if args.sizes:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    else:
        sizes = [500, 5000] if args.quick else [2000, 200_000]
    results = []
    for rows in sizes:
        print(f"importing {rows:,} rows ...", file=sys.stderr, flush=True)
        results.append(run_size(rows, args.concurrency, args.trace))
    print(table(results))
    ratio = results[-1].peak_rss_mib / results[0].peak_rss_mib
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    print(
        f"\npeak RSS at {results[-1].rows:,} rows / at {results[0].rows:,} rows = {ratio:.2f} "
        f"(target <= {TARGET_RATIO}: {verdict})"
    )
    ok = all(r.created == r.rows == r.server_created for r in results)
    if not ok:
        print("MISMATCH: not every row was created exactly once", file=sys.stderr)
    for r in results:
        for entry in r.top_growth or []:
            print(f"  {r.rows:>7,} rows: {entry['kib']:>9.1f} KiB {entry['count']:>+8} ", end="")
            print(" <- ".join(reversed(entry["where"])))
    if args.json:
        report = {
            "benchmark": "bench_import",
            "machine": machine_info(),
            "params": {"sizes": sizes, "concurrency": args.concurrency, "quick": args.quick},
            "target_ratio": TARGET_RATIO,
            "ratio": round(ratio, 3),
            "target_met": ratio <= TARGET_RATIO,
            "results": [asdict(r) for r in results],
        }
        write_report(args.json, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
