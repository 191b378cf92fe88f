"""The import's CPU per row against ``create_many``'s, counted in instructions, over real sockets.

``bench_import.py`` times rows/s at 0 ms server latency, where the client's CPU per row decides
the rate; on this shared 2-core machine its per-round ratios of one mode ranged 0.47-1.85, so
the machine decided, not the client. ``import_cpu.py`` counts on a stub transport, which leaves
aiohttp out. This counts the client as ``bench_import.py`` runs it: a FakeCloseServer in its own
process (not counted, as there), and the client under ``valgrind --tool=callgrind``, its warm-up
(100 creates: the pool is open) left out of the count (``counting.py``). Per mode:

- ``create_many``: the rows already built as ``CreateOpportunity`` before the count starts (its
  fairest setting, as in ``bench_import.py``), then ``create_many`` (concurrency 50);
- ``csv`` / ``jsonl``: what ``close-async import FILE --journal J`` does: the checks' pass, then
  ``run_import`` (concurrency 50);
- ``create_many_built``: for scale, not a target: ``create_many`` with the CSV read and its rows
  built (``to_create``, validation) on the count, as a program of one's own would do it.

The count's ratio is what the rows/s ratio at 0 ms would be if the client's CPU alone decided it
(the server's CPU per create is about a quarter of the client's there). Kernel time (the
``write()`` of the journal, the sockets) is not counted: user-space instructions only.

    python benchmarks/import_count.py              # 1,000 rows, three counts, ~3 min
    python benchmarks/import_count.py --modes csv,jsonl --repeat 5   # medians of 5 rounds
    python benchmarks/import_count.py --stub       # the import's own CPU alone, the same every run
    python benchmarks/import_count.py --quick      # CI smoke: no valgrind, process_time, 200 rows
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import counting
from bench_import import API_KEY, Server, write_jsonl, write_rows
from import_cpu import StubTransport
from payloads import machine_info, write_report

MODES = ("create_many", "csv", "jsonl", "create_many_built")
TARGET = 0.9
WARM_UP = 100
STUB, STUB_URL = "stub", "http://127.0.0.1:9/api/v1/"  # --stub: the client never connects


async def child(mode: str, source: Path, journal: Path, url: str, *, handshake: bool) -> float:
    """Warm up, then one mode; the CPU seconds of the mode (process_time)."""
    from close_async import AsyncCloseClient
    from close_async._resources.opportunities.requests import to_create
    from close_async._tools.importer import read_rows, run_import
    from close_async._tools.journal import Journal
    from close_async._tools.preflight import check_input

    if handshake:
        counting.keep_connections()
    stub = url == STUB
    async with AsyncCloseClient(API_KEY, base_url=STUB_URL if stub else url) as client:
        if stub:  # the import's own CPU alone: no aiohttp, no sockets (import_cpu.StubTransport)
            client.opportunities._transport = StubTransport()
        warm = [to_create({"lead_id": "lead_warm", "note": f"w{i}"}) for i in range(WARM_UP)]
        await client.opportunities.create_many(warm, concurrency=50)
        items = []
        if mode == "create_many":
            items = [to_create(row.item) for row in read_rows(source) if row.item is not None]
        gc.collect()  # the same collector state for every mode
        if handshake:
            counting.handshake("ready")
        started = time.process_time()
        if mode == "create_many_built":
            items = [to_create(row.item) for row in read_rows(source) if row.item is not None]
        if mode.startswith("create_many"):
            results = await client.opportunities.create_many(items, concurrency=50)
            failed = sum(isinstance(r, Exception) for r in results)
        else:
            with Journal(journal, input=source) as j:
                check_input(source, journal=j)
                summary = await run_import(client, source, journal=j, concurrency=50)
            failed = summary.rows - summary.created
        seconds = time.process_time() - started
        if handshake:
            counting.handshake("done")
    if failed:
        raise RuntimeError(f"{mode}: {failed} rows not created")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="rows per count (1000)")
    parser.add_argument("--quick", action="store_true", help="no valgrind: process_time (CI)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma-separated modes (default: all; create_many always): " + ", ".join(MODES),
    )
    parser.add_argument(
        "--stub",
        action="store_true",
        help="a stub transport instead of the server: the import's own CPU, the same count"
        " every run (its ratio leaves aiohttp out: not the target's)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every mode, in turn; medians (1)"
    )
    parser.add_argument("--child", nargs=4, metavar=("MODE", "FILE", "J", "URL"), help="(internal)")
    parser.add_argument("--handshake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, source, journal, url = args.child
        asyncio.run(child(mode, Path(source), Path(journal), url, handshake=args.handshake))
        return 0
    counted = not args.quick and counting.can_count()
    rows = 200 if args.quick else args.rows
    unit = "instructions" if counted else "CPU µs (process_time, not counted)"
    per_row: dict[str, float] = {}
    runs: dict[str, list[float]] = collections.defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="import-count-") as tmp:
        csv_path, jsonl_path = Path(tmp, "rows.csv"), Path(tmp, "rows.jsonl")
        write_rows(csv_path, rows)
        write_jsonl(csv_path, jsonl_path)
        server = Server()
        wanted = set(args.modes.split(",")) | {"create_many"}
        modes = [mode for mode in MODES if mode in wanted]
        try:
            for _ in range(args.repeat):  # the modes in turn, each round: load moves them alike
                for mode in modes:
                    source = jsonl_path if mode == "jsonl" else csv_path
                    journal = Path(tmp, f"{mode}.journal")
                    journal.unlink(missing_ok=True)
                    command = [sys.executable, __file__, "--child", mode, str(source), str(journal)]
                    command.append(STUB if args.stub else server.base_url)
                    if counted:
                        count = counting.instructions([*command, "--handshake"]) / rows
                    else:
                        seconds = asyncio.run(
                            child(mode, source, journal, server.base_url, handshake=False)
                        )
                        count = seconds / rows * 1e6
                    runs[mode].append(count)
                    print(f"  {mode}: {count:,.0f} {unit} per row", file=sys.stderr)
        finally:
            server.stop()
    per_row = {mode: statistics.median(runs[mode]) for mode in modes}
    base = per_row["create_many"]
    ratios = {mode: base / per_row[mode] for mode in modes[1:]}
    rounds = {  # each round's ratio, against that round's create_many
        mode: [b / c for b, c in zip(runs["create_many"], runs[mode], strict=True)]
        for mode in modes[1:]
    }
    imports = [mode for mode in ("csv", "jsonl") if mode in ratios]
    many = f" (median of {args.repeat})" if args.repeat > 1 else ""
    print(f"| mode | client {unit} per row{many} | beyond create_many | create_many / this |"
          " each round's ratio |")  # fmt: skip
    print("|---|--:|--:|--:|---|")
    for mode in modes:
        extra = "" if mode == "create_many" else f"{per_row[mode] - base:+,.0f}"
        ratio = "1.000" if mode == "create_many" else f"{ratios[mode]:.3f}"
        each = ", ".join(f"{r:.3f}" for r in rounds.get(mode, []))
        print(f"| {mode} | {per_row[mode]:,.0f} | {extra} | {ratio} | {each} |")
    met = all(ratios[mode] >= TARGET for mode in imports)
    if args.stub:  # aiohttp's CPU left out of both: the differences are the figures here
        print("stub transport: the import's own CPU beyond create_many; no target applies")
    else:
        print(
            f"target: import >= {TARGET}x create_many (client CPU): {'met' if met else 'NOT met'}"
        )
    if args.json:
        report: dict[str, Any] = {
            "benchmark": "import_count",
            "machine": machine_info(),
            "params": {
                "rows": rows,
                "quick": args.quick,
                "counted": counted,
                "unit": unit,
                "repeat": args.repeat,
            },
            "per_row": per_row,
            "runs": runs,
            "ratios": ratios,
            "target_met": met,
        }
        write_report(Path(args.json), report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
