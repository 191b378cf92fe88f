"""Appending to the journal: whole lines, a full disk, and outcomes written a batch at a time.

- ``write(data)``: ``data`` (whole lines) reaches the OS at once, in one ``write()`` when it can,
  after any outcomes held back (below), so the file keeps the order things were recorded in. A
  line torn by a failed write (or a kill) is ended first, so the next line starts fresh. The
  disk fills (``is_disk_full``): the reserve beside the journal is given up and the write tried
  again in its space (``full`` says so from then on); any other failure, or a second full disk,
  sets ``broken`` and raises ``JournalWriteError``: nothing more can be recorded.
- ``hold(line, what)``: an outcome (``created``, ``failed``, ...) waits for the next write (the
  next ``sending`` record, most often) or for ``flush()``, scheduled with ``loop.call_soon`` when
  the first one is held: at the latest it reaches the OS at the end of this event-loop iteration.
  One ``write()`` per batch instead of one per outcome. A process killed in between leaves the
  row's last record ``sending``: unknown on resume, as if it had been killed a moment earlier,
  while the answer was still unread in the socket. Outside a running loop, held means written.
- ``unwritten``: the outcomes a failed write lost (line, what), for the import's report of what
  the journal could not take; they stay listed until the caller takes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import msgspec

from .journal_disk import GroupSync, JournalWriteError, is_disk_full


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
        self._flush_on: asyncio.AbstractEventLoop | None = None  # where a flush() is scheduled
        self._syncer = None
        self.unwritten: list[tuple[int, str]] = []

    def hold(self, data: bytes) -> None:
        """Write ``data`` (an outcome) with the next write, at the latest at the end of this
        loop iteration; raises ``JournalWriteError`` only where there is no loop to wait for."""
        self._held.append(data)
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
            self._held = []
            try:
                self._write(b"".join(held) + data)
            except JournalWriteError:
                self.unwritten += map(_what, held)
                raise
        else:
            self._write(data)
        syncer = self._syncer
        if syncer is not None:
            syncer.wrote()

    def _write(self, data: bytes) -> None:
        if self.broken is not None:
            raise JournalWriteError(f"cannot write the journal {self.path}: {self.broken}")
        if self._torn:
            data = b"\n" + data
        try:
            self._write_all(data)
        except OSError as exc:
            if not (is_disk_full(exc) and self._reserve.exists()):
                self.broken = exc
                raise JournalWriteError(f"cannot write the journal {self.path}: {exc}") from None
            # Give up the reserve: its space takes the outcomes of the requests still out.
            self.full = exc
            self._reserve.unlink()
            self._write(data.lstrip(b"\n"))  # starts with a newline if a line was torn

    def _write_all(self, data: bytes) -> None:
        while data:
            try:
                written = os.write(self._fd, data)
            except OSError:
                self._torn = True  # part of a line may be on disk: the next line starts fresh
                raise
            if written == len(data):  # the usual: all of it at once
                self._torn = False
                return
            data = data[written:]
            self._torn = True


class _Outcome(msgspec.Struct):
    row: int
    state: str
    id: str | None = None


_outcome_decoder = msgspec.json.Decoder(_Outcome)


def _what(line: bytes) -> tuple[int, str]:
    """(line, "created oppo_...") of a held outcome record, as the import reports it."""
    record = _outcome_decoder.decode(line)
    return record.row, f"{record.state} {record.id or ''}".strip()
