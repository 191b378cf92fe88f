"""The import journal: an append-only JSON Lines file recording each row's outcome.

The first line is a header naming the format and the input (``{"journal": 2, "input":
"/abs/deals.csv"}``). The format says how a row's ``digest`` was made (``rows.DIGESTS``): 1
(SHA-256, every journal before format 2, and one with no header) is resumed as it was written,
with SHA-256; 2 (CRC-32 + Adler-32) is what a new journal is; a later one raises
``JournalFormatError`` (nothing read, nothing written). Then
one record per line, written to the OS as it happens (``record``, ``sending``), so a killed import
loses nothing recorded; the outcomes of an import's requests (``outcome``) are written a batch at a
time, with the next record or at the end of the event-loop iteration at the latest, and noted
in memory (``state()``, ``last``) once written (``journal_append``: a kill in that window leaves
the row ``sending``, unknown on resume; a write that fails leaves it ``sending`` here too):

- ``{"row": 12, "state": "sending", "digest": "...", "sent_at": "2026-...+00:00"}``: the request
  for line 12 may leave now (``sent_at``: when, for ``--reconcile``; older journals lack it).
- ``{"row": 12, "state": "waiting"}``: that attempt never left, or got a 429: nothing created.
- ``{"row": 12, "state": "created", "id": "oppo_..."}``
- ``{"row": 12, "state": "failed", "error": "..."}``: certainly not created (safe to send again).
- ``{"row": 12, "state": "unknown", "error": "...", "sent_at": "..."}``: may have been created.
- ``{"row": 12, "state": "invalid", "error": "..."}``: the row itself is bad; nothing was sent.

On a re-run the last record of each row decides: ``created`` rows are skipped; ``sending`` (the
import died while the request was out) and ``unknown`` rows are not sent again unless asked;
everything else is sent. The digest of each row's text guards against a journal used with a
different file (checked for every row before anything is sent).

One import at a time: the journal file itself is held with ``flock`` for the whole run, and
``open_journal(wait=...)`` waits for another import to let go of it (``journal_lock``).

Memory on resume: one byte of state, 8 bytes of digest and 4 bytes of "last record" per line,
in flat arrays (200,000 rows: 2.4 MB), never a dict of row objects.

``fsync=True``: records are written as always, and a writer thread fsyncs what was written
since its last fsync (group commit), so the event loop never waits for the disk. A power cut
loses at most the records of the last fsync round (a few milliseconds); a request leaves only
once its ``sending`` record is synced (``durable``). That thread, and the space set aside for a
full disk, are ``journal_disk``; writing whole lines, the full disk and the held outcomes are
``journal_append``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from .journal_append import Appender, Note
from .journal_disk import RESERVE, GroupSync, JournalWriteError, is_disk_full, make_reserve
from .journal_lock import LOCK_POLL, JournalError, JournalLockedError, lock, unlock, wait_unlocked
from .journal_records import (
    CODE,
    DONE,
    STATES,
    UNKNOWN_CODE,
    UNKNOWN_STATES,
    decoder,
    encoder,
    export_outcomes,
    header_decoder,
    read_created_ids,
)
from .rows import DIGEST_VERSION, DIGESTS, Digest

__all__ = [
    "DONE",
    "RESERVE",
    "STATES",
    "UNKNOWN_STATES",
    "Journal",
    "JournalError",
    "JournalFormatError",
    "JournalLockedError",
    "JournalWriteError",
    "is_disk_full",
    "open_journal",
]

_SENDING = b'{"row":%d,"state":"sending","digest":"%016x","sent_at":%s}\n'
_CREATED = b'{"row":%d,"state":"created","id":%s}\n'
_SENDING_CODE, _DONE_CODE = CODE["sending"], CODE[DONE]


class JournalFormatError(JournalError):
    """The journal is of a format this version cannot read (a newer close-async wrote it)."""


class Journal(Appender):
    """Reads the states a previous run recorded, and appends this run's."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        input: str | os.PathLike[str] | None = None,
        reserve: int = RESERVE,
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.input: str | None = None  # the input named by the header, if any
        self.states = bytearray()  # line -> state code
        self.digests = array("Q")  # line -> 64-bit row digest (0: none)
        self.last = array("I")  # line -> ordinal of its last record
        self.errors: dict[int, str] = {}  # line -> error, for rows last "unknown" only (few)
        self.sent_ats: dict[int, str] = {}  # line -> first sent_at, rows in flight or unknown
        self.broken: OSError | None = None  # a write failed: nothing more can be recorded
        self.full: OSError | None = None  # the disk filled; the reserve took what was in flight
        self._lock_fd = lock(self.path)
        reserve_path = self.path.with_name(self.path.name + ".reserve")
        try:
            make_reserve(reserve_path, reserve)
        except OSError as exc:
            unlock(self._lock_fd)
            raise JournalWriteError(f"cannot write beside the journal {self.path}: {exc}") from None
        self._records = 0
        self.version: int | None = None  # the header's format (1: SHA-256 digests, 2: CRC)
        try:
            torn = self._load() if self.path.exists() else False
        except JournalFormatError:
            with contextlib.suppress(OSError):
                reserve_path.unlink()
            unlock(self._lock_fd)
            raise
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._start_appending(fd, reserve_path, torn)
        if self._records == 0 and self.version is None and os.fstat(self._fd).st_size == 0:
            name = None if input is None else str(Path(input).resolve())
            self.input, self.version = name, DIGEST_VERSION
            self.write(encoder.encode({"journal": DIGEST_VERSION, "input": name}) + b"\n")
        #: How this journal digests a row's text: its header's format (none: format 1).
        self.row_digest: Digest = DIGESTS[self.version or 1]
        self._syncer = GroupSync(self, self._fd) if fsync else None

    def _load(self) -> bool:
        """Read the records; True when the file ends in a torn (unterminated) line."""
        line = b""
        with self.path.open("rb") as f:
            for line in f:
                try:
                    record = decoder.decode(line)
                except msgspec.DecodeError:
                    if self._records == 0 and self.version is None:
                        self._header(line)
                    continue  # the header, or a line cut short by a kill: no row state
                self._note(record.row, record.state, record.digest, record.error, record.sent_at)
        return bool(line) and not line.endswith(b"\n")

    def _header(self, line: bytes) -> None:
        try:
            header = header_decoder.decode(line)
        except msgspec.DecodeError:
            return  # a line cut short by a kill
        if header.journal not in DIGESTS:
            raise JournalFormatError(
                f"the journal {self.path} is of format {header.journal}, written by a newer"
                f" close-async (this one reads formats 1 to {max(DIGESTS)}): upgrade, or pick"
                " another --journal. Nothing was sent."
            )
        self.input, self.version = header.input, header.journal

    def _note(
        self,
        row: int,
        state: str,
        digest: str | None,
        error: str | None = None,
        sent_at: str | None = None,
    ) -> None:
        if row < 1 or row >= 2**31:
            return
        if state == "unknown" and error:
            self.errors[row] = error
        elif self.errors:  # almost always empty
            self.errors.pop(row, None)
        if state in UNKNOWN_STATES:  # the earliest attempt that may have created it
            if sent_at and row not in self.sent_ats:
                self.sent_ats[row] = sent_at
        elif self.sent_ats:
            self.sent_ats.pop(row, None)
        if row >= len(self.states):
            grow = row + 1 - len(self.states) + len(self.states) // 2
            self.states.extend(bytes(grow))
            self.digests.extend(array("Q", bytes(8 * grow)))
            self.last.extend(array("I", bytes(4 * grow)))
        self._records += 1
        self.states[row] = CODE.get(state, UNKNOWN_CODE)
        self.last[row] = self._records
        if digest:
            try:  # not contextlib.suppress: a context manager per record costs ~1 us
                self.digests[row] = int(digest, 16) & 0xFFFF_FFFF_FFFF_FFFF
            except ValueError:
                return  # a digest that is not hex: none recorded

    def state(self, row: int) -> str | None:
        """The last state recorded for line ``row``, or None."""
        code = self.states[row] if 0 < row < len(self.states) else 0
        return STATES[code] or None

    def digest(self, row: int) -> int:
        """The digest recorded for line ``row`` as an int (0 when none)."""
        return self.digests[row] if 0 < row < len(self.digests) else 0

    def sent_at(self, row: int) -> dt.datetime | None:
        """When the request of line ``row``, in flight or unknown, first left (None: unknown)."""
        text = self.sent_ats.get(row)
        try:
            moment = dt.datetime.fromisoformat(text) if text else None
        except ValueError:
            return None
        return moment if moment is not None and moment.tzinfo is not None else None

    def created_ids(self) -> set[str]:
        """Every opportunity id the journal records as created (read from the file: only
        ``--reconcile`` needs them, so that no row is matched to another row's opportunity)."""
        with contextlib.suppress(JournalWriteError):  # broken: what it holds is lost anyway
            self.flush()
        return read_created_ids(self.path)

    def recorded_rows(self) -> int:
        return sum(1 for code in self.states if code)

    def record(self, row: int, state: str, **fields: Any) -> None:
        """Append one record, written at once; raises ``JournalWriteError`` if it cannot be
        written, and for a ``sending`` record once the disk has filled (the request must then
        not leave)."""
        problem = self.broken or (self.full if state == "sending" else None)
        if problem is not None:
            raise self.refusal(problem)
        self.write(encoder.encode({"row": row, "state": state, **fields}) + b"\n")
        self._note(row, state, fields.get("digest"), fields.get("error"), fields.get("sent_at"))

    def sending(self, row: int, digest: int, sent_at: str) -> None:
        """``record(row, "sending", digest=f"{digest:016x}", sent_at=sent_at)`` (``digest``:
        ``row_digest`` of the row's text; 0: none), the import's record per request, written at
        once (with the outcomes held back) in one ``write()``."""
        problem = self.broken or self.full
        if problem is not None:
            raise self.refusal(problem)
        if not 0 < digest < 2**64:
            self.record(row, "sending", sent_at=sent_at)
            return
        self.write(_SENDING % (row, digest, encoder.encode(sent_at)))
        if 0 < row < len(self.states) and sent_at and not self.errors:  # the usual case
            self.sent_ats.setdefault(row, sent_at)  # the earliest attempt that may have created
            self._records += 1
            self.states[row] = _SENDING_CODE
            self.last[row] = self._records
            self.digests[row] = digest
        else:
            self._note(row, "sending", f"{digest:016x}", None, sent_at)

    def created(self, row: int, id: str) -> None:
        """``outcome(row, "created", id=id)``: the import's usual outcome, the short way."""
        if self.broken is not None:
            raise self.refusal(self.broken)
        self.hold(_CREATED % (row, encoder.encode(id)), (row, DONE, None, None, None))

    def outcome(self, row: int, state: str, **fields: Any) -> None:
        """Record an outcome (``created``, ``failed``, ``unknown``, ``invalid``), written with
        the next record or at the end of this loop iteration (``Appender.hold``): one write for
        a batch, noted (``state()``, ``last``) once written. A write that fails lists it in
        ``unwritten``; raises ``JournalWriteError`` once the journal is broken."""
        if self.broken is not None:
            raise self.refusal(self.broken)
        note = (row, state, fields.get("digest"), fields.get("error"), fields.get("sent_at"))
        self.hold(encoder.encode({"row": row, "state": state, **fields}) + b"\n", note)

    def _noted(self, notes: list[Note]) -> None:
        states, last = self.states, self.last
        for row, state, digest, error, sent_at in notes:
            if state == DONE and digest is None and 0 < row < len(states) and not self.errors:
                if self.sent_ats:  # _note's usual case, the short way
                    self.sent_ats.pop(row, None)
                self._records += 1
                states[row] = _DONE_CODE
                last[row] = self._records
            else:
                self._note(row, state, digest, error, sent_at)

    def durable(self) -> Awaitable[None] | None:
        """With ``fsync``: an awaitable that is done once every record written so far is on
        disk (the next round of the sync thread: group commit, ~20 ms), else None. The import
        awaits it between recording "sending" and letting the request leave, so that a power
        cut can never lose the record of a create that happened."""
        return None if self._syncer is None else self._syncer.durable()

    def close(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(JournalWriteError):  # broken: ``unwritten`` lists what it held
            self.flush()
        if self._syncer is not None:
            self._syncer.stop()
        os.close(self._fd)
        self._fd = -1
        with contextlib.suppress(OSError):
            self._reserve.unlink()
        unlock(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def export(self, output: str | os.PathLike[str]) -> int:
        """Write each row's outcome (its last record) to ``output`` as JSON Lines, in journal
        order; a row last seen ``sending`` is ``unknown``. Returns the number of rows written."""
        with contextlib.suppress(JournalWriteError):
            self.flush()
        return export_outcomes(self.path, self.last, output)


async def open_journal(
    path: str | os.PathLike[str],
    *,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    poll: float = LOCK_POLL,
    **options: Any,
) -> Journal:
    """``Journal(path, **options)``; if another import holds it, try again every ``poll``
    seconds for up to ``wait`` seconds (``math.inf``: until it is free), calling
    ``on_wait(holder)`` once when the wait starts. Past ``wait``: ``JournalLockedError``
    (``journal_lock.wait_unlocked``)."""
    return await wait_unlocked(
        lambda: Journal(path, **options), path, wait=wait, on_wait=on_wait, poll=poll
    )
