"""One import at a time on a journal: its ``flock``, who holds it, and waiting for it.

The journal file itself is held with ``flock`` for the whole run (so a symlink or hard link to
it is refused too), and ``J.lock`` beside it names the holder (pid, host, since when). The
kernel drops the lock when its process dies, even by SIGKILL, so a stale lock file never
blocks. (``flock`` is not reliable on NFS; on Windows there is no lock.)

- ``lock(path)`` takes the lock or raises ``JournalLockedError`` naming the holder at once;
  ``unlock(fd)`` lets go of it.
- ``wait_unlocked(open_it, path, wait=...)`` calls ``open_it()`` again every ``poll`` seconds
  while it raises ``JournalLockedError``, for up to ``wait`` seconds (``--wait``).

Nothing here knows the journal's records: ``journal.py`` builds on this module, never the
reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .._exceptions import CloseError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

# How often a waiting import (--wait) tries the lock again: the journal is ours at most this
# long after the other import lets go of it.
LOCK_POLL = 0.2

T = TypeVar("T")


class JournalError(CloseError):
    """The journal cannot be used: locked by another import, or not writable."""


class JournalLockedError(JournalError):
    """Another import holds the journal; ``holder`` says which (pid, host, since when)."""

    def __init__(self, message: str, *, holder: str = "another process") -> None:
        super().__init__(message)
        self.holder = holder


async def wait_unlocked(
    open_it: Callable[[], T],
    path: str | os.PathLike[str],
    *,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    poll: float = LOCK_POLL,
) -> T:
    """``open_it()``; if another import holds ``path``, try again every ``poll`` seconds for up
    to ``wait`` seconds (``math.inf``: until it is free), calling ``on_wait(holder)`` once when
    the wait starts. Past ``wait``: ``JournalLockedError``.

    The lock is polled, not awaited in the kernel (a blocking ``flock`` would stop the event
    loop, so Ctrl-C could not end the wait): the journal is ours within ``poll`` of its release,
    and nothing was sent by this run before then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    waited = False
    while True:
        try:
            return open_it()
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


def lock(journal: Path) -> int:
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


def unlock(fd: int) -> None:
    if fd >= 0:
        os.close(fd)  # closing the descriptor releases the flock
