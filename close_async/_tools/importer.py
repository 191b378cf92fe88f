"""``close-async import``: one opportunity per row of a JSON Lines or CSV file, resumable.

Rows stream from the file through ``stream_create``; nothing holds the whole file, so memory
stays flat however long it is. A bad row (bad cell, a cell over csv's 128 KiB limit, a JSON line
nested too deep, a NUL byte, bytes not in the encoding) is reported with its line; the others go
through. The run stops early, sending nothing more, when:

- the server refuses the API key (401) or the plan (402), redirects (the base URL is wrong),
  asks (429) for a longer wait than the client's ``max_retry_wait``, or cannot be reached at
  all: one message instead of one per row (exit 3); a row held back by a 429 is ``waiting``,
  sent by the re-run;
- the journal cannot be written (disk full): exit 4; what was not recorded is listed;
- ``stop`` is triggered (Ctrl-C, SIGTERM): exit 130. Requests already out get ``grace`` seconds
  to finish (a second signal cuts it short); rows still queued are not sent; the rows whose
  request was out when cut are named (they are ``unknown``).

Which results stop the run, ``Stop`` and the report of a stopped run are ``import_stop``; the
counts (``ImportSummary``) and exit codes are ``import_summary``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from .._client import AsyncCloseClient
from .._exceptions import (
    APIConnectionError,
    CloseError,
    InvalidInputError,
    RateLimitError,
)
from .._resources.opportunities.reconcile import DEFAULT_SETTLE
from .._resources.opportunities.requests import to_create
from ..models import CreateOpportunity, Opportunity
from .import_build import build
from .import_outcome import SENT, differs, journal_error, may_have_created, record_outcome
from .import_reconcile import UnknownRow, sent_at_now
from .import_stop import Stop, same_stop, settle_or_stop, stop_reason, stop_report
from .import_summary import (
    EXIT_INTERRUPTED,
    EXIT_JOURNAL,
    EXIT_STOPPED,
    ImportSummary,
    ProgressCallback,
)
from .import_trace import SendTracker
from .journal import DONE, UNKNOWN_STATES, Journal, JournalWriteError
from .rows import Row, read_rows, resolve_encoding

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_JOURNAL",
    "EXIT_STOPPED",
    "ImportSummary",
    "ProgressCallback",
    "Row",
    "Stop",
    "read_rows",
    "run_import",
    "stop_report",
]

_encoder = msgspec.json.Encoder()


class _NotSent(CloseError):
    """Raised from ``on_send``: the import is stopping, so this request must not leave."""


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
    encoding: str | None = None,
    stop: Stop | None = None,
    grace: float = 5.0,
    reconcile: bool = False,
    settle: float = DEFAULT_SETTLE,
) -> ImportSummary:
    """Import ``path``; with ``dry_run`` only validate (``client`` may then be None).

    ``reconcile``: then look up the rows left unknown (``_import_reconcile``), ``settle`` seconds
    after each was sent at the earliest."""
    summary = ImportSummary()
    started = asyncio.get_running_loop().time()
    pending: dict[int, Row] = {}  # stream index -> row, for rows in flight only
    codec = resolve_encoding(path, encoding)
    tracker = None if dry_run else SendTracker(journal)
    unknowns: list[UnknownRow] | None = [] if reconcile and not dry_run else None

    def halt(reason: str, code: int) -> None:
        if summary.stopped is None:
            summary.stopped, summary.stop_code = reason, code

    def created(row: int, id: str) -> None:
        """``note(row, DONE, id=id)``: the usual outcome, the short way (no keywords)."""
        if journal is not None and not dry_run:
            try:
                journal.created(row, id)
            except JournalWriteError as exc:
                halt(str(exc), EXIT_JOURNAL)
                summary.unrecorded.append((row, f"{DONE} {id or ''}".strip()))
        if output is not None:
            output.write(_encoder.encode({"row": row, "state": DONE, "id": id}).decode() + "\n")

    def note(row: int, state: str, **fields: Any) -> None:
        if state == DONE and len(fields) == 1 and "id" in fields:
            created(row, fields["id"])
            return
        if journal is not None and not dry_run:
            try:  # outcomes: written a batch at a time (one write() with the next "sending")
                if state == "waiting":
                    journal.record(row, state, **fields)
                else:
                    journal.outcome(row, state, **fields)
            except JournalWriteError as exc:
                halt(str(exc), EXIT_JOURNAL)
                summary.unrecorded.append((row, f"{state} {fields.get('id') or ''}".strip()))
        if output is not None:  # outcomes only
            output.write(_encoder.encode({"row": row, "state": state, **fields}).decode() + "\n")

    # A journal with no row recorded yet (a first run) has no state for any line this run
    # reads: lines come in order, and this run records a line only once it has read it.
    earlier = journal if journal is not None and any(journal.states) else None

    def to_send() -> Iterator[CreateOpportunity]:
        # No journal: no digest is ever written or compared.
        digest = journal.row_digest if journal is not None else None
        for row in read_rows(path, codec, creates=True, digest=digest):
            if summary.stopped is not None or (stop is not None and stop.reason is not None):
                return
            summary.rows += 1
            summary.last_line = row.line
            previous = earlier.state(row.line) if earlier is not None else None
            if previous in SENT and journal is not None and differs(journal, row):
                raise InvalidInputError(  # check_input refuses this before anything is sent
                    "journal",
                    str(journal.path),
                    f"line {row.line} differs from the row it sent: is it the same input file?",
                )
            if previous == DONE:
                summary.skipped += 1
            elif previous in UNKNOWN_STATES and not retry_unknown:
                why = "in flight when stopped" if previous == "sending" else ""
                summary.unknown.append((row.line, why or journal_error(journal, row.line)))
                if unknowns is not None and journal is not None and row.item is not None:
                    with contextlib.suppress(InvalidInputError, TypeError, ValueError):
                        item = to_create(row.item)
                        unknowns.append(
                            UnknownRow(row.line, item, journal.sent_at(row.line), row.digest)
                        )
            elif row.error is not None or row.item is None:
                _fail(row, row.error)
            else:
                try:  # validated before anything is sent (a CSV row's, as it was read)
                    read = row.item
                    create = read if read.__class__ is CreateOpportunity else build(read)
                except (InvalidInputError, TypeError, ValueError, RecursionError) as exc:
                    _fail(row, exc if isinstance(exc, InvalidInputError) else None, repr(exc))
                    continue
                if dry_run:
                    continue
                pending[summary.sent] = row  # stream_create numbers items in the order yielded
                summary.sent += 1
                yield create
            if progress is not None:
                progress(summary)

    def _fail(row: Row, exc: InvalidInputError | None, other: str = "invalid row") -> None:
        reason = str(exc) if exc else other  # str(): bounded, whatever the value
        summary.failed.append((row.line, reason))
        note(row.line, "invalid", error=reason)

    if dry_run or client is None:
        for _ in to_send():
            pass
        summary.seconds = asyncio.get_running_loop().time() - started
        return summary

    def sending(index: int) -> Awaitable[None] | None:
        if summary.stopped is not None or (stop is not None and stop.reason is not None):
            raise _NotSent("the import is stopping: not sent")
        row = pending[index]
        if tracker is not None:
            tracker.leaving(row.line)
        if journal is None:
            return None
        # Raises if the disk is full. sent_at: a re-run with --reconcile needs it after a kill.
        journal.sending(row.line, row.digest, sent_at_now())
        return journal.durable()  # --fsync: the request leaves once "sending" is on disk

    def sent(index: int, was_sent: bool) -> None:
        if tracker is not None:
            tracker.sent(pending[index].line, was_sent)

    failures = 0

    # Results a worker has in hand but consume has not taken yet (in run_pool's queue, or a
    # worker waiting to put one there): a hard cut cancels consume, and these are still known.
    finished: dict[int, Opportunity | CloseError] = {}

    def account(row: Row, result: Any) -> bool:
        """Account for any other result; False when it was not sent at all."""
        nonlocal failures
        if isinstance(result, (_NotSent, JournalWriteError)):
            summary.not_sent += 1
            if isinstance(result, JournalWriteError):  # a "sending" refused: the disk filled?
                full = journal is not None and journal.broken is None and journal.full is not None
                halt(_journal_stop(journal) if full and journal else str(result), EXIT_JOURNAL)
            return False
        reason = stop_reason(result, client, failures if summary.created else None)
        failures = failures + 1 if isinstance(result, APIConnectionError) else 0
        if reason is not None:
            halt(reason, EXIT_STOPPED)
        refused = reason is not None or bool(summary.stopped and same_stop(result, summary.stopped))
        if refused and isinstance(result, RateLimitError):
            summary.not_sent += 1  # the journal says "waiting" (on_sent): the re-run sends it
        elif refused and not getattr(result, "may_have_succeeded", False):
            summary.not_sent += 1  # refused like the rest: the journal says "failed"
            note(row.line, "failed", error=str(result))
        else:
            record_outcome(row, result, summary, note)
            if may_have_created(result) and unknowns is not None and row.item is not None:
                item = to_create(row.item)  # it was valid: it was sent
                unknowns.append(UnknownRow(row.line, item, result.sent_at, row.digest))
        return True

    async def consume(results: AsyncIterator[tuple[int, Any]] | None = None) -> None:
        nonlocal failures
        stream = results or client.opportunities.stream_create(
            to_send(),
            concurrency=concurrency,
            on_send=sending,
            on_sent=sent,
            on_result=finished.__setitem__,
        )
        async for index, result in stream:
            finished.pop(index, None)
            row = pending.pop(index)
            if tracker is not None:
                tracker.finished(row.line)
            if isinstance(result, Opportunity) and summary.stopped is None:  # the usual case
                failures = 0
                summary.created += 1
                created(row.line, result.id)
            elif not account(row, result):
                continue
            if tracker is not None and tracker.error is not None:
                halt(str(tracker.error), EXIT_JOURNAL)
            if journal is not None and (journal.full or journal.broken) is not None:
                halt(_journal_stop(journal), EXIT_JOURNAL)
            if progress is not None:
                progress(summary)

    task = asyncio.ensure_future(consume())
    if stop is not None:
        soft = asyncio.ensure_future(stop.soft.wait())
        await asyncio.wait({task, soft}, return_when=asyncio.FIRST_COMPLETED)
        soft.cancel()
        if not task.done():
            halt(f"interrupted by {stop.reason}", EXIT_INTERRUPTED)
            hard = asyncio.ensure_future(stop.hard.wait())
            await asyncio.wait({task, hard}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
            hard.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await consume(_each(sorted(finished.items())))  # answered: not "in flight"
                for row in pending.values():
                    if tracker is None or tracker.left(row.line):
                        summary.in_flight.append(row.line)
                        summary.unknown.append((row.line, "in flight when stopped"))
                    else:
                        summary.not_sent += 1
                        if tracker is not None and tracker.announced(row.line):
                            note(row.line, "waiting")
        elif stop.reason is not None:
            halt(f"interrupted by {stop.reason}", EXIT_INTERRUPTED)
    if not task.cancelled():
        await task
    if journal is not None:
        _flush(journal, halt)
    if unknowns and summary.stopped is None:
        await settle_or_stop(client, unknowns, journal, summary, note, settle, concurrency, stop)
    if journal is not None:  # the outcomes still held back; and those a failed write lost
        _flush(journal, halt)
        summary.unrecorded += journal.unwritten
        journal.unwritten.clear()
    summary.seconds = asyncio.get_running_loop().time() - started
    return summary


def _flush(journal: Journal, halt: Callable[[str, int], None]) -> None:
    """Write the outcomes held back, and stop (exit 4) if the journal failed or filled at any
    time, in the flush at the end of a loop iteration too (after the last result's check)."""
    with contextlib.suppress(JournalWriteError):  # ``broken`` and ``unwritten`` say it
        journal.flush()
    if (journal.broken or journal.full) is not None or journal.unwritten:
        halt(_journal_stop(journal), EXIT_JOURNAL)


def _journal_stop(journal: Journal) -> str:
    if journal.broken is None:
        return f"the journal's disk is full ({journal.full})"
    return str(journal.refusal(journal.broken))


async def _each(items: list[tuple[int, Any]]) -> AsyncIterator[tuple[int, Any]]:
    for item in items:
        yield item
