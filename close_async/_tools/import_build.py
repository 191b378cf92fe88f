"""An import row's ``CreateOpportunity``, built the short way: the same object ``to_create`` builds.

``to_create(item)`` walks the wire-format dict, builds keyword arguments, and the model's
``__post_init__`` (``validate_create``) checks every field again: 7.6 us a row, more than reading
and parsing it. ``walk(item)`` walks the dict once, checking each value as it goes with the
checks ``validate_create`` would make of it, and sets it on a copy of a blank model (a copy runs
no ``__post_init__``): about 2 us for the usual row (ids, a note, an integer value and
confidence, a known ``value_period``, ``custom.cf_*`` cells). ``build(item)`` does the same
with the walk written as code for the row's keys (``import_codegen``), once per shape of row:
a file's rows mostly share theirs. Past ``MAX_SHAPES`` shapes it walks.

Anything else (dates, attachments, ``custom_fields``, a ``custom`` dict, an unknown key, a value
that fails a check) is handed to ``to_create`` itself, whose error names the field and the
value: the result, or the error, is always the one ``to_create`` gives.
"""

from __future__ import annotations

from typing import Any

from .._resources.checks import CHECKED, check_json_value
from .._resources.opportunities.requests import Item, to_create
from ..models import CreateOpportunity
from .import_codegen import (
    CUSTOM_ID,
    CUSTOM_LEN,
    MAX_KEYS,
    PERIODS,
    SCALARS,
    DictBuilder,
    blank,
    compile_keys,
)

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
#: Shapes of row (keys, in order) given a builder of their own; a file with more walks the rest.
MAX_SHAPES = 64
_builders: dict[tuple[Any, ...], DictBuilder] = {}


def build(item: Item) -> CreateOpportunity:
    """``to_create(item)``, for a dict in Close's wire format; raises what it raises."""
    if item.__class__ is not dict:
        return to_create(item)
    keys = tuple(item)
    builder = _builders.get(keys)
    if builder is None:
        if len(_builders) >= MAX_SHAPES or len(keys) > MAX_KEYS:
            return walk(item)
        builder = _builders[keys] = compile_keys(keys)
    return builder(item)


def walk(item: Item) -> CreateOpportunity:
    """``build(item)``, walking the dict (what each builder does as code)."""
    if item.__class__ is not dict:
        return to_create(item)
    create: CreateOpportunity = blank()
    custom: dict[str, Any] = {}
    kinds = _KINDS
    for key, value in item.items():
        kind = kinds.get(key)
        if kind is None:
            # validate_create: keys "cf_" and more; values with insides checked (check_json_value)
            if key.__class__ is not str or not key.startswith(CUSTOM_ID) or len(key) <= 10:
                return to_create(item)
            if value.__class__ not in SCALARS and isinstance(value, CHECKED):
                try:
                    check_json_value(key, value)
                except Exception:
                    return to_create(item)
            custom[key[CUSTOM_LEN:]] = value
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
            if value.__class__ is not str or value not in PERIODS:
                return to_create(item)
        elif value.__class__ is not str:  # note
            return to_create(item)
        setattr(create, key, value)
    create.custom = custom  # its own dict: the blank one's is shared
    return create
