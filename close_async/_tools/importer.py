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
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import msgspec

from .._client import AsyncCloseClient
from .._constants import API_KEY_ENV
from .._exceptions import (
    APIConnectionError,
    AuthenticationError,
    CloseError,
    InvalidInputError,
    RateLimitError,
    RedirectError,
)
from .._resources.opportunities.reconcile import DEFAULT_SETTLE
from .._resources.opportunities.requests import to_create
from ..models import CreateOpportunity, Opportunity
from .import_reconcile import UnknownRow, iso_sent_at, sent_at_now, settle_unknown
from .import_trace import SendTracker
from .journal import DONE, UNKNOWN_STATES, Journal, JournalWriteError
from .rows import Row, read_rows, resolve_encoding

__all__ = ["ImportSummary", "Row", "Stop", "read_rows", "run_import", "stop_report"]

_encoder = msgspec.json.Encoder()
# After this many connection failures in a row (or the first, before any success): stop.
_UNREACHABLE_AFTER = 10
EXIT_STOPPED, EXIT_JOURNAL, EXIT_INTERRUPTED = 3, 4, 130


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    skipped: int = 0  # created by an earlier run
    failed: list[tuple[int, str]] = field(default_factory=list)
    unknown: list[tuple[int, str]] = field(default_factory=list)
    sent: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # why the run stopped before the end of the file
    stop_code: int = 0
    not_sent: int = 0  # read but held back by the stop (plus those the server refused with it)
    in_flight: list[int] = field(default_factory=list)  # lines cut while their request was out
    last_line: int = 0  # the last line read
    unrecorded: list[tuple[int, str]] = field(default_factory=list)  # the journal refused them
    reconciled: int = 0  # unknown rows --reconcile found created (counted in created too)
    resent: int = 0  # unknown rows --reconcile found absent and sent again
    settled: list[tuple[int, str]] = field(default_factory=list)  # what --reconcile did, per row

    @property
    def exit_code(self) -> int:
        if self.stopped is not None:
            return self.stop_code
        return 1 if self.failed or self.unknown else 0


ProgressCallback = Callable[[ImportSummary], None]


class Stop:
    """Ask a running import to stop: the first call stops sending, the second cuts requests."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.soft = asyncio.Event()
        self.hard = asyncio.Event()

    def __call__(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.soft.set()
        else:
            self.hard.set()

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM here while the block runs (inside the event loop)."""
        loop = asyncio.get_running_loop()
        names = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
        try:
            for sig, name in names.items():
                loop.add_signal_handler(sig, self, name)
        except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C stays KeyboardInterrupt
            names = {}
        try:
            yield
        finally:
            for sig in names:
                loop.remove_signal_handler(sig)


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

    def note(row: int, state: str, **fields: Any) -> None:
        if journal is not None and not dry_run:
            try:
                journal.record(row, state, **fields)
            except JournalWriteError as exc:
                halt(str(exc), EXIT_JOURNAL)
                summary.unrecorded.append((row, f"{state} {fields.get('id') or ''}".strip()))
        if output is not None:  # outcomes only
            output.write(_encoder.encode({"row": row, "state": state, **fields}).decode() + "\n")

    # A journal with no row recorded yet (a first run) has no state for any line this run
    # reads: lines come in order, and this run records a line only once it has read it.
    earlier = journal if journal is not None and any(journal.states) else None

    def to_send() -> Iterator[CreateOpportunity]:
        for row in read_rows(path, codec):
            if summary.stopped is not None or (stop is not None and stop.reason is not None):
                return
            summary.rows += 1
            summary.last_line = row.line
            previous = earlier.state(row.line) if earlier is not None else None
            if previous in _SENT and journal is not None and _differs(journal, row):
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
                try:
                    create = to_create(row.item)  # validated before anything is sent
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
        journal.record(row.line, "sending", digest=row.digest, sent_at=sent_at_now())
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
            if isinstance(result, JournalWriteError):
                halt(str(result), EXIT_JOURNAL)
            return False
        reason = _stop_reason(result, client, failures if summary.created else None)
        failures = failures + 1 if isinstance(result, APIConnectionError) else 0
        if reason is not None:
            halt(reason, EXIT_STOPPED)
        refused = reason is not None or bool(
            summary.stopped and _same_stop(result, summary.stopped)
        )
        if refused and isinstance(result, RateLimitError):
            summary.not_sent += 1  # the journal says "waiting" (on_sent): the re-run sends it
        elif refused and not getattr(result, "may_have_succeeded", False):
            summary.not_sent += 1  # refused like the rest: the journal says "failed"
            note(row.line, "failed", error=str(result))
        else:
            _record(row, result, summary, note)
            if _unknown(result) and unknowns is not None and row.item is not None:
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
                _record(row, result, summary, note)
            elif not account(row, result):
                continue
            if tracker is not None and tracker.error is not None:
                halt(str(tracker.error), EXIT_JOURNAL)
            if journal is not None and journal.full is not None:
                halt(f"the journal's disk is full ({journal.full})", EXIT_JOURNAL)
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
    if unknowns and summary.stopped is None:
        await _settle(client, unknowns, journal, summary, note, settle, concurrency, stop)
    summary.seconds = asyncio.get_running_loop().time() - started
    return summary


async def _settle(
    client: AsyncCloseClient,
    unknowns: list[UnknownRow],
    journal: Journal | None,
    summary: ImportSummary,
    note: Callable[..., None],
    settle: float,
    concurrency: int,
    stop: Stop | None,
) -> None:
    """--reconcile, until it is done or ``stop`` (the rows it had not settled stay unknown)."""
    work = asyncio.ensure_future(
        settle_unknown(
            client, unknowns, journal=journal, summary=summary, note=note, settle=settle,
            concurrency=concurrency,
        )
    )  # fmt: skip
    if stop is None:
        await work
        return
    soft = asyncio.ensure_future(stop.soft.wait())
    await asyncio.wait({work, soft}, return_when=asyncio.FIRST_COMPLETED)
    soft.cancel()
    if not work.done():
        summary.stopped, summary.stop_code = f"interrupted by {stop.reason}", EXIT_INTERRUPTED
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
    else:
        work.result()


_SENT = UNKNOWN_STATES | {DONE}


def _unknown(result: object) -> TypeGuard[CloseError]:
    return isinstance(result, CloseError) and result.may_have_succeeded


async def _each(items: list[tuple[int, Any]]) -> AsyncIterator[tuple[int, Any]]:
    for item in items:
        yield item


def journal_error(journal: Journal | None, line: int) -> str:
    error = journal.errors.get(line) if journal is not None else None
    return error or "unknown since an earlier run"


def _differs(journal: Journal, row: Row) -> bool:
    recorded = journal.digest(row.line)
    return bool(recorded) and recorded != int(row.digest, 16)


def _stop_reason(result: object, client: AsyncCloseClient, failures: int | None) -> str | None:
    """Why no further row should be sent after ``result``, or None."""
    if isinstance(result, AuthenticationError):
        return f"the server refused the API key ({result}): check ${API_KEY_ENV}"
    if getattr(result, "status_code", None) == 402:
        return f"the organization's plan refused the request ({result})"
    cap = client.retry_policy.max_retry_wait
    if isinstance(result, RateLimitError) and (result.retry_after or 0) > cap:
        return (
            f"the server asks to wait {result.retry_after:.0f} s before more requests (over"
            f" the {cap:g} s the client waits out): run the same command again after that"
        )
    if isinstance(result, RedirectError):
        to = _base_url(result.location or "", client.base_url)
        return f"the base URL redirects to {to}: use --base-url {to}"
    connection = isinstance(result, APIConnectionError) and not result.may_have_succeeded
    if connection and (failures is None or failures + 1 >= _UNREACHABLE_AFTER):
        return f"cannot reach {client.base_url} ({result}): check --base-url"
    return None


def _same_stop(result: object, stopped: str) -> bool:
    """A result that failed the way the stop said (the rest of the 401s): not listed per row."""
    if isinstance(result, RedirectError):
        return "the base URL redirects" in stopped
    if isinstance(result, RateLimitError):
        return "the server asks to wait" in stopped
    return (isinstance(result, AuthenticationError) and API_KEY_ENV in stopped) or (
        isinstance(result, APIConnectionError)
        and not result.may_have_succeeded
        and "cannot reach" in stopped
    )


def _base_url(location: str, base_url: str) -> str:
    """The base URL a redirect points to: ``location`` less the path we asked for under it."""
    path = "opportunity/"  # the only endpoint the import uses
    if location.endswith(path) and base_url.endswith("/"):
        return location[: -len(path)]
    return location or "(no Location)"


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
        note(row.line, "unknown", error=str(result), sent_at=iso_sent_at(result))
    else:
        summary.failed.append((row.line, str(result)))
        note(row.line, "failed", error=str(result))


def stop_report(
    summary: ImportSummary, *, journal: Path | None, argv: list[str] | None = None
) -> list[str]:
    """What a stopped run says: why, the rows in flight, and the command to resume."""
    if summary.stopped is None:
        return []
    lines = [f"stopped: {summary.stopped}."]
    if summary.in_flight:
        lines.append(
            f"{len(summary.in_flight)} rows were in flight when cut (their request had left, so"
            f" they may or may not have been created): {_lines(summary.in_flight)}"
        )
    if summary.unrecorded:
        lines.append(
            "not in the journal (it could not be written); a resume calls them unknown: "
            + ", ".join(f"line {line}: {what}" for line, what in summary.unrecorded[:20])
        )
    held = f"{summary.not_sent} rows read were held back or refused (not created); " * bool(
        summary.not_sent
    )
    lines.append(f"{held}rows after line {summary.last_line}, if any, were not read.")
    command = "close-async " + _shell_command(sys.argv[1:] if argv is None else argv)
    if journal is None and summary.created == 0 and not summary.in_flight:
        lines.append("Nothing was created: run the same command again once that is fixed.")
    elif journal is None:
        lines.append(
            "There was no --journal: running the same command again sends every row again."
            " Add --journal FILE to make an import resumable."
        )
    else:
        fix = {EXIT_STOPPED: "Fix that, then resume", EXIT_JOURNAL: "Free some space, then resume"}
        lines.append(f"{fix.get(summary.stop_code, 'To resume')}: {command}")
        if _KEY_SHOWN in command:
            lines.append(f"(the API key is not shown: set ${API_KEY_ENV} to it, then run that)")
    return lines


_KEY_OPTION = "--api-key"
_KEY_SHOWN = f'"${API_KEY_ENV}"'  # left to the shell to expand, never the key itself


def _shell_command(argv: list[str]) -> str:
    """``argv`` for a shell, with the value of ``--api-key`` (either spelling) masked."""
    words: list[str] = []
    masked = False
    for arg in argv:
        if masked:
            words.append(_KEY_SHOWN)
        elif arg.startswith(_KEY_OPTION + "="):
            words.append(f"{_KEY_OPTION}={_KEY_SHOWN}")
        else:
            words.append(shlex.quote(arg))
        masked = arg == _KEY_OPTION and not masked
    return " ".join(words)


def _lines(lines: list[int], most: int = 30) -> str:
    shown = ", ".join(str(n) for n in sorted(lines)[:most])
    more = f" and {len(lines) - most} more" if len(lines) > most else ""
    return f"lines {shown}{more}"
