"""Import benchmark: rows/s of ``close-async import`` against ``create_many``, and peak memory
of importing and of resuming.

Targets (issue 13): the import >= 0.9x ``create_many``'s rows/s on the same rows and the same
server; ``--fsync`` >= 0.8x the import without it; resuming from a 200,000-row journal peaks at
<= 1.3x the import's own peak.

Three kinds of process:

1. this script (the parent) writes the input files (a 7-column CSV with two custom fields, and
   the same rows as JSON Lines) before anything is measured, and starts the others;
2. one FakeCloseServer (no rate limit) in its own process (``--serve``), shared by every
   measurement, so that neither its memory nor its CPU is counted against the client. It counts
   and drops its logs every half second so that it stays flat over 200,000 creates;
3. a fresh interpreter per measurement (``--child MODE``):
   - ``create_many``: the anchor at its fairest: the rows already parsed and built as
     ``CreateOpportunity`` before the clock starts, then ``create_many`` (concurrency 50);
   - ``csv`` / ``jsonl`` / ``csv-fsync`` / ``jsonl-fsync``: what ``close-async import FILE
     --journal J [--fsync]`` does, timed from the first read of the file: the checks before
     sending (encoding, columns, the journal), then ``run_import`` (concurrency 50);
   - ``resume``: the same import again on the finished journal (every row skipped), for memory.

Throughput: ``--rate-rows`` rows per measurement, ``--rounds`` rounds (5 at 0 ms, 3 above), each
round every mode once with each mode next to its anchor (``create_many``, csv, csv-fsync, jsonl,
jsonl-fsync, then the reverse order the next round: ABBA), so that a mode and its anchor share the
same minutes of a shared machine. A ratio is the median of the per-round ratios (the mode's rows/s
over its anchor's in that round), not a ratio of medians taken minutes apart; at each
server latency of ``--latencies`` (0 ms: the client's CPU per row decides the rate, so the
import's own work, parsing, validating and journaling each row, shows in full; 50 ms: a round trip
like a real API's, where what matters is that the import keeps its 50 requests in flight).
Memory: for each size, ``csv`` then ``resume`` on its journal, ``ru_maxrss`` of each child.

    python benchmarks/bench_import.py          # rates: 10,000 rows x 3; RSS: 2,000 and 200,000
    python benchmarks/bench_import.py --quick  # CI smoke: 500 x 1; 500 and 2,000 (~15 s)
    python benchmarks/bench_import.py --json PATH   # also write the results as JSON
    python benchmarks/bench_import.py --faults [--quick]   # exactly-once through faults
                                                           # (--reconcile; see import_faults.py)
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from payloads import machine_info, write_report

RESULTS = Path(__file__).parent / "results" / "bench_import.json"
IMPORT_TARGET, FSYNC_TARGET, RESUME_TARGET = 0.9, 0.8, 1.3
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


async def serve(latency: float) -> None:
    from close_async.testing import FakeCloseServer

    created = requests = 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with FakeCloseServer(rate_limit=None, latency=latency) as server:
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


# --- the measured process ----------------------------------------------------------------------

MODES = ("create_many", "csv", "jsonl", "csv-fsync", "jsonl-fsync")


async def child(args: argparse.Namespace) -> dict[str, Any]:
    from close_async import AsyncCloseClient
    from close_async._tools.importer import read_rows, run_import
    from close_async._tools.journal import Journal
    from close_async._tools.preflight import check_input

    mode, source = args.child, Path(args.file)
    client = AsyncCloseClient(API_KEY, base_url=args.base_url)
    before = rss_kib()
    async with client:
        if mode == "create_many":
            from close_async._resources.opportunities.requests import to_create

            items = [to_create(row.item) for row in read_rows(source) if row.item is not None]
            cpu_before, started = cpu_seconds(), time.perf_counter()
            results = await client.opportunities.create_many(items, concurrency=args.concurrency)
            seconds = time.perf_counter() - started
            created = sum(not isinstance(r, Exception) for r in results)
            rows = len(items)
        else:
            cpu_before, started = cpu_seconds(), time.perf_counter()
            with Journal(args.journal, fsync=mode.endswith("fsync"), input=source) as journal:
                check_input(source, journal=journal)
                summary = await run_import(
                    client, source, journal=journal, concurrency=args.concurrency
                )
            seconds = time.perf_counter() - started
            created, rows = summary.created + summary.skipped, summary.rows
    return {
        "mode": mode,
        "rows": rows,
        "created": created,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu_before,
        "rss_before_kib": before,
        "peak_rss_kib": peak_rss_kib(),
    }


# --- the parent --------------------------------------------------------------------------------


def write_jsonl(csv_path: Path, path: Path) -> None:
    """The same rows as JSON Lines, in Close's wire types."""
    from close_async._tools.importer import read_rows

    with path.open("w", encoding="utf-8") as f:
        for row in read_rows(csv_path):
            f.write(json.dumps(row.item) + "\n")


class Server:
    def __init__(self, latency: float = 0.0) -> None:
        me = [sys.executable, str(Path(__file__).resolve()), "--serve", "--latency", str(latency)]
        self.proc = subprocess.Popen(me, stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the server did not start: {self.base_url!r}")

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        return dict(json.loads(out.strip().splitlines()[-1]))


def measure(
    mode: str, source: Path, journal: Path, server: Server, concurrency: int
) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--file"]
    command += [str(source), "--journal", str(journal), "--base-url", server.base_url]
    command += ["--concurrency", str(concurrency)]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    report = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    report["rows_per_s"] = report["created"] / report["seconds"] if report["seconds"] else 0.0
    return report


@dataclass
class Rate:
    latency_ms: float
    mode: str
    rows: int
    rounds: int
    rows_per_s: float  # median over rounds
    all_rows_per_s: list[float]
    client_cpu_ms_per_row: float
    ratio: float  # median of the per-round ratios to the anchor
    round_ratios: list[float]  # to create_many (fsync modes: to the same format without fsync)


@dataclass
class Memory:
    rows: int
    import_peak_mib: float
    resume_peak_mib: float
    ratio: float
    rss_before_mib: float
    journal_mib: float
    all_created: bool


def rates(
    tmp: Path, server: Server, rows: int, rounds: int, concurrency: int, latency: float
) -> list[Rate]:
    csv_path, jsonl_path = tmp / "rate.csv", tmp / "rate.jsonl"
    write_rows(csv_path, rows)
    write_jsonl(csv_path, jsonl_path)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for r in range(rounds):
        order = MODES if r % 2 == 0 else MODES[::-1]  # each pair adjacent, ABBA over rounds
        for mode in order:
            journal = tmp / f"rate-{mode}-{r}.journal"
            source = jsonl_path if mode.startswith("jsonl") else csv_path
            print(f"  round {r + 1}/{rounds}: {mode} ...", file=sys.stderr, flush=True)
            report = measure(mode, source, journal, server, concurrency)
            if report["created"] != rows:
                raise RuntimeError(f"{mode}: created {report['created']} of {rows}")
            runs[mode].append(report)
            journal.unlink(missing_ok=True)
    median = {m: statistics.median(r["rows_per_s"] for r in runs[m]) for m in MODES}
    anchor = {"csv": "create_many", "jsonl": "create_many", "create_many": "create_many"}
    anchor |= {"csv-fsync": "csv", "jsonl-fsync": "jsonl"}
    per_round = {
        m: [
            a["rows_per_s"] / b["rows_per_s"] for a, b in zip(runs[m], runs[anchor[m]], strict=True)
        ]
        for m in MODES
    }
    return [
        Rate(
            latency_ms=latency * 1000,
            mode=m,
            rows=rows,
            rounds=rounds,
            rows_per_s=round(median[m], 1),
            all_rows_per_s=[round(r["rows_per_s"], 1) for r in runs[m]],
            client_cpu_ms_per_row=round(
                1000 * statistics.median(r["cpu_seconds"] for r in runs[m]) / rows, 3
            ),
            ratio=round(statistics.median(per_round[m]), 3),
            round_ratios=[round(x, 3) for x in per_round[m]],
        )
        for m in MODES
    ]


def memory(tmp: Path, server: Server, rows: int, concurrency: int) -> Memory:
    source, journal = tmp / f"mem-{rows}.csv", tmp / f"mem-{rows}.journal"
    write_rows(source, rows)
    print(f"  import {rows:,} rows, then resume ...", file=sys.stderr, flush=True)
    first = measure("csv", source, journal, server, concurrency)
    again = measure("resume", source, journal, server, concurrency)
    result = Memory(
        rows=rows,
        import_peak_mib=round(first["peak_rss_kib"] / 1024, 1),
        resume_peak_mib=round(again["peak_rss_kib"] / 1024, 1),
        ratio=round(again["peak_rss_kib"] / first["peak_rss_kib"], 3),
        rss_before_mib=round(first["rss_before_kib"] / 1024, 1),
        journal_mib=round(journal.stat().st_size / 2**20, 1),
        all_created=first["created"] == rows and again["created"] == rows,
    )
    journal.unlink()
    return result


def report_tables(rate_results: list[Rate], mem_results: list[Memory]) -> str:
    lines = [
        "| latency | mode | rows | rows/s (median) | runs | client CPU ms/row | ratio (median)"
        " | per round | anchor |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rate_results:
        anchor = {"csv-fsync": "csv", "jsonl-fsync": "jsonl"}.get(r.mode, "create_many")
        runs = ", ".join(f"{x:,.0f}" for x in r.all_rows_per_s)
        ratios = ", ".join(f"{x:.2f}" for x in r.round_ratios)
        lines.append(
            f"| {r.latency_ms:.0f} ms | {r.mode} | {r.rows:,} | {r.rows_per_s:,.0f} | {runs} | "
            f"{r.client_cpu_ms_per_row:.2f} | {r.ratio:.2f} | {ratios} | {anchor} |"
        )
    lines += [
        "",
        "| rows | import peak RSS MiB | resume peak RSS MiB | resume / import | journal MiB |",
        "|---|---|---|---|---|",
    ]
    for m in mem_results:
        lines.append(
            f"| {m.rows:,} | {m.import_peak_mib:.1f} | {m.resume_peak_mib:.1f} | "
            f"{m.ratio:.2f} | {m.journal_mib:.1f} |"
        )
    return "\n".join(lines)


def verdicts(rate_results: list[Rate], mem_results: list[Memory]) -> dict[str, bool]:
    met = {}
    for latency in sorted({r.latency_ms for r in rate_results}):
        by_mode = {r.mode: r.ratio for r in rate_results if r.latency_ms == latency}
        at = f" (server latency {latency:.0f} ms)"
        met["import >= 0.9x create_many" + at] = (
            min(by_mode["csv"], by_mode["jsonl"]) >= IMPORT_TARGET
        )
        met["fsync >= 0.8x no fsync" + at] = (
            min(by_mode["csv-fsync"], by_mode["jsonl-fsync"]) >= FSYNC_TARGET
        )
    met["resume peak <= 1.3x import peak"] = mem_results[-1].ratio <= RESUME_TARGET
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI)")
    parser.add_argument("--sizes", help="comma-separated row counts for memory (2000,200000)")
    parser.add_argument("--rate-rows", type=int, help="rows per rate measurement (10000)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of rate measurements (5 at 0 ms latency, 3 above)"
    )
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--json",
        nargs="?",
        const=str(RESULTS),
        metavar="PATH",
        help="write the results as JSON (default path: benchmarks/results/bench_import.json)",
    )
    parser.add_argument(
        "--latencies",
        default="0,50",
        help="server latencies in ms for the rate measurements (0: the client's CPU per row"
        " decides; 50: a round trip like a real API's)",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="instead: an import with --reconcile through 1%% drops after create, 1%% before,"
        " 0.5%% 500s after create and a list lag (see import_faults.py)",
    )
    parser.add_argument("--rows", type=int, help="--faults: rows (10000; --quick 1000)")
    parser.add_argument("--list-lag", type=float, help="--faults: seconds (2; --quick 0.5)")
    parser.add_argument("--settle", type=float, help="--faults: seconds (2x the list lag)")
    parser.add_argument("--seed", type=int, default=7, help="--faults: the faults' seed")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--latency", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=[*MODES, "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:
        asyncio.run(serve(args.latency))
        return 0
    if args.child:
        if args.child == "resume":
            args.child = "csv"  # the same command again, on the finished journal
        print(json.dumps(asyncio.run(child(args))), flush=True)
        return 0

    if args.faults:
        return faults(args)
    if args.sizes:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    else:
        sizes = [500, 2000] if args.quick else [2000, 200_000]
    rate_rows = args.rate_rows or (500 if args.quick else 10_000)
    latencies = [float(x) / 1000 for x in args.latencies.split(",")]

    def rounds_at(latency: float) -> int:  # at 0 ms the spread is widest: more rounds
        return args.rounds or (1 if args.quick else 5 if latency == 0 else 3)

    rate_results: list[Rate] = []
    created = 0
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for latency in latencies:
            server = Server(latency)
            try:
                rounds = rounds_at(latency)
                print(f"rates at {rate_rows:,} rows x {rounds}, server latency {latency}s ...",
                      file=sys.stderr, flush=True)  # fmt: skip
                rate_results += rates(
                    Path(tmp), server, rate_rows, rounds, args.concurrency, latency
                )
            finally:
                created += server.stop()["created"]
        server = Server()
        try:
            mem_results = [memory(Path(tmp), server, n, args.concurrency) for n in sizes]
        finally:
            counts = server.stop()
    counts["created"] += created
    print(report_tables(rate_results, mem_results))
    met = verdicts(rate_results, mem_results)
    for name, ok in met.items():
        print(f"{name}: {'met' if ok else 'MISSED'}")
    expected = sum(rounds_at(x) for x in latencies) * len(MODES) * rate_rows + sum(sizes)
    ok = counts["created"] == expected and all(m.all_created for m in mem_results)
    if not ok:
        print(f"MISMATCH: server created {counts['created']}, expected {expected}", file=sys.stderr)
    if args.json:
        report = {
            "benchmark": "bench_import",
            "machine": machine_info(),
            "params": {
                "sizes": sizes,
                "rate_rows": rate_rows,
                "rounds": {f"{x * 1000:g} ms": rounds_at(x) for x in latencies},
                "latencies_ms": [x * 1000 for x in latencies],
                "concurrency": args.concurrency,
                "quick": args.quick,
            },
            "targets": {"import": IMPORT_TARGET, "fsync": FSYNC_TARGET, "resume": RESUME_TARGET},
            "target_met": met,
            "server": counts,
            "rates": [asdict(r) for r in rate_results],
            "memory": [asdict(m) for m in mem_results],
        }
        write_report(args.json, report)
    return 0 if ok else 1


def faults(args: argparse.Namespace) -> int:
    import import_faults

    figures = import_faults.run(args, write_rows)
    print(import_faults.table(figures))
    print("0 duplicates, 0 unknown, 0 lost, <= 3 reads per reconciled row:", end=" ")
    print("met" if figures["target_met"] else "MISSED")
    if args.json:
        report = {"benchmark": "bench_import --faults", "machine": machine_info(), **figures}
        path = RESULTS.with_name("bench_import_faults.json") if args.json == str(RESULTS) else None
        write_report(path or args.json, report)
    return 0 if figures["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
