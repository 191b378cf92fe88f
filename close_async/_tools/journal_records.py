"""The journal's records: its states, the shapes of its lines, and reading a journal file back.

A journal is JSON Lines: a header (``{"journal": FORMAT, "input": ...}``, ``journal.py``), then
one record per line (``{"row": N, "state": S, ...}``; the states and their meaning are in
``journal.py``). Here:

- ``STATES``: every state, indexed by the one-byte code ``Journal.states`` keeps per line
  (0: no record); ``CODE`` the reverse; a state this version does not know reads as unknown.
- Typed decoders for the records, the header and ``created`` records: resuming a 200,000-row
  journal builds no dict per line.
- ``read_created_ids(path)``: every opportunity id recorded as created (for ``--reconcile``).
- ``export_outcomes(path, last, output)``: each row's last record (``last``: line -> ordinal of
  that record), ``sending`` written as ``unknown``, ``waiting`` left out.

Nothing here holds the file open or writes the journal: that is ``Journal``'s.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from pathlib import Path

import msgspec

encoder = msgspec.json.Encoder()

DONE = "created"
UNKNOWN_STATES = frozenset({"sending", "unknown"})
# Index = the state's code in Journal.states; 0 = no record.
STATES = ("", "sending", "waiting", "created", "failed", "unknown", "invalid")
CODE = {state: code for code, state in enumerate(STATES) if state}
UNKNOWN_CODE = CODE["unknown"]


class Record(msgspec.Struct):
    row: int
    state: str
    digest: str | None = None
    error: str | None = None
    sent_at: str | None = None


class _Created(msgspec.Struct):
    state: str
    id: str | None = None


class Header(msgspec.Struct):
    journal: int
    input: str | None = None


# Typed, so resuming a 200,000-row journal builds no dict per line.
decoder = msgspec.json.Decoder(Record)
_created_decoder = msgspec.json.Decoder(_Created)
header_decoder = msgspec.json.Decoder(Header)


def read_created_ids(path: Path) -> set[str]:
    """Every opportunity id the journal at ``path`` records as created."""
    ids: set[str] = set()
    with path.open("rb") as f:
        for line in f:
            with contextlib.suppress(msgspec.DecodeError):
                record = _created_decoder.decode(line)
                if record.state == DONE and record.id:
                    ids.add(record.id)
    return ids


def export_outcomes(path: Path, last: array[int], output: str | os.PathLike[str]) -> int:
    """Write each row's last record to ``output``, in journal order; returns the rows written."""
    written = ordinal = 0
    with path.open("rb") as f, open(output, "wb") as out:
        for line in f:
            try:
                record = decoder.decode(line)
            except msgspec.DecodeError:
                continue
            ordinal += 1
            row = record.row
            if not 0 < row < len(last) or last[row] != ordinal:
                continue
            if record.state == "waiting":
                continue  # not sent yet: no outcome
            if record.state == "sending":
                line = encoder.encode(
                    {
                        "row": row,
                        "state": "unknown",
                        "error": "in flight when the import stopped",
                    }
                )
            out.write(line.rstrip(b"\r\n") + b"\n")
            written += 1
    return written
