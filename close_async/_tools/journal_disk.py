"""The journal's disk: space set aside for a full disk, and fsync by group commit.

- ``make_reserve(path, size)`` allocates ``size`` bytes for real beside the journal (not a
  sparse file). The journal gives it up when the disk fills (``is_disk_full``), so the outcomes
  of the requests then in flight (50 x ~120 bytes by default) are still recorded.
- ``GroupSync(owner, fd)`` (``--fsync``): records are written at once as always, and a writer
  thread fsyncs what was written since its last fsync (group commit), so the event loop never
  waits for the disk. ``durable()`` is an awaitable done once every record written so far is
  on disk; a sync that fails sets ``owner.broken``, and every waiter then raises
  ``JournalWriteError``. A power cut loses at most the records of the last round (a few ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from .journal_lock import JournalError

# Set aside at start and given up when the disk fills, so the outcomes of the requests then in
# flight (50 x ~120 bytes by default) are still recorded: nothing is lost on resume.
RESERVE = 64 * 1024
# Between sync rounds: back-to-back syncs hold the file's inode and stall the loop's own writes
# (0.5x the rows/s without a pause, 0.9x with 5 ms); each request waits for one round, so a
# longer pause is latency (20 ms measured 0.69-0.78x the rows/s of no fsync at 50 ms latency).
_SYNC_PAUSE = 0.005
_NO_FALLOCATE = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


class JournalWriteError(JournalError):
    """A record could not be written (disk full, say); nothing more may be sent."""


class _Owner(Protocol):
    """What the sync thread shares with its journal: where, and the first failure to write."""

    path: Path
    broken: OSError | None


class GroupSync:
    """A thread that fsyncs ``fd`` after writes, and the waiters for each round."""

    def __init__(self, owner: _Owner, fd: int) -> None:
        self._owner = owner
        self._fd = fd
        self._dirty = threading.Event()
        self._closing = False
        self._written = 0  # records written so far (a sequence number)
        self._synced = 0  # records known to be on disk
        self._durable: list[tuple[int, asyncio.Future[None]]] = []  # (record, its waiter)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._sync_loop, name="journal-fsync")
        self._thread.daemon = True
        self._thread.start()

    def wrote(self) -> None:
        """One more record was written: the next round covers it."""
        self._written += 1
        self._dirty.set()

    def durable(self) -> Awaitable[None] | None:
        """Done once every record written so far is on disk; None if it already is."""
        if self._synced >= self._written:
            return None
        loop = self._loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._durable.append((self._written, waiter))
        self._dirty.set()
        return waiter

    def _release(self) -> None:
        """On the loop, after a sync round: wake the waiters whose record is on disk."""
        broken, synced, waiting = self._owner.broken, self._synced, self._durable
        self._durable = [(n, w) for n, w in waiting if n > synced and broken is None]
        for n, waiter in waiting:
            if waiter.done() or (n > synced and broken is None):
                continue
            if broken is not None:
                waiter.set_exception(JournalWriteError(f"cannot sync {self._owner.path}: {broken}"))
            else:
                waiter.set_result(None)

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
                self._owner.broken = exc
            loop = self._loop
            if self._durable and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                    loop.call_soon_threadsafe(self._release)
            if self._closing:
                return
            time.sleep(_SYNC_PAUSE)

    def stop(self) -> None:
        """One last round, then the thread ends (before the descriptor is closed)."""
        self._closing = True
        self._dirty.set()
        self._thread.join()


def make_reserve(path: Path, size: int) -> None:
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
