"""The import journal: an append-only JSON Lines file recording each row's outcome.

The first line is a header naming the input (``{"journal": 1, "input": "/abs/deals.csv"}``); then
one record per line, written to the OS as it happens, so a killed import loses nothing recorded:

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

One import at a time: the journal file itself is held with ``flock`` for the whole run (so a
symlink or hard link to it is refused too), and ``J.lock`` beside it names the holder (pid,
host). The kernel drops the lock when its process dies, even by SIGKILL, so a stale lock file
never blocks. (``flock`` is not reliable on NFS.)

Memory on resume: one byte of state, 8 bytes of digest and 4 bytes of "last record" per line,
in flat arrays (200,000 rows: 2.4 MB), never a dict of row objects.

``fsync=True``: records are written at once as always, and a writer thread fsyncs what was
written since its last fsync (group commit), so the event loop never waits for the disk. A power
cut loses at most the records of the last fsync round (a few milliseconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import socket
import threading
import time
from array import array
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from .._exceptions import CloseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

_encoder = msgspec.json.Encoder()

DONE = "created"
UNKNOWN_STATES = frozenset({"sending", "unknown"})
# Index = the state's code in Journal.states; 0 = no record.
STATES = ("", "sending", "waiting", "created", "failed", "unknown", "invalid")
# Set aside at start and given up when the disk fills, so the outcomes of the requests then in
# flight (50 x ~120 bytes by default) are still recorded: nothing is lost on resume.
RESERVE = 64 * 1024
# Between sync rounds: back-to-back syncs hold the file's inode and stall the loop's own writes
# (0.5x the rows/s without a pause, 0.9x with 5 ms); each request waits for one round, so a
# longer pause is latency (20 ms measured 0.69-0.78x the rows/s of no fsync at 50 ms latency).
_SYNC_PAUSE = 0.005
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)
# How often a waiting import (--wait) tries the lock again: the journal is ours at most this
# long after the other import lets go of it.
_LOCK_POLL = 0.2
_CODE = {state: code for code, state in enumerate(STATES) if state}
_UNKNOWN = _CODE["unknown"]


class _Record(msgspec.Struct):
    row: int
    state: str
    digest: str | None = None
    error: str | None = None
    sent_at: str | None = None


class _Created(msgspec.Struct):
    state: str
    id: str | None = None


class _Header(msgspec.Struct):
    journal: int
    input: str | None = None


# Typed, so resuming a 200,000-row journal builds no dict per line.
_decoder = msgspec.json.Decoder(_Record)
_created_decoder = msgspec.json.Decoder(_Created)
_header_decoder = msgspec.json.Decoder(_Header)


class JournalError(CloseError):
    """The journal cannot be used: locked by another import, or not writable."""


class JournalLockedError(JournalError):
    """Another import holds the journal; ``holder`` says which (pid, host, since when)."""

    def __init__(self, message: str, *, holder: str = "another process") -> None:
        super().__init__(message)
        self.holder = holder


class JournalWriteError(JournalError):
    """A record could not be written (disk full, say); nothing more may be sent."""


class Journal:
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
        self._lock_fd = _lock(self.path)
        self._reserve = self.path.with_name(self.path.name + ".reserve")
        try:
            _make_reserve(self._reserve, reserve)
        except OSError as exc:
            _unlock(self._lock_fd)
            raise JournalWriteError(f"cannot write beside the journal {self.path}: {exc}") from None
        self._records = 0
        torn = self._load() if self.path.exists() else False
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._torn = torn  # a kill mid-write left a last line with no newline: end it first
        if self._records == 0 and self.input is None and os.fstat(self._fd).st_size == 0:
            name = None if input is None else str(Path(input).resolve())
            self.input = name
            self._write(_encoder.encode({"journal": 1, "input": name}) + b"\n")
        self._dirty = threading.Event()
        self._closing = False
        self._written = 0  # records written so far (fsync: a sequence number)
        self._synced = 0  # records known to be on disk (fsync)
        self._durable: list[tuple[int, asyncio.Future[None]]] = []  # (record, its waiter)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._syncer: threading.Thread | None = None
        if fsync:
            self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync")
            self._syncer.daemon = True
            self._syncer.start()

    def _load(self) -> bool:
        """Read the records; True when the file ends in a torn (unterminated) line."""
        line = b""
        with self.path.open("rb") as f:
            for line in f:
                try:
                    record = _decoder.decode(line)
                except msgspec.DecodeError:
                    if self._records == 0 and self.input is None:
                        with contextlib.suppress(msgspec.DecodeError):
                            self.input = _header_decoder.decode(line).input
                    continue  # the header, or a line cut short by a kill: no row state
                self._note(record.row, record.state, record.digest, record.error, record.sent_at)
        return bool(line) and not line.endswith(b"\n")

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
        self.states[row] = _CODE.get(state, _UNKNOWN)
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
        ids: set[str] = set()
        with self.path.open("rb") as f:
            for line in f:
                with contextlib.suppress(msgspec.DecodeError):
                    record = _created_decoder.decode(line)
                    if record.state == DONE and record.id:
                        ids.add(record.id)
        return ids

    def recorded_rows(self) -> int:
        return sum(1 for code in self.states if code)

    def record(self, row: int, state: str, **fields: Any) -> None:
        """Append one record; raises ``JournalWriteError`` if it cannot be written, and for a
        ``sending`` record once the disk has filled (the request must then not leave)."""
        problem = self.broken or (self.full if state == "sending" else None)
        if problem is not None:
            raise JournalWriteError(f"cannot write the journal {self.path}: {problem}")
        self._write(_encoder.encode({"row": row, "state": state, **fields}) + b"\n")
        self._note(row, state, fields.get("digest"), fields.get("error"), fields.get("sent_at"))
        if self._syncer is not None:
            self._written += 1
            self._dirty.set()

    def durable(self) -> Awaitable[None] | None:
        """With ``fsync``: an awaitable that is done once every record written so far is on
        disk (the next round of the sync thread: group commit, ~20 ms), else None. The import
        awaits it between recording "sending" and letting the request leave, so that a power
        cut can never lose the record of a create that happened."""
        if self._syncer is None or self._synced >= self._written:
            return None
        loop = self._loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._durable.append((self._written, waiter))
        self._dirty.set()
        return waiter

    def _release(self) -> None:
        """On the loop, after a sync round: wake the waiters whose record is on disk."""
        broken, synced, waiting = self.broken, self._synced, self._durable
        self._durable = [(n, w) for n, w in waiting if n > synced and broken is None]
        for n, waiter in waiting:
            if waiter.done() or (n > synced and broken is None):
                continue
            if broken is not None:
                waiter.set_exception(JournalWriteError(f"cannot sync {self.path}: {broken}"))
            else:
                waiter.set_result(None)

    def _write(self, data: bytes) -> None:
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

    def _sync_loop(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)  # the data and the size: all a reader needs
        while True:
            self._dirty.wait()
            self._dirty.clear()
            written = self._written  # what this round covers (written before the sync starts)
            try:
                sync(self._fd)
                self._synced = written
            except OSError as exc:
                self.broken = exc
            loop = self._loop
            if self._durable and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(self._release)
            if self._closing:
                return
            time.sleep(_SYNC_PAUSE)

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._syncer is not None:
            self._closing = True
            self._dirty.set()
            self._syncer.join()
        os.close(self._fd)
        self._fd = -1
        with contextlib.suppress(OSError):
            self._reserve.unlink()
        _unlock(self._lock_fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def export(self, output: str | os.PathLike[str]) -> int:
        """Write each row's outcome (its last record) to ``output`` as JSON Lines, in journal
        order; a row last seen ``sending`` is ``unknown``. Returns the number of rows written."""
        written = ordinal = 0
        with self.path.open("rb") as f, open(output, "wb") as out:
            for line in f:
                try:
                    record = _decoder.decode(line)
                except msgspec.DecodeError:
                    continue
                ordinal += 1
                row = record.row
                if not 0 < row < len(self.last) or self.last[row] != ordinal:
                    continue
                if record.state == "waiting":
                    continue  # not sent yet: no outcome
                if record.state == "sending":
                    line = _encoder.encode(
                        {
                            "row": row,
                            "state": "unknown",
                            "error": "in flight when the import stopped",
                        }
                    )
                out.write(line.rstrip(b"\r\n") + b"\n")
                written += 1
        return written


async def open_journal(
    path: str | os.PathLike[str],
    *,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    poll: float = _LOCK_POLL,
    **options: Any,
) -> Journal:
    """``Journal(path, **options)``; if another import holds it, try again every ``poll``
    seconds for up to ``wait`` seconds (``math.inf``: until it is free), calling
    ``on_wait(holder)`` once when the wait starts. Past ``wait``: ``JournalLockedError``.

    The lock is polled, not awaited in the kernel (a blocking ``flock`` would stop the event
    loop, so Ctrl-C could not end the wait): the journal is ours within ``poll`` of its release,
    and nothing was sent by this run before then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    waited = False
    while True:
        try:
            return Journal(path, **options)
        except JournalLockedError as exc:
            left = deadline - loop.time()
            if left <= 0:
                if not waited:
                    raise
                raise JournalLockedError(
                    f"the journal {path} is still in use by another import ({exc.holder}) after"
                    f" waiting {wait:g} s: two imports on one journal would send rows twice."
                    " Try again later, or wait longer (--wait-timeout).",
                    holder=exc.holder,
                ) from None
            if not waited and on_wait is not None:
                on_wait(exc.holder)
            waited = True
            await asyncio.sleep(min(poll, left))


def _make_reserve(path: Path, size: int) -> None:
    """Space set aside for a full disk, allocated for real (not a sparse file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except (AttributeError, OSError) as exc:  # macOS; filesystems without fallocate
                if isinstance(exc, OSError) and exc.errno not in _NO_FALLOCATE:
                    raise
                os.write(fd, bytes(size))
    except OSError:
        os.close(fd)
        path.unlink()
        raise
    os.close(fd)


def is_disk_full(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _lock(journal: Path) -> int:
    """Hold a ``flock`` on the journal file itself for this process, or raise naming the holder.

    The lock is on the file (its inode), not on a spelling of its path: a symlink or a hard link
    to a journal in use is refused too. Who holds it is written beside the resolved path."""
    if fcntl is None:  # pragma: no cover
        return -1
    fd = os.open(journal, os.O_RDWR | os.O_CREAT, 0o644)
    info = journal.resolve().with_name(journal.resolve().name + ".lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        try:
            holder = info.read_text(errors="replace").strip()[:400] or "another process"
        except OSError:
            holder = "another process"
        raise JournalLockedError(
            f"the journal {journal} is in use by another import ({holder}): two imports on one"
            " journal would send rows twice. Wait for it to finish (or run with --wait), or stop"
            " it.",
            holder=holder,
        ) from None
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    with contextlib.suppress(OSError):  # only says who holds the lock
        info.write_text(f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n")
    return fd


def _unlock(fd: int) -> None:
    if fd >= 0:
        os.close(fd)  # closing the descriptor releases the flock
