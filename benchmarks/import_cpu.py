"""The import's own CPU per row, with the network taken out: ``create_many`` against ``run_import``
(CSV and JSON Lines, with a journal) on a transport stub that answers every create at once.

Everything of the import runs for real (the checks' pass, the second read, ``to_create`` and its
validation, the journal's records, the "sent" bookkeeping, ``on_send``/``on_sent``): only
aiohttp and the server are replaced, so the difference to ``create_many`` (whose rows are built
before the clock, as in ``bench_import.py``) is what the import adds per row. One process,
``--rounds`` rounds in turn, CPU time (``time.process_time``); the minimum over rounds is the
least disturbed by other work on the machine, and is what the table compares (with its ratio to
``create_many``'s).

On a shared machine the figures still drift; for a count that does not, run it under callgrind
twice with ``--rows N`` and ``--rows 2N`` and divide the difference by N (user-space instructions:
a ``write()``'s time in the kernel is not counted; under callgrind everything is counted, so
``create_many``'s count includes building its rows)::

    PYTHONHASHSEED=0 valgrind --tool=callgrind python benchmarks/import_cpu.py --modes csv \
        --rounds 1 --rows 2000

Instructions per row so counted (issue 13, 2026-12-01, before and after outcomes written a batch
at a time and the journal's direct paths): ``create_many`` 262,778 / 261,650; CSV 337,402 /
310,828; JSON Lines 324,870 / 298,215 (beyond ``create_many``: CSV 74.6k / 49.2k, JSON Lines
62.1k / 36.6k).

    python benchmarks/import_cpu.py                    # 20,000 rows x 7 rounds
    python benchmarks/import_cpu.py --quick --json PATH   # CI smoke
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_import import write_jsonl, write_rows
from payloads import machine_info, write_report

_BODY = (
    b'{"id":"oppo_x","lead_id":"lead_1","value":100,"value_period":"monthly","confidence":70,'
    b'"note":"n","status_id":"stat_1","status_type":"active","organization_id":"orga_1",'
    b'"date_created":"2026-01-01T00:00:00+00:00","date_updated":"2026-01-01T00:00:00+00:00"}'
)


class StubTransport:
    """Answers each create at once, after calling the hooks the real transport calls."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, method: str, path: str, body: bytes = b"", **hooks: Any) -> bytes:
        on_send, on_sent = hooks.get("on_send"), hooks.get("on_sent")
        if on_send is not None and (pending := on_send()) is not None:
            await pending
        await asyncio.sleep(0)  # a real request yields to the loop at least once
        if on_sent is not None:
            on_sent(True)
        self.sent += 1
        return _BODY

    def redact(self, error: Any) -> Any:
        return error


async def measure(mode: str, source: Path, journal: Path) -> float:
    """CPU microseconds per row of one run of ``mode``."""
    from close_async import AsyncCloseClient
    from close_async._resources.opportunities.requests import to_create
    from close_async._tools.importer import read_rows, run_import
    from close_async._tools.journal import Journal
    from close_async._tools.preflight import check_input

    client = AsyncCloseClient("bench-key", base_url="http://127.0.0.1:9/api/v1/")
    stub = StubTransport()
    client.opportunities._transport = stub  # type: ignore[assignment]
    gc.collect()
    if mode == "create_many":
        items = [to_create(row.item) for row in read_rows(source) if row.item is not None]
        started = time.process_time()
        await client.opportunities.create_many(items, concurrency=50)
        rows = len(items)
    else:
        started = time.process_time()
        with Journal(journal, input=source) as j:
            check_input(source, journal=j)
            rows = (await run_import(client, source, journal=j, concurrency=50)).rows
        for path in (journal, journal.with_name(journal.name + ".lock")):
            path.unlink(missing_ok=True)
    seconds = time.process_time() - started
    if stub.sent != rows:
        raise RuntimeError(f"{mode}: sent {stub.sent} of {rows}")
    return seconds / rows * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 rows x 1 round (CI)")
    parser.add_argument("--rows", type=int, help="rows per run (20000)")
    parser.add_argument("--rounds", type=int, help="rounds (7)")
    parser.add_argument("--modes", default="create_many,csv,jsonl")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    rows = args.rows or (500 if args.quick else 20_000)
    rounds = args.rounds or (1 if args.quick else 7)
    modes = args.modes.split(",")
    runs: dict[str, list[float]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="import-cpu-") as tmp:
        csv_path, jsonl_path = Path(tmp, "rows.csv"), Path(tmp, "rows.jsonl")
        write_rows(csv_path, rows)
        write_jsonl(csv_path, jsonl_path)
        for _ in range(rounds):
            for mode in modes:
                source = jsonl_path if mode == "jsonl" else csv_path
                runs[mode].append(asyncio.run(measure(mode, source, Path(tmp, "j.journal"))))
    base = min(runs["create_many"]) if "create_many" in runs else None
    print("| mode | CPU us/row (min) | median | beyond create_many | x create_many |")
    print("|---|--:|--:|--:|--:|")
    for mode in modes:
        best = min(runs[mode])
        extra = "" if base is None else f"{best - base:+.1f}"
        times = "" if base is None else f"{best / base:.2f}"
        median = statistics.median(runs[mode])
        print(f"| {mode} | {best:.1f} | {median:.1f} | {extra} | {times} |")
    if args.json:
        report = {
            "benchmark": "import_cpu",
            "machine": machine_info(),
            "params": {"rows": rows, "rounds": rounds, "quick": args.quick},
            "cpu_us_per_row": runs,
        }
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
