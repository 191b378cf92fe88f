"""The import journal: an append-only JSON Lines file recording each row's outcome.

One record per line, flushed to the OS as it is written, so a killed import loses nothing that
was recorded (``fsync=True`` also survives a power cut, at a cost per record):

- ``{"row": 12, "state": "sending", "digest": "..."}``: the request for line 12 is leaving now.
- ``{"row": 12, "state": "created", "id": "oppo_..."}``
- ``{"row": 12, "state": "failed", "error": "..."}``: certainly not created (safe to send again).
- ``{"row": 12, "state": "unknown", "error": "..."}``: may have been created.
- ``{"row": 12, "state": "invalid", "error": "..."}``: the row itself is bad; nothing was sent.

On a re-run, the last record of each row decides: ``created`` rows are skipped; ``sending`` (the
import died while the request was out) and ``unknown`` rows are not sent again unless asked;
everything else is sent. A row still waiting for the rate limit when the import died has no
``sending`` record, so it is simply sent. The digest of each row's text guards against a journal
used with a different file.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

_encoder = msgspec.json.Encoder()


class _Record(msgspec.Struct):
    row: int
    state: str
    digest: str | None = None
    error: str | None = None


# Typed, so resuming a 200,000-row journal does not build 200,000 dicts first.
_decoder = msgspec.json.Decoder(_Record)

DONE = "created"
UNKNOWN_STATES = frozenset({"sending", "unknown"})


@dataclass(slots=True)
class RowState:
    state: str
    digest: str | None = None
    error: str | None = None


class Journal:
    """Reads the states a previous run recorded, and appends this run's."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.rows: dict[int, RowState] = {}
        torn = False
        if self.path.exists():
            torn = self._load()
        self._file: IO[bytes] = self.path.open("ab")
        if torn:
            # A kill mid-write left a last line with no newline: end it, or the next record
            # would be glued onto it and lost to the next reader.
            self._file.write(b"\n")
            self._file.flush()

    def _load(self) -> bool:
        """Read the records; True when the file ends in a torn (unterminated) line."""
        line = b""
        with self.path.open("rb") as f:
            for line in f:
                try:
                    record = _decoder.decode(line)
                except msgspec.DecodeError:
                    continue  # a line cut short by a kill mid-write: it recorded nothing
                previous = self.rows.get(record.row)
                digest = record.digest or (previous.digest if previous else None)
                state = sys.intern(record.state)  # a handful of distinct strings, shared
                self.rows[record.row] = RowState(state, digest, record.error)
        return bool(line) and not line.endswith(b"\n")

    def state(self, row: int) -> RowState | None:
        return self.rows.get(row)

    def record(self, row: int, state: str, **fields: Any) -> None:
        self._file.write(_encoder.encode({"row": row, "state": state, **fields}) + b"\n")
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
