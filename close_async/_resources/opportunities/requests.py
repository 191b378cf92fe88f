"""The opportunity request models, and the checks run when a ``CreateOpportunity`` is built.

msgspec Structs do not check types on ``__init__``, and a bad value caught here costs nothing,
while one caught by Close costs a request (and, for a 5xx, an unknown outcome). Each failure names
the field and the value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypedDict, Union

import msgspec

from ..._constants import CUSTOM_PREFIX as _PREFIX
from ..._constants import VALUE_PERIODS as VALUE_PERIODS  # re-exported: the request enum
from ..._constants import ValuePeriod as ValuePeriod
from ..._exceptions import InvalidInputError
from ..base import CloseModel
from ..checks import CHECKED as _CHECKED
from ..checks import check_json_value

UNSET = msgspec.UNSET


class AttachmentIn(CloseModel, kw_only=True):
    """An attachment to add on create: a file already uploaded to Close's files API."""

    url: str
    """The file's URL, as Close's files API returned it on upload."""
    filename: str
    """The name shown for the file."""
    content_type: str = ""
    """Its MIME type, e.g. ``application/pdf`` (may be left empty)."""


class CreateOpportunityFields(TypedDict, total=False):
    """The fields of ``CreateOpportunity`` as keyword arguments: what ``create(**fields)`` takes.

    One list for every signature that takes the fields as keywords (``Unpack``), so that mypy
    names a wrongly typed one; ``tests/resources/opportunities/test_fields.py`` keeps its keys
    and types equal to ``CreateOpportunity``'s fields (less ``UNSET``, which means "not given").
    """

    lead_id: str | None
    status_id: str | None
    value: int | None
    value_period: ValuePeriod | None
    confidence: int | None
    note: str | None
    contact_id: str | None
    user_id: str | None
    created_by: str | None
    date_won: dt.datetime | dt.date | None
    date_created: dt.datetime | dt.date | None
    attachments: list[AttachmentIn] | None
    custom_fields: dict[str, Any] | None
    custom: dict[str, Any]


class CreateOpportunity(CloseModel, kw_only=True):
    """The body of ``POST /opportunity/``. Unset fields are not sent; ``None`` is sent as null.

    ``value`` is in cents. ``custom`` maps custom field ids (``cf_...``) to values, sent as flat
    ``"custom.cf_..."`` keys; lists (multi-value fields) are sent whole and replace the old value.
    """

    lead_id: str | msgspec.UnsetType | None = UNSET
    """The lead to add it to (``lead_...``). Left out, Close creates an "Untitled" lead."""
    status_id: str | msgspec.UnsetType | None = UNSET
    """Its status (``stat_...``). Left out, Close uses the organization's first status."""
    value: int | msgspec.UnsetType | None = UNSET
    """The value, an integer in cents: ``500000`` is $5,000.00."""
    value_period: ValuePeriod | msgspec.UnsetType | None = UNSET
    """How often ``value`` is paid: ``one_time``, ``monthly`` or ``annual``."""
    confidence: int | msgspec.UnsetType | None = UNSET
    """How likely it is to be won, in percent: 0 to 100."""
    note: str | msgspec.UnsetType | None = UNSET
    """Free text shown on the opportunity."""
    contact_id: str | msgspec.UnsetType | None = UNSET
    """A contact of the lead (``cont_...``)."""
    user_id: str | msgspec.UnsetType | None = UNSET
    """The user who owns it (``user_...``). Left out: the API key's user."""
    created_by: str | msgspec.UnsetType | None = UNSET
    """The user recorded as its creator (``user_...``), e.g. when importing history."""
    date_won: dt.datetime | dt.date | msgspec.UnsetType | None = UNSET
    """When it was won: a ``datetime.date``, or a timezone-aware ``datetime``."""
    date_created: dt.datetime | dt.date | msgspec.UnsetType | None = UNSET
    """When it was created, to backdate an import: a date or an aware datetime."""
    attachments: list[AttachmentIn] | msgspec.UnsetType | None = UNSET
    """Files already uploaded to Close's files API, to attach to it."""
    custom_fields: dict[str, Any] | msgspec.UnsetType | None = UNSET
    """Deprecated by Close in favour of ``custom``; kept because the schema has it."""
    custom: dict[str, Any] = {}
    """Custom field values by field id (``{"cf_...": value}``), sent as flat
    ``"custom.cf_..."`` keys; a list (a multi-value field) replaces the old value whole."""

    def __post_init__(self) -> None:
        validate_create(self)


_ID_FIELDS = ("lead_id", "status_id", "contact_id", "user_id", "created_by")
_UNSET = msgspec.UNSET


def validate_create(item: CreateOpportunity) -> None:
    for name in _ID_FIELDS:
        value = getattr(item, name)
        if value is not _UNSET and value is not None and (not isinstance(value, str) or not value):
            raise InvalidInputError(name, value, "must be a non-empty string id")
    # The usual cases (an int, or unset) are checked inline; _check_int says what is wrong.
    value, confidence = item.value, item.confidence
    if value.__class__ is not int and value is not _UNSET and value is not None:
        _check_int(item, "value", minimum=None)
    if not (confidence.__class__ is int and 0 <= confidence <= 100) and confidence is not _UNSET:
        _check_int(item, "confidence", minimum=0, maximum=100)
    if item.value_period not in (_UNSET, None) and item.value_period not in VALUE_PERIODS:
        raise InvalidInputError(
            "value_period", item.value_period, f"must be one of {', '.join(VALUE_PERIODS)}"
        )
    if item.note not in (_UNSET, None) and not isinstance(item.note, str):
        raise InvalidInputError("note", item.note, "must be a string")
    if item.date_won is not _UNSET or item.date_created is not _UNSET:
        for name in ("date_won", "date_created"):
            _check_date(name, getattr(item, name))
    if item.attachments is not _UNSET:
        _check_attachments(item.attachments)
    if item.custom_fields not in (_UNSET, None):
        if not isinstance(item.custom_fields, dict):
            raise InvalidInputError("custom_fields", item.custom_fields, "must be a dict")
        for key, value in item.custom_fields.items():
            if isinstance(value, _CHECKED):
                check_json_value(f"custom_fields.{key}", value)
    check_custom(item.custom)


def check_custom(custom: Any) -> None:
    if not isinstance(custom, dict):
        raise InvalidInputError("custom", custom, "must be a dict of custom field ids to values")
    for key, value in custom.items():
        if not isinstance(key, str) or not key.startswith("cf_") or len(key) <= 3:
            hint = " (drop the 'custom.' prefix)" if str(key).startswith("custom.") else ""
            raise InvalidInputError("custom", key, f"keys must be custom field ids 'cf_...'{hint}")
        if isinstance(value, _CHECKED):
            check_json_value(f"custom.{key}", value)


def _check_int(
    item: CreateOpportunity, name: str, *, minimum: int | None, maximum: int | None = None
) -> None:
    value = getattr(item, name)
    if value is _UNSET or value is None:
        return
    # bool is an int subclass; True would be sent as `true` and mean nothing to Close.
    if isinstance(value, bool) or not isinstance(value, int):
        unit = " number of cents" if name == "value" else ""
        raise InvalidInputError(name, value, f"must be an integer{unit}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InvalidInputError(name, value, f"must be between {minimum} and {maximum}")


def _check_date(name: str, value: Any) -> None:
    if value is _UNSET or value is None:
        return
    if isinstance(value, dt.datetime):
        # A naive datetime would be read by Close as UTC, silently shifting it by the local offset.
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInputError(name, value, "must be timezone-aware")
    elif not isinstance(value, dt.date):
        raise InvalidInputError(name, value, "must be a datetime.date or an aware datetime")


def _check_attachments(attachments: Any) -> None:
    if attachments is _UNSET or attachments is None:
        return
    if not isinstance(attachments, list):
        raise InvalidInputError("attachments", attachments, "must be a list of AttachmentIn")
    for i, attachment in enumerate(attachments):
        if not isinstance(attachment, AttachmentIn):
            raise InvalidInputError(f"attachments[{i}]", attachment, "must be an AttachmentIn")
        for name in ("url", "filename", "content_type"):
            if not isinstance(getattr(attachment, name), str):
                raise InvalidInputError(
                    f"attachments[{i}].{name}", getattr(attachment, name), "must be a string"
                )


# --- wire-format input (bulk and the import) ----------------------------------------------------

Item = Union[CreateOpportunity, Mapping[str, Any]]  # noqa: UP007 (a runtime alias)

_FIELDS = frozenset(CreateOpportunity.__struct_fields__) - {"custom"}
_CONVERTED = frozenset({"date_won", "date_created", "attachments"})  # what _wire_value changes
_PREFIX_LEN = len(_PREFIX)


def to_create(item: Item) -> CreateOpportunity:
    """A ``CreateOpportunity`` from one input item: the model itself, or a dict in Close's
    wire format (flat ``custom.cf_*`` keys, ISO date strings). Bad input raises
    ``InvalidInputError`` naming the field and the value."""
    if isinstance(item, CreateOpportunity):
        return item
    if not isinstance(item, Mapping):
        raise InvalidInputError("item", item, "must be a CreateOpportunity or a dict")
    fields: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for key, value in item.items():
        if key in _FIELDS:  # the usual key first: one set lookup
            fields[key] = _wire_value(key, value) if key in _CONVERTED else value
        elif isinstance(key, str) and key.startswith(_PREFIX):
            custom[key[_PREFIX_LEN:]] = value
        elif key == "custom":
            if not isinstance(value, Mapping):
                raise InvalidInputError("custom", value, "must be a dict of custom field ids")
            custom.update(value)
        else:
            raise InvalidInputError(str(key), value, "is not a field of an opportunity")
    return CreateOpportunity(**fields, custom=custom)


def _wire_value(key: str, value: Any) -> Any:
    if key in ("date_won", "date_created") and isinstance(value, str):
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value)
            # Python 3.10's fromisoformat does not read a trailing Z.
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(key, value, "must be an ISO date or date-time") from None
    if key == "attachments" and isinstance(value, list):
        try:
            return [AttachmentIn(**a) if isinstance(a, Mapping) else a for a in value]
        except TypeError as exc:
            raise InvalidInputError(key, value, f"each needs url and filename ({exc})") from None
    return value
