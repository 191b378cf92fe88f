"""Reading ``close-async import`` input: rows of a CSV or JSON Lines file, each with its line.

Never raises for a bad row: a bad cell, a cell over csv's 128 KiB ``field_size_limit``, a JSON
line nested too deep for msgspec, a NUL byte, or bytes that are not in the file's encoding make
that row's ``error`` (decoded with ``ESCAPE``, so one bad byte spoils one row, not the
run). The encoding: a byte order mark decides (Excel's "Unicode text" is UTF-16), then the
caller's choice, then UTF-8.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from .._constants import CUSTOM_PREFIX
from .._exceptions import InvalidInputError
from ..models import CreateOpportunity
from .import_codegen import LineShape, compile_cells, compile_line

_decoder = msgspec.json.Decoder()
_sha256 = hashlib.sha256
_crc32, _adler32 = zlib.crc32, zlib.adler32
_INT_COLUMNS = frozenset({"value", "confidence"})
_JSON_COLUMNS = frozenset({"attachments", "custom_fields"})
ENCODING_ERROR = "has bytes that are not"
_UNDECODABLE = re.compile("[\udc00-\udcff]")  # what errors=ESCAPE makes of a bad byte
# Shapes of JSON Lines row (their keys) a file's send pass compiles; past them, untyped rows.
_MAX_LINE_SHAPES = 16


def _escape(exc: UnicodeError) -> tuple[str | bytes, int]:
    """``surrogateescape``, for every codec: each bad byte ``b`` becomes ``U+DC00 + b`` (and back,
    encoding). Python's own handler refuses a byte under 0x80, which a UTF-16 file's lone
    surrogate or odd last byte has: such a file raised ``UnicodeDecodeError`` mid-read instead
    of making a row that names its line. UTF-8 and cp1252 errors are bytes from 0x80 up: they
    read, and digest, exactly as with ``surrogateescape``."""
    if isinstance(exc, UnicodeDecodeError):
        bad = exc.object[exc.start : exc.end]
        return "".join(chr(0xDC00 + b) for b in bad), exc.end
    if isinstance(exc, UnicodeEncodeError):
        chars = exc.object[exc.start : exc.end]
        if all("\udc00" <= c <= "\udcff" for c in chars):
            return bytes(ord(c) - 0xDC00 for c in chars), exc.end
    raise exc


ESCAPE = "close_async.escape"
codecs.register_error(ESCAPE, _escape)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class Row(msgspec.Struct):
    """One input row: its line number, a digest of its text (0: none), and the item or why it
    is bad. (A Struct: built in C, 1,100 instructions a row less than a slotted dataclass's
    ``__init__`` in Python.)"""

    line: int
    digest: int
    item: dict[str, Any] | CreateOpportunity | None = None
    error: InvalidInputError | None = None


def resolve_encoding(path: Path, encoding: str | None = None) -> str:
    """A byte order mark decides (Excel's "Unicode text" is UTF-16); then ``encoding``; UTF-8."""
    with path.open("rb") as f:
        head = f.read(4)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    return encoding or "utf-8-sig"  # -sig: harmless without a BOM


Digest = Callable[[str], int]


def digest_sha256(text: str) -> int:
    """A row's digest in journals of format 1: the first 8 bytes of SHA-256 of its text
    (``int(sha256(text.encode(errors=ESCAPE)).hexdigest()[:16], 16)``), the usual ASCII row
    without an error handler to look up."""
    data = text.encode() if text.isascii() else text.encode(errors=ESCAPE)
    return int.from_bytes(_sha256(data).digest()[:8], "big")


def digest_crc(text: str) -> int:
    """A row's digest in journals of format 2: CRC-32 and Adler-32 of its text, 64 bits (~1,700
    instructions a row against SHA-256's ~9,000 under callgrind). It guards against a journal
    used with another file (an accident, not an attack): a changed row goes unnoticed once in
    2^32 or more, a different file only if every row it sent does."""
    data = text.encode() if text.isascii() else text.encode(errors=ESCAPE)
    return _crc32(data) << 32 | _adler32(data)


#: Each journal format's row digest (``Journal.row_digest``); new journals: ``DIGEST_VERSION``.
DIGESTS: dict[int, Digest] = {1: digest_sha256, 2: digest_crc}
DIGEST_VERSION = 2


def read_rows(
    path: Path,
    encoding: str = "utf-8-sig",
    *,
    items: bool = True,
    digest: Digest | None = DIGESTS[DIGEST_VERSION],
    creates: bool = False,
) -> Iterator[Row]:
    """Rows of a ``.csv`` file (by extension) or of a JSON Lines file (anything else).
    ``items=False``: CSV rows get their line, digest and text errors only (a quicker pass).
    ``digest``: how each row's text is digested (the journal's ``row_digest``; by default a new
    journal's); ``None``: no digest (0), as for the checks' pass against a journal with no rows.
    ``creates``: a row's item is its ``CreateOpportunity`` already when it is the usual row
    (a CSV row: ``import_codegen.compile_cells``; a JSON Lines row whose keys an earlier row showed:
    ``import_codegen.compile_line``), else the dict, as without it (the import's send pass)."""
    if path.suffix.lower() == ".csv":  # returned, not yielded from: no step more a row
        return _csv_rows(path, encoding, items, digest, creates)
    return _jsonl_rows(path, encoding, digest, creates)


def read_header(path: Path, encoding: str) -> list[str] | None:
    with path.open(encoding=encoding, errors=ESCAPE, newline="") as f:
        try:
            header = next(csv.reader(f), None)
        except csv.Error:
            return None
    return None if header is None else [c.strip() for c in header]


def _bad_text(text: str, encoding: str) -> InvalidInputError | None:
    # isascii() is O(1) on CPython (the string knows its widest character): most rows skip
    # the regex, which costs ~0.5 us a row on both passes.
    if not text.isascii() and _UNDECODABLE.search(text):
        raw = text.replace("\x1f", ",").encode(errors=ESCAPE)  # CSV cells: as typed
        snippet = raw[:80].decode("ascii", "backslashreplace")
        if not snippet.isprintable():  # a NUL of a damaged UTF-16 file, say: shown, not printed
            snippet = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in snippet)
        return InvalidInputError("row", snippet, f"{ENCODING_ERROR} {encoding_name(encoding)}")
    if "\x00" in text:
        hint = " (a UTF-16 file without a byte order mark? try --encoding utf-16)"
        return InvalidInputError("row", text[:80], f"contains a NUL byte{hint}")
    return None


def encoding_name(encoding: str) -> str:
    return (
        "UTF-8"
        if encoding.lower().replace("_", "-") in ("utf-8-sig", "utf-8", "utf8")
        else encoding
    )


def _jsonl_rows(path: Path, encoding: str, digest: Digest | None, creates: bool) -> Iterator[Row]:
    # creates: rows decoded typed, straight to their model, once a row has shown the keys
    shape: LineShape | None = None
    shapes = 0 if creates else _MAX_LINE_SHAPES
    with path.open(encoding=encoding, errors=ESCAPE) as f:
        for line_no, line in enumerate(f, start=1):
            if line.isspace():  # what ``not line.strip()`` says of a line read (never "")
                continue
            row = Row(line_no, digest(line.rstrip("\r\n")) if digest else 0)
            if not line.isascii() or "\x00" in line:  # the rest have no bad text
                row.error = _bad_text(line, encoding)
            if row.error is None and shape is not None:
                try:  # noqa: SIM105 (contextlib.suppress: ~1 us a row more)
                    row.item = shape.build(shape.decode(line))
                except (msgspec.DecodeError, RecursionError):
                    pass  # another key, a value to_create refuses, not JSON: the untyped way
                if row.item is not None:
                    yield row
                    continue
            if row.error is None:
                try:
                    item = _decoder.decode(line)
                except (msgspec.DecodeError, RecursionError) as exc:
                    reason = "is nested too deep" if isinstance(exc, RecursionError) else ""
                    row.error = InvalidInputError(
                        "row", line.strip()[:80], reason or f"is not JSON ({exc})"
                    )
                else:
                    if isinstance(item, dict):
                        row.item = item
                        if shapes < _MAX_LINE_SHAPES and not item.keys() <= (
                            shape.known if shape is not None else frozenset()
                        ):
                            shapes += 1  # a key more: a shape for the keys seen so far
                            shape = compile_line([*(shape.keys if shape else ()), *item])
                            if shape is None:  # a key no typed field is for: untyped from now
                                shapes = _MAX_LINE_SHAPES
                    else:
                        row.error = InvalidInputError("row", item, "must be a JSON object")
            yield row


def _csv_rows(
    path: Path, encoding: str, items: bool, digest: Digest | None, creates: bool
) -> Iterator[Row]:
    with path.open(encoding=encoding, errors=ESCAPE, newline="") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except csv.Error:
            header = None
        if header is None:
            return
        columns = [c.strip() for c in header]
        plan = _plan(columns)
        built = compile_cells(columns) if creates else None
        join = "\x1f".join
        while True:  # a for loop over the reader, but one that goes on after a csv.Error
            try:
                for cells in reader:
                    text = join(cells)
                    if not text.strip():  # every cell blank (the separator "\x1f" is whitespace)
                        continue
                    error = (
                        _bad_text(text, encoding) if not text.isascii() or "\x00" in text else None
                    )
                    row = Row(reader.line_num, digest(text) if digest else 0, error=error)
                    if error is None and items:
                        if built is not None:
                            row.item = built(cells)  # None: not the usual row
                            if row.item is not None:
                                yield row
                                continue
                        try:
                            row.item = _csv_item(plan, cells)
                        except InvalidInputError as exc:
                            row.error = exc
                    yield row
            except csv.Error as exc:  # a cell over csv's field_size_limit (128 KiB), say
                yield Row(reader.line_num, 0, error=InvalidInputError("row", "...", str(exc)))
                continue
            return


# What a CSV column's cells become (decided once per file from the header, not once per cell).
_STR, _INT, _JSON, _CUSTOM = 0, 1, 2, 3


def _plan(columns: list[str]) -> list[tuple[str, int]]:
    kinds = []
    for column in columns:
        if column in _INT_COLUMNS:
            kinds.append((column, _INT))
        elif column in _JSON_COLUMNS:
            kinds.append((column, _JSON))
        else:
            kinds.append((column, _CUSTOM if column.startswith(CUSTOM_PREFIX) else _STR))
    return kinds


def _csv_item(plan: list[tuple[str, int]], cells: list[str]) -> dict[str, Any]:
    """A CSV row in Close's wire types: an empty cell is not sent; ``value`` and ``confidence``
    are integers; ``attachments``/``custom_fields`` and custom cells starting with ``[`` are JSON
    (multi-value custom fields); every other cell is a string."""
    if len(cells) > len(plan):
        raise InvalidInputError("row", cells, f"has {len(cells)} cells for {len(plan)} columns")
    item: dict[str, Any] = {}
    for (column, kind), cell in zip(plan, cells):  # noqa: B905 (fewer cells: the rest unset)
        if not cell:
            continue
        if kind == _STR or (kind == _CUSTOM and cell[0] != "["):
            item[column] = cell
        elif kind == _INT:
            try:
                item[column] = int(cell)  # int() itself ignores surrounding whitespace
            except ValueError:
                raise InvalidInputError(column, cell, "must be an integer") from None
        else:
            try:
                item[column] = _decoder.decode(cell)
            except (msgspec.DecodeError, RecursionError):
                raise InvalidInputError(column, cell, "must be JSON") from None
    return item
