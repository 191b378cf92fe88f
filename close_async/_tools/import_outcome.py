"""One row's outcome in an import: counted in the ``ImportSummary``, recorded in the journal.

- ``record_outcome(row, result, summary, note)``: an ``Opportunity`` is ``created``; an error
  that may have succeeded (the request left, no answer came back) is ``unknown``, with when it
  was sent (for ``--reconcile``); any other error is ``failed`` (certainly not created, safe to
  send again). ``note`` writes the journal record (and ``--output``'s line).
- ``may_have_created(result)``: whether a result leaves its row ``unknown``.
- For a re-run: ``SENT`` are the states whose row's request may have left; ``differs`` says
  whether a row's text is not the one the journal recorded for its line (another file);
  ``journal_error`` is why a row the journal calls unknown is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

from .._exceptions import CloseError
from ..models import Opportunity
from .import_reconcile import iso_sent_at
from .import_summary import ImportSummary
from .journal import DONE, UNKNOWN_STATES, Journal
from .rows import Row

SENT = UNKNOWN_STATES | {DONE}


def may_have_created(result: object) -> TypeGuard[CloseError]:
    return isinstance(result, CloseError) and result.may_have_succeeded


def journal_error(journal: Journal | None, line: int) -> str:
    error = journal.errors.get(line) if journal is not None else None
    return error or "unknown since an earlier run"


def differs(journal: Journal, row: Row) -> bool:
    recorded = journal.digest(row.line)
    return bool(recorded) and recorded != row.digest


def record_outcome(
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
