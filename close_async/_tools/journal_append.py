"""Appending to the journal: whole lines, a full disk, and outcomes written a batch at a time.

- ``write(data)``: ``data`` (whole lines) reaches the OS at once, in one ``write()`` when it can,
  after any outcomes held back (below), so the file keeps the order things were recorded in. A
  line torn by a failed write (or a kill) is ended first, so the next line starts fresh. The
  disk fills (``is_disk_full``): the reserve beside the journal is given up and the write tried
  again in its space (``full`` says so from then on); any other failure, or a second full disk,
  sets ``broken`` and raises ``JournalWriteError``: nothing more can be recorded.
- A write the disk takes only in part (a short count: Linux writes what fits, then ENOSPC) goes
  on from where it stopped, the reserve's space taking the rest: no line is written twice, and
  the lines in the file stay the records noted, in their order.
- ``hold(line, note)``: an outcome (``created``, ``failed``, ...) waits for the next write (the
  next ``sending`` record, most often) or for ``flush()``, scheduled with ``loop.call_soon`` when
  the first one is held: at the latest it reaches the OS at the end of this event-loop iteration.
  One ``write()`` per batch instead of one per outcome. A process killed in between leaves the
  row's last record ``sending``: unknown on resume, as if it had been killed a moment earlier,
  while the answer was still unread in the socket. Outside a running loop, held means written.
  ``note`` (row, state, digest, error, sent_at) is handed to ``_noted`` once its line is
  written, never before: what the journal notes (``state()``, ``last``) is what the file holds.
- ``unwritten``: the outcomes a failed write lost (line, what), the lines it did write left
  out, for the import's report of what the journal could not take; they stay listed until the
  caller takes them. A failure in the flush at the end of an iteration raises nowhere:
  ``broken`` (or ``full``) and ``unwritten`` say it, for the caller to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import msgspec

from .journal_disk import GroupSync, JournalWriteError, is_disk_full

# What a held outcome notes once written: (row, state, digest, error, sent_at).
Note = tuple[int, str, str | None, str | None, str | None]


class Appender:
    """The journal's write side: its descriptor, the reserve, and the outcomes held back."""

    path: Path
    broken: OSError | None  # a write failed: nothing more can be recorded
    full: OSError | None  # the disk filled; the reserve took what was in flight
    _syncer: GroupSync | None  # --fsync: told of each write

    def _start_appending(self, fd: int, reserve: Path, torn: bool) -> None:
        self._fd = fd
        self._reserve = reserve
        self._torn = torn  # a kill mid-write left a last line with no newline: end it first
        self._held: list[bytes] = []  # outcome lines not written yet
        self._held_notes: list[Note] = []  # what each of them notes once written
        self._unsent = b""  # what the last write left unwritten when it failed
        self._flush_on: asyncio.AbstractEventLoop | None = None  # where a flush() is scheduled
        self._syncer = None
        self.unwritten: list[tuple[int, str]] = []

    def _noted(self, notes: list[Note]) -> None:
        """Note the outcomes of ``notes``, their lines written (in this order)."""
        raise NotImplementedError

    def hold(self, data: bytes, note: Note) -> None:
        """Write ``data`` (an outcome) with the next write, at the latest at the end of this
        loop iteration, then ``_noted([note])``; raises ``JournalWriteError`` only where there
        is no loop to wait for."""
        self._held.append(data)
        self._held_notes.append(note)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_on is not loop:  # none scheduled on this loop (or one on a loop gone)
            self._flush_on = loop
            loop.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._flush_on = None
        if self._held and self._fd >= 0:
            with contextlib.suppress(JournalWriteError):  # ``broken`` and ``unwritten`` say it
                self.flush()

    def flush(self) -> None:
        """Write the outcomes held back (see ``write`` for what a failure does)."""
        if self._held:
            self.write(b"")

    def write(self, data: bytes) -> None:
        held = self._held
        if held:
            notes = self._held_notes
            self._held, self._held_notes = [], []
            try:
                self._write(b"".join(held) + data)
            except JournalWriteError:
                done = _lines_written(held, len(data), len(self._unsent))
                self._noted(notes[:done])
                self.unwritten += map(_what, held[done:])
                raise
            self._noted(notes)
        else:
            self._write(data)
        syncer = self._syncer
        if syncer is not None:
            syncer.wrote()

    def _write(self, data: bytes) -> None:
        """Write ``data`` whole; on failure ``_unsent`` is the part of it not written."""
        if self._torn:
            data = b"\n" + data
        self._unsent = data
        if self.broken is not None:
            raise self.refusal(self.broken)
        try:
            written = os.write(self._fd, data)
            if written == len(data):  # the usual: all of it at once
                self._torn = False
                self._unsent = b""
            else:
                self._write_all(data, written)
        except OSError as exc:
            if not (is_disk_full(exc) and self._reserve.exists()):
                self._fail(exc)
            # Give up the reserve: its space takes the outcomes of the requests still out.
            self.full = exc
            self._reserve.unlink()
            try:  # only the part not written yet: O_APPEND, and nothing wrote in between
                self._write_all(self._unsent)
            except OSError as again:
                self._fail(again)

    def _fail(self, exc: OSError) -> None:
        self.broken = exc
        raise self.refusal(exc) from None

    def refusal(self, problem: object) -> JournalWriteError:
        """The error of a record this journal cannot take, because of ``problem``."""
        return JournalWriteError(f"cannot write the journal {self.path}: {problem}")

    def _write_all(self, data: bytes, written: int = 0) -> None:
        """Write the rest of ``data``, ``written`` bytes of it already written."""
        while written != len(data):
            if written:
                data = self._unsent = data[written:]
                self._torn = True  # part of a line is on disk: the next line starts fresh
            # A write that fails writes nothing (a regular file: what fits comes back as a short
            # count first), so ``_unsent`` and ``_torn`` stay true when this raises.
            written = os.write(self._fd, data)
        self._torn = False
        self._unsent = b""


class _Outcome(msgspec.Struct):
    row: int
    state: str
    id: str | None = None


_outcome_decoder = msgspec.json.Decoder(_Outcome)


def _lines_written(held: list[bytes], after: int, unsent: int) -> int:
    """How many of ``held`` a failed write took whole (``after`` bytes followed them, the
    last ``unsent`` bytes were not written)."""
    room = sum(map(len, held)) + after - unsent  # bytes of held and after that are on disk
    done = 0
    for line in held:
        room -= len(line)
        if room < 0:
            break
        done += 1
    return done


def _what(line: bytes) -> tuple[int, str]:
    """(line, "created oppo_...") of a held outcome record, as the import reports it."""
    record = _outcome_decoder.decode(line)
    return record.row, f"{record.state} {record.id or ''}".strip()
