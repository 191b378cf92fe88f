"""Checks ``close-async import`` runs before anything is sent.

Each raises ``PreflightError`` with one message naming everything wrong that it found:

- ``check_paths``: ``--journal`` or ``--output`` is the input file (or each other): reading its
  own journal as rows grew a 3-row CSV to 3.1 GB; an ``--output`` on the input overwrote it.
- ``check_input``, one pass over the whole file (about 3 us a row, next to the request's 200 us+):
  the encoding (a cp1252 "Café" on line 2,001 is named here, not after 1,894 creates); every
  unknown column or key, with "did you mean" (once, not once per row); and, with a journal, that
  every row it recorded as possibly created is still the same text (a journal from another file).
"""

from __future__ import annotations

import codecs
import difflib
import os
from pathlib import Path

from .._constants import CUSTOM_PREFIX
from .._exceptions import CloseError
from ..models import CreateOpportunity
from .csv_scan import scan_csv
from .journal import Journal
from .jsonl_scan import scan_jsonl
from .rows import (
    ENCODING_ERROR,
    digest_sha256,
    encoding_name,
    read_header,
    read_rows,
    resolve_encoding,
)

FIELDS = frozenset(CreateOpportunity.__struct_fields__) - {"custom"}

_KNOWN = sorted(FIELDS | {"custom"})
# Rows that may exist in Close: their text must not have changed since they were sent.
_SENT = frozenset({"sending", "created", "unknown"})


class PreflightError(CloseError):
    """The import cannot start; nothing was sent."""


def check_paths(
    file: Path, journal: Path | None = None, output: Path | None = None, *, stdin: bool = False
) -> None:
    if journal is not None and not stdin and _same(file, journal):
        raise PreflightError(
            f"--journal {journal} is the input file itself: pick another path (for example"
            f" {file.with_name(file.name + '.journal')})"
        )
    if output is not None and not stdin and _same(file, output):
        raise PreflightError(
            f"--output {output} is the input file itself: it would be overwritten; pick another"
            " path"
        )
    if output is not None and journal is not None and _same(journal, output):
        raise PreflightError(f"--output {output} is the journal itself: pick another path")


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return a.resolve() == b.resolve()


def check_encoding_name(encoding: str | None) -> None:
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise PreflightError(
            f"--encoding {encoding!r} is not an encoding Python knows (try utf-8, cp1252,"
            " utf-16, latin-1)"
        ) from None


def check_input(path: Path, *, encoding: str | None = None, journal: Journal | None = None) -> int:
    """Read the whole file once; the number of rows. Raises ``PreflightError``."""
    check_encoding_name(encoding)
    codec = resolve_encoding(path, encoding)
    unknown: dict[str, int] = {}  # name -> first line it appears on
    if path.suffix.lower() == ".csv":
        for column in read_header(path, codec) or []:
            if column and not _known(column):  # unnamed: Excel's trailing empty columns
                unknown.setdefault(column, 1)
    rows = last_line = 0
    differ: dict[int, int] = {}  # line -> its digest, where the journal recorded another
    # Digests are compared only with rows the journal recorded: none for a new journal.
    digests = journal is not None and any(journal.states)
    known: set[str] = set()  # JSON Lines keys already found known: each checked once
    if digests:
        hashing = journal.row_digest if journal is not None else None
        found = read_rows(path, codec, items=False, digest=hashing)  # JSONL: for its keys
    elif path.suffix.lower() == ".csv":  # a first run's: counted, its text checked, no Row a row
        rows, last_line, bad = scan_csv(path, codec)
        found = iter(() if bad is None else (bad,))
    else:  # a first run's JSON Lines: counted, its text checked, its keys found, no Row a row
        rows, last_line, bad, keys = scan_jsonl(path, codec)
        for key, line in keys.items():
            if key.__class__ is str and not _known(key):
                unknown.setdefault(key, line)
        found = iter(() if bad is None else (bad,))
    for row in found:
        rows += 1
        last_line = row.line
        if row.error is not None and row.error.reason.startswith(ENCODING_ERROR):
            hint = (
                "the file is damaged there (half of a UTF-16 character)"
                if codec.lower().replace("_", "-").startswith("utf-16")
                else 'Excel\'s plain "CSV" is Windows-1252: run again with --encoding cp1252'
                ' (or save it as "CSV UTF-8")'
            )
            raise PreflightError(
                f"{path}: line {row.line} is not valid {encoding_name(codec)}: {row.error.value}. "
                f"{hint}. Nothing was sent."
            )
        item = row.item  # JSON Lines only: CSV rows have no item in this pass
        if item.__class__ is dict and not item.keys() <= known:
            for key in item:
                if key not in known and isinstance(key, str):
                    if _known(key):
                        known.add(key)
                    else:
                        unknown.setdefault(key, row.line)
        if digests and journal is not None:
            recorded = journal.digest(row.line)
            if recorded and journal.state(row.line) in _SENT and recorded != row.digest:
                differ[row.line] = row.digest
    if unknown:
        raise PreflightError(_unknown_message(path, unknown))
    if differ and journal is not None and journal.row_digest is not digest_sha256:
        _written_by_format_1(path, codec, journal, differ)
    mismatch = (min(differ), len(differ)) if differ else None  # (first line, count)
    if journal is not None:
        beyond = sum(
            1 for line in range(last_line + 1, len(journal.states)) if journal.state(line) in _SENT
        )
        if mismatch is not None or beyond:
            raise PreflightError(_mismatch_message(path, journal, mismatch, beyond, last_line))
    return rows


def _known(name: str) -> bool:
    return name in FIELDS or name == "custom" or name.startswith(CUSTOM_PREFIX + "cf_")


def suggestion(name: str) -> str | None:
    if name.startswith("cf_"):
        return CUSTOM_PREFIX + name
    if name.startswith(CUSTOM_PREFIX):
        return None
    match = difflib.get_close_matches(name.strip().lower(), _KNOWN, n=1, cutoff=0.6)
    return match[0] if match else None


def _unknown_message(path: Path, unknown: dict[str, int]) -> str:
    kind = "column" if path.suffix.lower() == ".csv" else "key"
    parts = []
    for name, line in unknown.items():
        hint = suggestion(name)
        where = "" if kind == "column" else f" (first on line {line})"
        parts.append(f"{name!r}{where}" + (f": did you mean {hint!r}?" if hint else ""))
    plural = "s" if len(unknown) > 1 else ""
    return (
        f"{path}: unknown {kind}{plural} {'; '.join(parts)}. Known: {', '.join(_KNOWN)}, and"
        f" custom fields as {CUSTOM_PREFIX}cf_<id>. Nothing was sent."
    )


def _written_by_format_1(path: Path, codec: str, journal: Journal, differ: dict[int, int]) -> None:
    """Rows of a format-2 journal whose digests are SHA-256's: an earlier version went on with
    a journal that had no sent row (it does not read the format). Those rows are the same text:
    taken off ``differ``, their digests replaced by this format's for the import's own checks."""
    for row in read_rows(path, codec, items=False, digest=digest_sha256):
        if row.line in differ and journal.digest(row.line) == row.digest:
            journal.digests[row.line] = differ.pop(row.line)


def _mismatch_message(
    path: Path, journal: Journal, mismatch: tuple[int, int] | None, beyond: int, last: int
) -> str:
    facts = []
    if mismatch is not None:
        facts.append(
            f"line {mismatch[0]} (and {mismatch[1] - 1} more) differs from the row it sent"
            if mismatch[1] > 1
            else f"line {mismatch[0]} differs from the row it sent"
        )
    if beyond:
        facts.append(f"it sent {beyond} rows past this file's last line ({last})")
    origin = ""
    if journal.input and journal.input != str(path.resolve()):
        origin = f" It was written for {journal.input}."
    return (
        f"the journal {journal.path} is not from {path}: {'; '.join(facts)}.{origin} Use it with"
        " its own file, or pick another --journal. Nothing was sent."
    )
