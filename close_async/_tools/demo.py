"""``close-async demo``: the main job, end to end, against an embedded FakeCloseServer.

It writes a CSV of generated opportunities (two of them deliberately bad), imports it with a
journal and ``--reconcile`` while the fake server enforces a rate limit, misbehaves a few times
on purpose and lists each opportunity only ``LIST_LAG`` seconds after its create (as Close's list
lags), then shows what happened: the rows whose outcome was unknown looked up and settled, every
row accounted for. A re-run shows that nothing is sent twice.
"""

from __future__ import annotations

import csv
import random
import tempfile
from collections import Counter
from pathlib import Path

import click

from .._client import AsyncCloseClient
from .._constants import VALUE_PERIODS
from ..testing import FakeCloseServer
from .importer import ImportSummary, run_import
from .journal import Journal
from .progress import Progress

# Faults the server plays at given fractions of the import: (fraction, fault, what it shows).
_SCRIPT = [
    (0.15, "429", "a 429 out of the blue: waited for, retried, created once"),
    (0.30, "drop", "connection dropped after the server created it"),
    (0.45, "504", "gateway timeout: the server did not create it"),
    (0.60, "429", "another 429: absorbed"),
    (0.75, "500_after_create", "server error after creating it"),
]
_BAD_ROWS = {7: ("confidence", "150"), 13: ("value", "12.50")}
# Close's list lags its writes by 30-60 s; the fake's lag is short, so is the settle (2x).
LIST_LAG, SETTLE = 0.5, 1.0


def write_rows(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    columns = ["lead_id", "value", "value_period", "confidence", "note"]
    columns += ["custom.cf_tier", "custom.cf_products"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(1, rows + 1):
            row = {
                "lead_id": f"lead_demo{rng.randrange(10**6):06d}",
                "value": str(rng.randrange(50, 5000) * 10000),
                "value_period": rng.choice(VALUE_PERIODS),
                "confidence": str(rng.randrange(0, 101, 5)),
                "note": f"demo row {i}",
                "custom.cf_tier": rng.choice(["Gold", "Silver", "Bronze", ""]),
                "custom.cf_products": rng.choice(['["CRM"]', '["CRM", "Dialer"]', ""]),
            }
            if i in _BAD_ROWS:
                column, value = _BAD_ROWS[i]
                row[column] = value
            writer.writerow([row[c] for c in columns])


async def run_demo(*, rows: int, limit: int, window: float) -> int:
    echo = click.echo
    with tempfile.TemporaryDirectory(prefix="close-async-demo-") as tmp:
        source, journal_path = Path(tmp) / "opportunities.csv", Path(tmp) / "journal.jsonl"
        write_rows(source, rows)
        async with FakeCloseServer(rate_limit=limit, window=window, list_lag=LIST_LAG) as server:
            echo(
                f"FakeCloseServer on {server.base_url}: {limit} requests per {window:g} s per key "
                f"(at most {limit / window:.0f}/s), its list {LIST_LAG:g} s behind its writes; "
                f"importing {rows} generated rows from a CSV with --reconcile."
            )
            script = list(_SCRIPT)

            def play_faults(summary: ImportSummary) -> None:
                while script and summary.sent >= script[0][0] * rows:
                    server.fail_next(script.pop(0)[1])

            client = AsyncCloseClient("demo-key", base_url=server.base_url)
            async with client:
                with Journal(journal_path) as journal:
                    progress = Progress(rows)

                    def on_progress(summary: ImportSummary) -> None:
                        play_faults(summary)
                        progress(summary)

                    summary = await run_import(
                        client, source, journal=journal, concurrency=50, progress=on_progress,
                        reconcile=True, settle=SETTLE,
                    )  # fmt: skip
                    progress.finish()
            allowed = limit / window
            rate = summary.created / summary.seconds if summary.seconds else 0.0
            notes = Counter(str(o.get("note")) for o in server.created)
            duplicates = sum(n - 1 for n in notes.values() if n > 1)
            echo("")
            echo(f"created       {summary.created} of {rows} rows in {summary.seconds:.1f} s")
            echo(f"throughput    {rate:.0f} created/s = {rate / allowed:.0%} of the allowed rate")
            echo(
                f"429s          {server.count_429} answered by the server (the scripted ones), all "
                "absorbed: each paused the import until the window reset, then was retried"
            )
            echo(f"duplicates    {duplicates}")
            echo(f"bad rows      {len(summary.failed)}, reported and skipped; the others went on:")
            for line, reason in summary.failed:
                echo(f"                line {line}: {reason}")
            echo(
                f"reconciled    {len(summary.settled)} rows whose request left with no definite "
                "answer. Close has no"
            )
            echo(
                "              idempotency keys, so they were not blindly retried: each was looked"
                f" up in the list once {SETTLE:g} s had passed:"
            )
            for line, what in summary.settled:
                really = notes[f"demo row {line - 1}"]
                echo(f"                line {line}: {what}")
                echo(f"                  (the fake server holds {really} opportunity for it)")
            echo(f"unknown       {len(summary.unknown)}")
            for line, reason in summary.unknown:
                echo(f"                line {line}: {reason}")
            echo("")
            echo("Re-running the same import with its journal:")
            async with AsyncCloseClient("demo-key", base_url=server.base_url) as again:
                with Journal(journal_path) as journal:
                    before = len(server.requests)
                    second = await run_import(again, source, journal=journal, concurrency=50)
            echo(
                f"  {second.skipped} rows skipped as already created, "
                f"{len(server.requests) - before} requests sent, {len(second.unknown)} unknown."
            )
            ok = (
                duplicates == 0
                and not summary.unknown
                and summary.created + len(summary.failed) == rows
                and len(notes) == summary.created
            )
            echo("demo finished: " + ("everything accounted for." if ok else "MISMATCH"))
            return 0 if ok else 1
