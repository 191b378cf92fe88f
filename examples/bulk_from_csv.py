"""Create one Close opportunity per row of a CSV file, then print a summary.

    CLOSE_API_KEY=api_... python examples/bulk_from_csv.py examples/deals.csv

The header names the fields: lead_id, value (in cents), value_period, confidence, note, ... and
custom.cf_<id> for custom fields (a cell starting with ``[`` is a JSON list: a multi-value field).
Empty cells are not sent. A bad row is reported and the others still go through; the exit code is
1 if any row was not created. For a resumable import of a big file, use ``close-async import``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Iterator
from typing import Any

from close_async import AsyncCloseClient, CloseError

INTEGER_FIELDS = ("value", "confidence")


def read_rows(path: str) -> Iterator[dict[str, Any]]:
    """The CSV's rows as dicts in Close's wire format (what ``create_many`` takes)."""
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            item: dict[str, Any] = {}
            for field, cell in row.items():
                if not cell:
                    continue  # an empty cell is not sent
                if field in INTEGER_FIELDS and cell.lstrip("-").isdigit():
                    item[field] = int(cell)  # anything else is left to fail validation, by name
                elif field.startswith("custom.") and cell.startswith("["):
                    item[field] = json.loads(cell)  # a multi-value custom field
                else:
                    item[field] = cell
            yield item


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="the CSV file, one opportunity per row")
    parser.add_argument("--concurrency", type=int, default=50, help="creates in flight at once")
    args = parser.parse_args(argv)

    rows = list(read_rows(args.csv))
    async with AsyncCloseClient() as close:  # $CLOSE_API_KEY (and $CLOSE_BASE_URL, if set)
        results = await close.opportunities.create_many(rows, concurrency=args.concurrency)

    created = failed = unknown = 0
    for line, (row, result) in enumerate(
        zip(rows, results, strict=True), start=2
    ):  # line 1 is the header
        if not isinstance(result, CloseError):
            created += 1
            print(f"line {line}: created {result.id} ({result.value_formatted})")
        elif result.may_have_succeeded:  # sent, no definite answer: it may exist in Close
            unknown += 1
            print(f"line {line}: UNKNOWN, check in Close before re-sending: {result}")
        else:
            failed += 1
            print(f"line {line}: failed, not created: {result} {row}")
    print(f"{len(rows)} rows: {created} created, {failed} failed, {unknown} unknown")
    return 0 if created == len(rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
