"""The checks' pass over a JSON Lines file: how many rows it has, every key its objects use, and
the first row whose bytes are not in its encoding.

``scan_jsonl`` finds what the checks read off ``rows.read_rows(path, encoding, items=False,
digest=None)`` (rows, keys, the first encoding error), without a ``Row`` and a generator step a
row, and without building the values of a line whose keys are all among those seen already: it
is decoded to a Struct of those keys whose values are skipped (``msgspec.Raw``), and only a
line it refuses is decoded whole for its keys. 14,300 instructions a row that way (7,100 of
them decoding), about 6,600 this way (callgrind, 2,000 rows; 4,900 decoding).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .import_codegen import nameable
from .rows import ENCODING_ERROR, ESCAPE, Row, _bad_text
from .rows import _decoder as decoder

# Key sets a file's checks compile a decoder for (``_keys_decoder``); past them, every line untyped.
_MAX_SHAPES = 16
# Keys a decoder is compiled for: 0.2 s for 80,000 (16 of them: 3.2 s); past it, lines untyped.
_MAX_KEYS = 4096


def scan_jsonl(path: Path, encoding: str) -> tuple[int, int, Row | None, dict[Any, int]]:
    """``(rows, last line, the first row whose bytes are not in the encoding, every key of the
    rows up to it -> the first line using it)``. A line that is blank is no row; a row that is
    not JSON, or not an object, has no keys here (the send pass reports it)."""
    rows = last = 0
    keys: dict[Any, int] = {}
    known: Callable[[str], object] | None = None  # decodes lines with no key unseen
    shapes = 0
    with path.open(encoding=encoding, errors=ESCAPE) as f:
        for line_no, line in enumerate(f, start=1):
            if line.isspace():  # what ``not line.strip()`` says of a line read (never "")
                continue
            rows, last = rows + 1, line_no
            if not line.isascii() or "\x00" in line:
                error = _bad_text(line, encoding)
                if error is not None:
                    if error.reason.startswith(ENCODING_ERROR):
                        return rows, last, Row(line_no, 0, error=error), keys
                    continue  # a NUL: no keys, as read_rows decodes no such line
            if known is not None:
                try:
                    known(line)
                    continue  # an object whose keys are all among those seen: nothing new
                except (msgspec.DecodeError, RecursionError):
                    pass  # another key, or not an object or not JSON: the untyped way
            try:
                item = decoder.decode(line)
            except (msgspec.DecodeError, RecursionError):
                continue
            if item.__class__ is dict and not item.keys() <= keys.keys():
                for key in item:
                    keys.setdefault(key, line_no)
                if shapes < _MAX_SHAPES and len(keys) <= _MAX_KEYS:
                    shapes += 1
                    known = _keys_decoder(keys)
    return rows, last, None, keys


def _keys_decoder(keys: dict[Any, int]) -> Callable[[str], object]:
    """A decoder of objects whose keys are all among ``keys`` (strings), refusing any other:
    their values are skipped over (``msgspec.Raw``), not built. A key no field can be named
    (``nameable``) is left out: a line with it is decoded whole, its keys found that way."""
    names = [key for key in keys if key.__class__ is str and nameable(key)]
    line_type = msgspec.defstruct(
        "Keys",
        [(f"f{k}", msgspec.Raw, msgspec.UNSET) for k in range(len(names))],
        kw_only=True,
        forbid_unknown_fields=True,  # a key outside them: look at the line's keys
        rename={f"f{k}": name for k, name in enumerate(names)},
    )
    return msgspec.json.Decoder(line_type).decode
