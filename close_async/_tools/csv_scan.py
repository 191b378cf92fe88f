"""The checks' pass over a CSV file: how many rows it has, and the first whose bytes are not
in its encoding, read the quick way when the file allows it.

``scan_csv`` counts what ``rows.read_rows(path, encoding, items=False, digest=None)`` would
yield, without a ``Row`` a row: a text whose lines are each one row (no NUL, lone CR or bad
byte, quotes that open and close cells within a line: ``_one_line_rows``) is counted by its
newlines, in C; anything else goes through the csv module, as ``read_rows`` reads it.
"""

from __future__ import annotations

import csv
import operator
import re
from pathlib import Path
from typing import Any

from .rows import _UNDECODABLE, ESCAPE, Row, _bad_text


def scan_csv(path: Path, encoding: str) -> tuple[int, int, Row | None]:
    """``(rows, last line, the first row whose bytes are not in the encoding)`` of a CSV file: what
    ``read_rows(path, encoding, items=False, digest=None)`` would count and find, without a
    ``Row`` and a generator step per row (the checks' pass of a first run). A file with no NUL,
    lone CR or bad byte, whose quotes open and close cells within a line, is counted by its
    lines, without the csv module (0.4 us a row against 1.6, timed: the csv module's parse
    alone is ~9,000 instructions a row)."""
    with path.open(encoding=encoding, errors=ESCAPE, newline="") as f:
        counted = _scan_plain(f)
    if counted is not None:
        return counted[0], counted[1], None
    rows = last = 0
    with path.open(encoding=encoding, errors=ESCAPE, newline="") as f:
        reader = csv.reader(f)
        try:
            if next(reader, None) is None:
                return 0, 0, None
        except csv.Error:
            return 0, 0, None
        join, undecodable = "".join, _UNDECODABLE.search
        while True:
            try:
                for cells in reader:
                    text = join(cells)
                    if not text.strip():  # every cell blank: _csv_rows skips it
                        continue
                    rows += 1
                    last = reader.line_num
                    if not text.isascii() and undecodable(text):
                        error = _bad_text("\x1f".join(cells), encoding)
                        return rows, last, Row(last, 0, error=error)
                return rows, last, None
            except csv.Error:  # a cell over csv's field_size_limit: a row, with its error
                rows += 1
                last = reader.line_num


# What a blank CSV line is made of: whitespace (str.isspace), commas, and (when the line parses
# as one record) quotes; a line of only those with a quote in it may still be a row ('""""' is
# a cell holding a quote): the csv module's to say.
_BLANK = "".join(c for c in map(chr, range(0x3000 + 1)) if c.isspace()) + ","
_BLANK_QUOTED = _BLANK + '"'
# A line that may be blank (found after a newline: a literal first, a quick search).
_MAYBE_BLANK = re.compile("\n[" + re.escape(_BLANK_QUOTED.replace("\n", "")) + "]*\n")
_EDGES = frozenset(",\n")  # what a quoted cell may follow and come before
_FIRST, _LAST = operator.itemgetter(0), operator.itemgetter(-1)
_CHUNK = 1 << 16
_LONGEST = 100_000  # a longer line may hold a cell over csv's field_size_limit: csv's to say


def _scan_plain(f: Any) -> tuple[int, int] | None:
    """(rows, last line) of a CSV text whose every line is one row: no NUL, lone CR or
    undecodable byte, and every quote where the csv module takes it for one that opens or
    closes a cell, no cell spanning lines (``_one_line_rows``; else None, for the csv module to
    read). A line whose cells are all blank is no row, as ``_csv_rows`` has it. A read with no
    such line is counted by its newlines (~2,000 instructions a row of the benchmark's CSV,
    against ~10,000 through the csv module)."""
    rows = lines = last = 0
    tail = ""
    blank, quoted_blank = _BLANK, _BLANK_QUOTED
    while True:
        chunk = f.read(_CHUNK)
        if chunk and chunk[-1] == "\r":
            chunk += f.read(1)  # a CR LF split between two reads
        if "\x00" in chunk or (not chunk.isascii() and _UNDECODABLE.search(chunk)):
            return None
        if "\r" in chunk:
            chunk = chunk.replace("\r\n", "\n")
            if "\r" in chunk:
                return None
        text = tail + chunk
        if chunk:  # whole lines here; the line that goes on in the next read (the last) waits
            cut = text.rfind("\n") + 1
            text, tail = text[:cut], text[cut:]
            if len(tail) > _LONGEST:
                return None
            if not text:
                continue  # no line ended in this read
        elif not text:
            return rows, last
        else:
            text += "\n"  # the last line, without its newline
        if text.find("\n") > _LONGEST:  # a line begun in an earlier read (only the first)
            return None
        quoted = '"' in text
        if quoted and not _one_line_rows(text):
            return None
        if _MAYBE_BLANK.search("\n" + text) is None:  # every line a row (the usual read)
            found = text.count("\n")
            added = found - (lines == 0)  # the header is no row
            lines += found
            if added:
                rows += added
                last = lines
        else:
            for line in text.split("\n")[:-1]:
                lines += 1
                if lines > 1 and line.strip(quoted_blank):
                    rows += 1
                    last = lines
                elif quoted and lines > 1 and line.strip(blank):
                    return None  # only blanks and quotes: '""' is blank, '""""' is not
        if not chunk:
            return rows, last


def _one_line_rows(text: str) -> bool:
    """Whether the csv module reads ``text`` (whole lines, each ending in a newline, the first
    starting a row) as one row a line: every quote opens a cell (at a line's start or after a
    comma) or closes one (before a comma or the line's end), in turn, no newline in between,
    ``""`` inside a quoted cell being a quote. Whole-text operations in C, none a cell."""
    # '""' is a quote inside a quoted cell, or an empty quoted cell: either way no quote is left
    # that opens or closes one; a run of quotes leaves at most one. Then no two quotes touch.
    parts = ("\n" + text.replace('""', "")).split('"')
    if len(parts) % 2 == 0:
        return False  # an odd number of quotes: a cell open at the end
    # Outside the quoted cells: each must follow a comma or a newline (a quote that opens a
    # cell) and come before one (it closes the cell); none empty, as no two quotes touch.
    outside = parts[::2]
    if not {*map(_FIRST, outside[1:]), *map(_LAST, outside[:-1])} <= _EDGES:
        return False
    return "\n" not in "\x01".join(parts[1::2])  # no newline inside a quoted cell
