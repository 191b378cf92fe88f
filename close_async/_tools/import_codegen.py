"""The import's row builders, written as code once per shape of row: a CSV file's header, or the
keys of a JSON Lines row (in their order).

A builder does what ``import_build``'s walk over the shape does, one value at a time, but as
straight-line code: each value unpacked into a local and checked with the checks
``validate_create`` would make of it, set as an attribute of a copy of a blank model (a copy
runs no ``__post_init__``). Walking the shape instead, a loop over (column, kind) pairs and a
``setattr`` a value, cost 16,500 instructions for a CSV row of 7 columns and 19,900 for the
same row as a dict; written as code, about 11,700 and 11,000 (callgrind, 2,000 rows).

What a builder gives is what the walk gives, for every input (the tests compare them): a CSV
builder returns None for anything but the usual row, for ``rows._csv_item`` and ``to_create``
to say what is wrong; a dict builder hands anything unusual to ``to_create`` itself, whose
error names the field and the value. No name from the file is ever part of the code: field
names come from this module's own tables, custom field ids are constants (``N<k>``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from .._constants import CUSTOM_PREFIX, VALUE_PERIODS
from .._resources.checks import CHECKED, check_json_value
from .._resources.opportunities.requests import to_create
from ..models import CreateOpportunity

blank = CreateOpportunity().__copy__  # type: ignore[attr-defined]  # a fresh model, no __post_init__
SCALARS = frozenset({str, int, bool, type(None)})  # nothing inside them to check
PERIODS = frozenset(VALUE_PERIODS)
CUSTOM_ID = CUSTOM_PREFIX + "cf_"  # "custom.cf_": a key of custom, "cf_" and at least one more
CUSTOM_LEN = len(CUSTOM_PREFIX)
# What msgspec renames no field to: '"', '\\', a control character (ValueError), a lone surrogate
# (UnicodeEncodeError). A key with one gets no typed field; such a line is read untyped.
_UNNAMEABLE = re.compile('[\x00-\x1f"\\\\\ud800-\udfff]').search
#: Keys (columns) a shape may have to be written as code: compiling costs ~35 us a key and grows
#: faster (9 ms for 256, 0.4 s for 5,000; 16 JSON Lines shapes of 5,000 new keys each: 51 s and
#: 2.5 GB, against 0.03 s untyped). A wider shape is walked, or read untyped.
MAX_KEYS = 256
_decode = msgspec.json.Decoder().decode

CsvPlan = Callable[[list[str]], "CreateOpportunity | None"]
DictBuilder = Callable[[dict[str, Any]], CreateOpportunity]

_NAMESPACE: dict[str, Any] = {
    "_blank": blank,
    "_PERIODS": PERIODS,
    "_SCALARS": SCALARS,
    "_CHECKED": CHECKED,
    "_decode": _decode,
    "_to_create": to_create,
    "check_json_value": check_json_value,
}

# A CSV column's cell ``{c}``, by the column (``compile_cells``). A cell the dict's way would
# refuse makes the row None.
_TEXT = "    if {c}:\n        create.{name} = {c}\n"  # a non-empty string: what is asked
_CELL = {
    "value_period": (
        "    if {c}:\n        if {c} not in _PERIODS:\n            return None\n"
        "        create.value_period = {c}\n"
    ),
    "value": (  # int() itself ignores surrounding whitespace, as rows._csv_item's does
        "    if {c}:\n        try:\n            create.value = int({c})\n"
        "        except ValueError:\n            return None\n"
    ),
    "confidence": (
        "    if {c}:\n        try:\n            number = int({c})\n"
        "        except ValueError:\n            return None\n"
        "        if not 0 <= number <= 100:\n            return None\n"
        "        create.confidence = number\n"
    ),
}
_CUSTOM_CELL = (  # a multi-value field's cell is JSON
    "    if {c}:\n        if {c}[0] != '[':\n            custom[N{k}] = {c}\n"
    "        else:\n            try:\n                value = _decode({c})\n"
    "                check_json_value(N{k}, value)\n"
    "            except Exception:\n                return None\n"
    "            custom[N{k}] = value\n"
)
_TEXT_FIELDS = frozenset(("lead_id", "status_id", "contact_id", "user_id", "created_by", "note"))


def compile_cells(columns: list[str]) -> CsvPlan:
    """The builder of the usual row of a CSV file with these (stripped) columns, from its
    cells: what ``rows._csv_item`` then ``to_create`` make of them (an empty cell is not sent,
    ``value`` and ``confidence`` are integers, a custom cell starting with ``[`` is JSON), or
    None (a cell in another column, a cell either of them would refuse)."""
    if len(columns) > MAX_KEYS:
        return _no_cells  # every row the dict's way
    names: dict[str, str] = {}
    body = []
    for k, column in enumerate(columns):
        c = f"c{k}"
        if column in _TEXT_FIELDS:
            body.append(_TEXT.format(c=c, name=column))
        elif column in _CELL:
            body.append(_CELL[column].format(c=c))
        elif column.startswith(CUSTOM_ID) and len(column) > len(CUSTOM_ID):
            names[f"N{k}"] = column[CUSTOM_LEN:]
            body.append(_CUSTOM_CELL.format(c=c, k=k))
        else:  # dates, attachments, ...: to_create's
            body.append(f"    if {c}:\n        return None\n")
    width = len(columns)
    unpack = f"    {', '.join(f'c{k}' for k in range(width))}, = cells\n" if width else ""
    source = (
        "def from_cells(cells):\n"
        f"    if len(cells) != {width}:\n"
        f"        if len(cells) > {width}:\n            return None\n"
        f"        cells = cells + [''] * ({width} - len(cells))  # fewer: the rest unset\n"
        f"{unpack}    create = _blank()\n    custom = {{}}\n{''.join(body)}"
        "    create.custom = custom\n    return create\n"
    )
    return _define(source, "from_cells", names)  # type: ignore[no-any-return]


def _no_cells(cells: list[str]) -> None:
    """The builder of a header too wide to write as code: no row is the usual one."""


# A dict's value ``{v}`` under a known key: what build's walk checks. None is sent as null.
_ID_CHECK = "{v}.__class__ is not str or not {v}"
_CHECKS = {
    "lead_id": _ID_CHECK,
    "status_id": _ID_CHECK,
    "contact_id": _ID_CHECK,
    "user_id": _ID_CHECK,
    "created_by": _ID_CHECK,
    "note": "{v}.__class__ is not str",
    "value": "{v}.__class__ is not int",  # not bool either: True is no number of cents
    "confidence": "{v}.__class__ is not int or not 0 <= {v} <= 100",
    "value_period": "{v}.__class__ is not str or {v} not in _PERIODS",
}
_CUSTOM_VALUE = (  # validate_create: values with insides checked (check_json_value)
    "    if {v}.__class__ not in _SCALARS and isinstance({v}, _CHECKED):\n"
    "        try:\n            check_json_value(K{k}, {v})\n"
    "        except Exception:\n            return _to_create(item)\n"
    "    custom[N{k}] = {v}\n"
)


def compile_keys(keys: tuple[Any, ...]) -> DictBuilder:
    """The builder of a wire-format dict with these keys, in this order: what
    ``import_build``'s walk gives (``to_create(item)``'s result, or what it raises)."""
    names: dict[str, str] = {}
    body = []
    for k, key in enumerate(keys):
        v = f"v{k}"
        if key.__class__ is str and key in _CHECKS:
            check = _CHECKS[key].format(v=v)
            body.append(
                f"    if {v} is not None and ({check}):\n        return _to_create(item)\n"
                f"    create.{key} = {v}\n"
            )
        elif key.__class__ is str and key.startswith(CUSTOM_ID) and len(key) > len(CUSTOM_ID):
            names[f"K{k}"], names[f"N{k}"] = key, key[CUSTOM_LEN:]
            body.append(_CUSTOM_VALUE.format(v=v, k=k))
        else:  # dates, attachments, an unknown key, ...: to_create's
            return to_create
    unpack = f"    {', '.join(f'v{k}' for k in range(len(keys)))}, = item.values()\n"
    source = (
        f"def build(item):\n{unpack if keys else ''}    create = _blank()\n    custom = {{}}\n"
        f"{''.join(body)}    create.custom = custom\n    return create\n"
    )
    return _define(source, "build", names)  # type: ignore[no-any-return]


def _define(source: str, name: str, constants: dict[str, Any]) -> Any:
    namespace = {**_NAMESPACE, **constants}
    exec(compile(source, f"<close_async import {name}>", "exec"), namespace)
    return namespace[name]


# A JSON Lines row's value under each key a typed decode checks as ``walk`` would (None: null).
_Id = Annotated[str, msgspec.Meta(min_length=1)]
_TYPES: dict[str, Any] = {
    "lead_id": _Id,
    "status_id": _Id,
    "contact_id": _Id,
    "user_id": _Id,
    "created_by": _Id,
    "note": str,
    "value": int,  # msgspec's int is no bool, no float: what walk asks
    "confidence": Annotated[int, msgspec.Meta(ge=0, le=100)],
    "value_period": Literal[tuple(VALUE_PERIODS)],
}
_FIELD = "    v = line.f{k}\n    if v is not _UNSET:\n        create.{key} = v\n"
_CUSTOM_FIELD = (
    "    v = line.f{k}\n    if v is not _UNSET:\n"
    "        if v.__class__ not in _SCALARS and isinstance(v, _CHECKED):\n"
    "            try:\n                check_json_value(K{k}, v)\n"
    "            except Exception:\n                return None\n"
    "        custom[N{k}] = v\n"
)


def nameable(key: str) -> bool:
    """Whether msgspec can rename a Struct's field to ``key`` (``defstruct(rename=...)``)."""
    return _UNNAMEABLE(key) is None


class LineShape(NamedTuple):
    """How to build a JSON Lines row whose keys are all among ``keys`` (``compile_line``)."""

    keys: tuple[str, ...]  # in the order first seen
    known: frozenset[str]
    decode: Callable[[str], Any]  # raises msgspec.DecodeError for any other line
    build: Callable[[Any], CreateOpportunity | None]  # None: a custom value walk refuses


def compile_line(keys: Iterable[str]) -> LineShape | None:
    """A typed decoder and builder for JSON Lines rows whose keys are among ``keys``: msgspec
    checks each known field's value in C, as ``walk`` does in Python, and the builder copies
    them onto a blank model. A row the decoder refuses (another key, a value ``walk`` would
    hand to ``to_create``, not JSON) is the untyped way's to read. None: a key no typed field
    is for (dates, attachments, ...). Decoding untyped then walking the dict written as code:
    7,100 + 12,400 instructions a row; this way 5,300 + about 4,000."""
    keys = list(dict.fromkeys(keys))
    if len(keys) > MAX_KEYS:
        return None
    names: dict[str, str] = {}
    fields: list[tuple[str, Any, Any]] = []
    body = []
    for k, key in enumerate(keys):
        if key in _TYPES:
            fields.append((f"f{k}", _TYPES[key] | None | msgspec.UnsetType, msgspec.UNSET))
            body.append(_FIELD.format(k=k, key=key))
        elif key.startswith(CUSTOM_ID) and len(key) > len(CUSTOM_ID) and nameable(key):
            fields.append((f"f{k}", Any, msgspec.UNSET))
            names[f"K{k}"], names[f"N{k}"] = key, key[CUSTOM_LEN:]
            body.append(_CUSTOM_FIELD.format(k=k))
        else:
            return None
    line_type = msgspec.defstruct(
        "Line",
        fields,
        kw_only=True,
        forbid_unknown_fields=True,  # our own input's shape: a key outside it is another shape
        rename={f"f{k}": key for k, key in enumerate(keys)},
    )
    source = (
        "def build(line):\n    create = _blank()\n    custom = {}\n"
        f"{''.join(body)}    create.custom = custom\n    return create\n"
    )
    build = _define(source, "build", {**names, "_UNSET": msgspec.UNSET})
    return LineShape(tuple(keys), frozenset(keys), msgspec.json.Decoder(line_type).decode, build)
