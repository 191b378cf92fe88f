"""``close-async import``: one opportunity per row of a JSON Lines or CSV file, resumable.

Rows stream from the file through ``stream_create``; nothing holds the whole file, so memory
stays flat however long it is.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ._bulk import to_create
from ._client import AsyncCloseClient
from ._constants import CUSTOM_PREFIX
from ._exceptions import CloseError, InvalidInputError
from ._journal import DONE, UNKNOWN_STATES, Journal
from .models import CreateOpportunity, Opportunity

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_INT_COLUMNS = frozenset({"value", "confidence"})
_JSON_COLUMNS = frozenset({"attachments", "custom_fields"})


@dataclass
class Row:
    """One input row: its line number, a digest of its text, and the item or why it is bad."""

    line: int
    digest: str
    item: dict[str, Any] | None = None
    error: InvalidInputError | None = None


def read_rows(path: Path) -> Iterator[Row]:
    """Rows of a ``.csv`` file (by extension) or of a JSON Lines file (anything else)."""
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(path)
    else:
        yield from _jsonl_rows(path)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = Row(line_no, _digest(line.rstrip("\r\n")))
            try:
                item = _decoder.decode(line)
            except msgspec.DecodeError as exc:
                row.error = InvalidInputError("row", line.strip()[:80], f"is not JSON ({exc})")
            else:
                if isinstance(item, dict):
                    row.item = item
                else:
                    row.error = InvalidInputError("row", item, "must be a JSON object")
            yield row


def _csv_rows(path: Path) -> Iterator[Row]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        columns = [c.strip() for c in header]
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            row = Row(reader.line_num, _digest("\x1f".join(cells)))
            try:
                row.item = _csv_item(columns, cells)
            except InvalidInputError as exc:
                row.error = exc
            yield row


def _csv_item(columns: list[str], cells: list[str]) -> dict[str, Any]:
    """A CSV row in Close's wire types: an empty cell is not sent; ``value`` and ``confidence``
    are integers; ``attachments``/``custom_fields`` and custom cells starting with ``[`` are JSON
    (multi-value custom fields); every other cell is a string."""
    if len(cells) > len(columns):
        raise InvalidInputError("row", cells, f"has {len(cells)} cells for {len(columns)} columns")
    item: dict[str, Any] = {}
    for column, cell in zip(columns, cells, strict=False):
        if cell == "":
            continue
        if column in _INT_COLUMNS:
            try:
                item[column] = int(cell.strip())
            except ValueError:
                raise InvalidInputError(column, cell, "must be an integer") from None
        elif column in _JSON_COLUMNS or (column.startswith(CUSTOM_PREFIX) and cell.startswith("[")):
            try:
                item[column] = _decoder.decode(cell)
            except msgspec.DecodeError:
                raise InvalidInputError(column, cell, "must be JSON") from None
        else:
            item[column] = cell
    return item


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    skipped: int = 0  # created by an earlier run
    failed: list[tuple[int, str]] = field(default_factory=list)
    unknown: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.unknown else 0


ProgressCallback = Callable[[ImportSummary], None]


async def run_import(
    client: AsyncCloseClient | None,
    path: Path,
    *,
    journal: Journal | None,
    concurrency: int,
    retry_unknown: bool = False,
    dry_run: bool = False,
    output: io.TextIOBase | None = None,
    progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Import ``path``; with ``dry_run`` only validate (``client`` may then be None)."""
    summary = ImportSummary()
    started = asyncio.get_running_loop().time()
    pending: dict[int, Row] = {}  # stream index -> row, for rows in flight only

    def note(row: int, state: str, **fields: Any) -> None:
        if journal is not None and not dry_run:
            journal.record(row, state, **fields)
        if output is not None and state != "sending":  # outcomes only
            output.write(_encoder.encode({"row": row, "state": state, **fields}).decode() + "\n")

    def to_send() -> Iterator[CreateOpportunity]:
        for row in read_rows(path):
            summary.rows += 1
            previous = journal.state(row.line) if journal is not None else None
            if previous is not None and previous.digest not in (None, row.digest):
                raise InvalidInputError(
                    "journal",
                    str(journal.path if journal else ""),
                    f"line {row.line} differs"
                    " from the row this journal recorded: is it the same input file?",
                )
            if previous is not None and previous.state == DONE:
                summary.skipped += 1
            elif previous is not None and previous.state in UNKNOWN_STATES and not retry_unknown:
                summary.unknown.append((row.line, previous.error or "in flight when stopped"))
            elif row.error is not None or row.item is None:
                _fail(row, row.error)
            else:
                try:
                    create = to_create(row.item)  # validated before anything is sent
                except InvalidInputError as exc:
                    _fail(row, exc)
                    continue
                if dry_run:
                    continue
                pending[summary.sent] = row  # stream_create numbers items in the order yielded
                summary.sent += 1
                yield create
            if progress is not None:
                progress(summary)

    def _fail(row: Row, exc: InvalidInputError | None) -> None:
        reason = str(exc) if exc else "invalid row"  # str(): bounded, whatever the value
        summary.failed.append((row.line, reason))
        note(row.line, "invalid", error=reason)

    if dry_run or client is None:
        for _ in to_send():
            pass
    else:

        def sending(index: int) -> None:
            row = pending[index]
            note(row.line, "sending", digest=row.digest)

        async for index, result in client.opportunities.stream_create(
            to_send(), concurrency=concurrency, on_send=sending
        ):
            row = pending.pop(index)
            _record(row, result, summary, note)
            if progress is not None:
                progress(summary)
    summary.seconds = asyncio.get_running_loop().time() - started
    return summary


def _record(
    row: Row,
    result: Opportunity | CloseError,
    summary: ImportSummary,
    note: Callable[..., None],
) -> None:
    if isinstance(result, Opportunity):
        summary.created += 1
        note(row.line, "created", id=result.id)
    elif result.may_have_succeeded:
        summary.unknown.append((row.line, str(result)))
        note(row.line, "unknown", error=str(result))
    else:
        summary.failed.append((row.line, str(result)))
        note(row.line, "failed", error=str(result))
