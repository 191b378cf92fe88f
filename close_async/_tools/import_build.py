"""An import row's ``CreateOpportunity``, built the short way: the same object ``to_create`` builds.

``to_create(item)`` walks the wire-format dict, builds keyword arguments, and the model's
``__post_init__`` (``validate_create``) checks every field again: 7.6 us a row, more than reading
and parsing it. ``build(item)`` walks the dict once, checking each value as it goes with the
checks ``validate_create`` would make of it, and sets it on a copy of a blank model (a copy runs
no ``__post_init__``): about 2 us for the usual row (ids, a note, an integer value and
confidence, a known ``value_period``, ``custom.cf_*`` cells).

Anything else (dates, attachments, ``custom_fields``, a ``custom`` dict, an unknown key, a value
that fails a check) is handed to ``to_create`` itself, whose error names the field and the
value: the result, or the error, is always the one ``to_create`` gives.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._constants import CUSTOM_PREFIX, VALUE_PERIODS
from .._resources.checks import CHECKED, check_json_value
from .._resources.opportunities.requests import Item, to_create
from ..models import CreateOpportunity

_blank = CreateOpportunity().__copy__  # type: ignore[attr-defined]  # a fresh model, no __post_init__
_SCALARS = frozenset({str, int, bool, type(None)})  # nothing inside them to check
_PERIODS = frozenset(VALUE_PERIODS)
_ID, _NOTE, _VALUE, _CONFIDENCE, _PERIOD = range(5)
# The fields checked here; every other field (dates, attachments, ...) goes to to_create.
_KINDS = {
    "lead_id": _ID,
    "status_id": _ID,
    "contact_id": _ID,
    "user_id": _ID,
    "created_by": _ID,
    "note": _NOTE,
    "value": _VALUE,
    "confidence": _CONFIDENCE,
    "value_period": _PERIOD,
}
_CUSTOM_ID = CUSTOM_PREFIX + "cf_"  # "custom.cf_": a key of custom, "cf_" and at least one more
_CUSTOM_LEN = len(CUSTOM_PREFIX)


def build(item: Item) -> CreateOpportunity:
    """``to_create(item)``, for a dict in Close's wire format; raises what it raises."""
    if item.__class__ is not dict:
        return to_create(item)
    create: CreateOpportunity = _blank()
    custom: dict[str, Any] = {}
    kinds = _KINDS
    for key, value in item.items():
        kind = kinds.get(key)
        if kind is None:
            # validate_create: keys "cf_" and more; values with insides checked (check_json_value)
            if key.__class__ is not str or not key.startswith(_CUSTOM_ID) or len(key) <= 10:
                return to_create(item)
            if value.__class__ not in _SCALARS and isinstance(value, CHECKED):
                try:
                    check_json_value(key, value)
                except Exception:
                    return to_create(item)
            custom[key[_CUSTOM_LEN:]] = value
            continue
        if value is None:
            pass  # sent as null, as to_create sends it
        elif kind == _ID:
            if value.__class__ is not str or not value:
                return to_create(item)
        elif kind == _VALUE:
            if value.__class__ is not int:  # not bool either: True is no number of cents
                return to_create(item)
        elif kind == _CONFIDENCE:
            if value.__class__ is not int or not 0 <= value <= 100:
                return to_create(item)
        elif kind == _PERIOD:
            if value.__class__ is not str or value not in _PERIODS:
                return to_create(item)
        elif value.__class__ is not str:  # note
            return to_create(item)
        setattr(create, key, value)
    create.custom = custom  # its own dict: the blank one's is shared
    return create


# A CSV column, by what its cells become (decided once per file, from the header).
_TEXT, _CELL_PERIOD, _CELL_VALUE, _CELL_CONFIDENCE, _CELL_CUSTOM, _OTHER = range(6)
_TEXT_FIELDS = frozenset(("lead_id", "status_id", "contact_id", "user_id", "created_by", "note"))
_CELLS = {"value_period": _CELL_PERIOD, "value": _CELL_VALUE, "confidence": _CELL_CONFIDENCE}
_decode = msgspec.json.Decoder().decode

CsvPlan = list[tuple[str, int]]


def csv_plan(columns: list[str]) -> CsvPlan:
    """Each column's name (a custom field's id for ``custom.cf_*``) and what its cells become."""
    plan = []
    for column in columns:
        if column in _TEXT_FIELDS:
            plan.append((column, _TEXT))
        elif column in _CELLS:
            plan.append((column, _CELLS[column]))
        elif column.startswith(_CUSTOM_ID) and len(column) > len(_CUSTOM_ID):
            plan.append((column[_CUSTOM_LEN:], _CELL_CUSTOM))
        else:
            plan.append((column, _OTHER))  # dates, attachments, ...: to_create's
    return plan


def from_cells(plan: CsvPlan, cells: list[str]) -> CreateOpportunity | None:
    """The usual CSV row's ``CreateOpportunity``, built from its cells: what ``rows._csv_item``
    then ``to_create`` make of them (an empty cell is not sent, ``value`` and ``confidence``
    are integers, a custom cell starting with ``[`` is JSON). None: anything else (a cell in
    another column, a cell either of them would refuse): let them say what."""
    if len(cells) > len(plan):
        return None
    create: CreateOpportunity = _blank()
    custom: dict[str, Any] = {}
    for (name, kind), cell in zip(plan, cells):  # noqa: B905 (fewer cells: the rest unset)
        if not cell:
            continue
        if kind == _TEXT:
            setattr(create, name, cell)  # a non-empty string: what validate_create asks
        elif kind == _CELL_CUSTOM:
            if cell[0] != "[":
                custom[name] = cell
                continue
            try:
                value = _decode(cell)
                check_json_value(name, value)  # as validate_create checks a custom value
            except Exception:
                return None
            custom[name] = value
        elif kind == _CELL_PERIOD:
            if cell not in _PERIODS:
                return None
            create.value_period = cell  # checked: one of them
        elif kind == _OTHER:
            return None
        else:
            try:
                number = int(cell)  # what _csv_item does: surrounding whitespace ignored
            except ValueError:
                return None
            if kind == _CELL_VALUE:
                create.value = number
            elif 0 <= number <= 100:
                create.confidence = number
            else:
                return None
    create.custom = custom
    return create
