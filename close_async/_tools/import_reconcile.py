"""``close-async import --reconcile``: settle the rows whose outcome is unknown.

After the rows of the file have been sent, every row still unknown (in flight when an earlier run
was killed, an ambiguous failure of that run or of this one) is looked up with
``opportunities.reconcile``:

- ``created``: recorded as created with the id found (the journal's ``created`` record);
- ``absent``: sent again, once per ``absent`` verdict: a new attempt, journaled like any other.
  If that attempt fails ambiguously it is reconciled in turn, and so on, up to
  ``MAX_SENT_AGAIN`` new attempts; a row absent after the last is recorded ``failed`` (nothing
  was created: the next run sends it). A row is never sent while an earlier attempt of it may
  still show up: only ``absent`` (after ``settle``, two empty reads) lets it go again;
- ``ambiguous`` and ``pending`` rows stay unknown, named with the ids that matched.

Rows that no server could tell apart (identical rows of one file) are reconciled together, so
that two of them are never matched to one opportunity; the ids the journal already records as
created (other rows') and those this client created never match, and an opportunity that
matches rows of two different groups makes both ambiguous rather than giving it to either.
A row needs the ``sent_at`` its journal records (journals written before 0.x lack it): without
it the window cannot be known, and the row stays unknown.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .._client import AsyncCloseClient
from .._exceptions import CloseError
from .._resources.opportunities.match import Probe
from .._resources.opportunities.reconcile import Excluded, Reconciled, reconcile_group
from ..models import CreateOpportunity, Opportunity
from .journal import Journal, JournalWriteError

_UTC = dt.timezone.utc
#: New attempts per row and run, each only after an ``absent`` verdict on the one before it.
MAX_SENT_AGAIN = 3


@dataclass
class UnknownRow:
    """A row whose request may have created an opportunity."""

    line: int
    item: CreateOpportunity
    sent_at: dt.datetime | None
    digest: int = 0  # the row digest (Journal.row_digest) of its text


class Summary(Protocol):
    created: int
    reconciled: int
    resent: int
    settled: list[tuple[int, str]]
    failed: list[tuple[int, str]]
    unknown: list[tuple[int, str]]


Note = Callable[..., None]


_second: list[Any] = [None, ""]  # the last second formatted, and its text up to the seconds
_MILLIS = tuple(f".{ms:03d}+00:00" for ms in range(1000))  # what follows the seconds


def sent_at_now() -> str:
    """A journal's ``sent_at``: now, UTC, ISO 8601 with milliseconds: the text of
    ``datetime.now(UTC).isoformat(timespec="milliseconds")``, the date formatted once a second
    and the milliseconds looked up (0.2 us instead of 2-3, measured; one per request sent)."""
    ns = time.time_ns()
    second = ns // 1_000_000_000
    if second != _second[0]:
        _second[:] = second, dt.datetime.fromtimestamp(second, _UTC).isoformat()[:19]
    return _second[1] + _MILLIS[ns // 1_000_000 % 1000]  # type: ignore[no-any-return]


async def settle_unknown(
    client: AsyncCloseClient,
    rows: list[UnknownRow],
    *,
    journal: Journal | None,
    summary: Summary,
    note: Note,
    settle: float,
    concurrency: int,
) -> None:
    """Reconcile ``rows`` (see the module docstring); updates ``summary`` and the journal."""
    unknown = dict(summary.unknown)
    reasons = dict(unknown)  # why each was unknown, to tell with what became of it
    claimed = journal.created_ids() if journal is not None else set()
    resolved: dict[int, tuple[str, str]] = {}  # line -> (outcome, why), for summary.unknown
    told: dict[int, list[str]] = defaultdict(list)  # line -> what happened, in order
    attempts = 0
    while rows:
        resend: list[UnknownRow] = []
        for row, verdict in await _verdicts(client, rows, claimed, settle, concurrency):
            if verdict is None:
                unknown[row.line] = "no sent_at in the journal (written before --reconcile)"
                told[row.line].append(f"{unknown[row.line]}: left unknown")
            elif verdict.state == "created":
                assert verdict.opportunity is not None  # "created" always names it
                claimed.add(verdict.opportunity.id)
                note(row.line, "created", id=verdict.opportunity.id, reconciled=True)
                summary.reconciled += 1
                resolved[row.line] = ("created", "")
                told[row.line].append(f"found {verdict.opportunity.id}: recorded as created")
            elif verdict.state == "absent" and attempts < MAX_SENT_AGAIN:
                resend.append(row)
                told[row.line].append("absent after the settle: sent again")
            elif verdict.state == "absent":
                why = f"not created: found absent after each of {attempts + 1} attempts"
                note(row.line, "failed", error=why)
                resolved[row.line] = ("failed", why)
                told[row.line].append(why)
            else:
                unknown[row.line] = _why(verdict)
                told[row.line].append(f"{_why(verdict)}: left unknown")
        attempts += 1
        summary.resent += len(resend)
        rows = []
        for row, result in await _send_again(
            client, resend, journal=journal, note=note, concurrency=concurrency
        ):
            if isinstance(result, Opportunity):
                claimed.add(result.id)
                resolved[row.line] = ("created", "")
                told[row.line].append(f"created {result.id}")
            elif result.may_have_succeeded:  # reconciled in turn, on the next round
                note(row.line, "unknown", error=str(result), sent_at=_iso(result.sent_at))
                unknown[row.line] = str(result)
                rows.append(UnknownRow(row.line, row.item, result.sent_at, row.digest))
                told[row.line].append(f"unknown again ({result})")
            else:
                note(row.line, "failed", error=str(result))
                resolved[row.line] = ("failed", str(result))
                told[row.line].append(f"failed ({result})")
    for line, (outcome, why) in resolved.items():
        unknown.pop(line, None)
        if outcome == "failed":
            summary.failed.append((line, why))
        else:
            summary.created += 1
    summary.unknown[:] = sorted(unknown.items())
    for line, steps in sorted(told.items()):
        before = reasons.get(line)
        summary.settled.append((line, (f"{before} -> " if before else "") + ", ".join(steps)))


async def _verdicts(
    client: AsyncCloseClient,
    rows: Iterable[UnknownRow],
    claimed: set[str],
    settle: float,
    concurrency: int,
) -> list[tuple[UnknownRow, Reconciled | None]]:
    """Each row's verdict (None: no ``sent_at``), identical rows reconciled as one group."""
    groups: dict[bytes, list[UnknownRow]] = defaultdict(list)
    out: list[tuple[UnknownRow, Reconciled | None]] = []
    for row in rows:
        if row.sent_at is None:
            out.append((row, None))
        else:
            groups[Probe(row.item).key].append(row)
    gate = asyncio.Semaphore(concurrency)
    opportunities = client.opportunities
    exclude = Excluded(claimed, opportunities.created_ids)

    async def one(group: list[UnknownRow]) -> list[Reconciled]:
        async with gate:
            stamps = [row.sent_at for row in group if row.sent_at is not None]
            return await reconcile_group(
                opportunities._lister(), group[0].item, stamps, settle=settle, exclude=exclude
            )

    listed = list(groups.values())
    results = await asyncio.gather(*(one(group) for group in listed))
    # One opportunity that matches rows of two groups (one sent a field the other left out)
    # belongs to neither for sure: both stay unknown.
    owners: dict[str, set[int]] = defaultdict(set)
    for n, verdicts in enumerate(results):
        for verdict in verdicts:
            for opp in verdict.matches:
                owners[opp.id].add(n)
    shared = {n for groups_of in owners.values() if len(groups_of) > 1 for n in groups_of}
    for n, (group, verdicts) in enumerate(zip(listed, results, strict=True)):
        for row, verdict in zip(group, verdicts, strict=True):
            if n in shared:
                verdict = Reconciled("ambiguous", None, verdict.matches, verdict.reads)
            out.append((row, verdict))
    return out


async def _send_again(
    client: AsyncCloseClient,
    rows: list[UnknownRow],
    *,
    journal: Journal | None,
    note: Note,
    concurrency: int,
) -> list[tuple[UnknownRow, Opportunity | CloseError]]:
    """Send each row once more, journaled as on the first pass; each row with its result."""
    if not rows:
        return []

    def sending(index: int) -> Awaitable[None] | None:
        row = rows[index]
        if journal is None:
            return None
        journal.sending(row.line, row.digest, sent_at_now())
        return journal.durable()

    def sent(index: int, was_sent: bool) -> None:
        if not was_sent and journal is not None:
            journal.record(rows[index].line, "waiting")

    out: list[tuple[UnknownRow, Opportunity | CloseError]] = []
    stream = client.opportunities.stream_create(
        [row.item for row in rows], concurrency=concurrency, on_send=sending, on_sent=sent
    )
    async for index, result in stream:
        row = rows[index]
        if isinstance(result, Opportunity):
            note(row.line, "created", id=result.id)
        elif isinstance(result, JournalWriteError):
            continue  # "sending" could not be written, so it was not sent: still unknown
        out.append((row, result))
    return out


def _why(verdict: Reconciled) -> str:
    if verdict.state == "ambiguous":
        ids = ", ".join(o.id for o in verdict.matches[:5])
        more = f" and {len(verdict.matches) - 5} more" if len(verdict.matches) > 5 else ""
        return f"reconcile: ambiguous, {len(verdict.matches)} opportunities match ({ids}{more})"
    return f"reconcile: {verdict.state} (too early to tell: run again later)"


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(_UTC).isoformat(timespec="milliseconds")


def iso_sent_at(error: Any) -> str | None:
    """The journal's ``sent_at`` of an error that may have succeeded."""
    return _iso(getattr(error, "sent_at", None))
