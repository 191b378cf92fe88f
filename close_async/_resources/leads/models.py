"""Typed models of Close's lead payloads: ``CreateLead`` (the body of ``POST /lead/``) and
``Lead`` (what Close answers), with their encoder and decoder.

Custom fields travel as flat ``"custom.<id>"`` keys both ways, as for opportunities: lead custom
field ids are ``cf_...`` (and ``lcf_...`` for fields made before Close's shared fields). Requests
are checked on construction (``InvalidInputError`` naming the field and the value); responses
are read leniently: unknown fields are ignored, fields that are missing decode as ``None`` (or
empty), and Close's legacy ``"custom"`` object keyed by field *name* is left out: ``custom``
holds the flat keys, by id.
"""

# Ruff cannot see that CloseModel (imported) is a msgspec Struct, whose defaults are copied per
# instance: mutable defaults are safe here, as in opportunities/responses.py.

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from ..._constants import CUSTOM_PREFIX
from ..._exceptions import MSGSPEC_DECODE_ERRORS, DecodeError, InvalidInputError
from ..base import CloseModel
from ..checks import check_json_value

__all__ = [
    "CreateLead",
    "Lead",
    "LeadAddress",
    "LeadContact",
    "LeadContactEmail",
    "LeadContactPhone",
    "LeadContactURL",
]

_UNSET: Any = msgspec.UNSET
_CUSTOM_ID_PREFIXES = ("cf_", "lcf_")
_TEXT = ("name", "description", "url")
_LISTS = ("contacts", "addresses")


class CreateLead(CloseModel, kw_only=True):
    """The body of ``POST /lead/``. Unset fields are not sent; ``None`` is sent as null.

    ``contacts`` and ``addresses`` are lists of dicts in Close's own shape (a contact:
    ``{"name": ..., "title": ..., "emails": [{"email": ..., "type": "office"}], "phones":
    [{"phone": ..., "type": "mobile"}]}``). ``custom`` maps custom field ids (``cf_...`` or
    ``lcf_...``) to values, sent as flat ``"custom.<id>"`` keys.
    """

    name: str | msgspec.UnsetType | None = _UNSET
    status_id: str | msgspec.UnsetType | None = _UNSET
    description: str | msgspec.UnsetType | None = _UNSET
    url: str | msgspec.UnsetType | None = _UNSET
    contacts: list[dict[str, Any]] | msgspec.UnsetType | None = _UNSET
    addresses: list[dict[str, Any]] | msgspec.UnsetType | None = _UNSET
    custom: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _validate(self)


def _validate(item: CreateLead) -> None:
    for name in _TEXT:
        value = getattr(item, name)
        if value not in (_UNSET, None) and not isinstance(value, str):
            raise InvalidInputError(name, value, "must be a string")
    status_id = item.status_id
    if status_id not in (_UNSET, None) and (not isinstance(status_id, str) or not status_id):
        raise InvalidInputError("status_id", status_id, "must be a non-empty string id")
    for name in _LISTS:
        value = getattr(item, name)
        if value in (_UNSET, None):
            continue
        if not isinstance(value, list):
            raise InvalidInputError(name, value, "must be a list of dicts")
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise InvalidInputError(f"{name}[{i}]", entry, "must be a dict")
            check_json_value(f"{name}[{i}]", entry)
    if not isinstance(item.custom, dict):
        raise InvalidInputError("custom", item.custom, "must be a dict of custom field ids")
    for key, value in item.custom.items():
        if not isinstance(key, str) or not key.startswith(_CUSTOM_ID_PREFIXES) or "." in key:
            raise InvalidInputError("custom", key, "keys must be custom field ids 'cf_...'")
        check_json_value(f"custom.{key}", value)


class LeadContactEmail(CloseModel, kw_only=True):
    email: str | None = None
    type: str | None = None
    is_unsubscribed: bool | None = None


class LeadContactPhone(CloseModel, kw_only=True):
    phone: str | None = None
    phone_formatted: str | None = None
    type: str | None = None
    country: str | None = None


class LeadContactURL(CloseModel, kw_only=True):
    url: str | None = None
    type: str | None = None


class LeadContact(CloseModel, kw_only=True):
    """A contact of a lead. ``custom`` holds its flat ``custom.*`` keys, by field id."""

    id: str | None = None
    lead_id: str | None = None
    organization_id: str | None = None
    name: str | None = None
    title: str | None = None
    display_name: str | None = None
    emails: list[LeadContactEmail] = []
    phones: list[LeadContactPhone] = []
    urls: list[LeadContactURL] = []
    date_created: dt.datetime | None = None
    date_updated: dt.datetime | None = None
    custom: dict[str, Any] = {}


class LeadAddress(CloseModel, kw_only=True):
    label: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    zipcode: str | None = None
    country: str | None = None


class Lead(CloseModel, kw_only=True):
    """A lead as Close returns it. ``custom`` holds every flat ``custom.*`` key of the response,
    keyed without the prefix (``{"cf_...": value}``); Close omits empty custom fields."""

    id: str = ""
    organization_id: str | None = None
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    url: str | None = None
    html_url: str | None = None
    status_id: str | None = None
    status_label: str | None = None
    created_by: str | None = None
    created_by_name: str | None = None
    updated_by: str | None = None
    updated_by_name: str | None = None
    date_created: dt.datetime | None = None
    date_updated: dt.datetime | None = None
    contacts: list[LeadContact] = []
    addresses: list[LeadAddress] = []
    custom: dict[str, Any] = {}


_encoder = msgspec.json.Encoder()
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_lead(item: CreateLead) -> bytes:
    """The request body: the fields set (unset ones left out) and flat ``custom.<id>`` keys."""
    body = {
        f: getattr(item, f)
        for f in CreateLead.__struct_fields__
        if f != "custom" and getattr(item, f) is not _UNSET
    }
    body.update({CUSTOM_PREFIX + k: v for k, v in item.custom.items()})
    try:
        return _encoder.encode(body)
    except Exception as exc:  # a value JSON cannot carry: nothing was sent
        raise InvalidInputError("item", item, f"cannot be sent as JSON ({exc})") from exc


def decode_lead(raw: bytes) -> Lead:
    """A ``Lead`` from a response body; ``DecodeError`` (keeping the body) if it is not one."""
    try:
        fields = _dict_decoder.decode(raw)
        if not isinstance(fields, dict) or not fields.get("id"):
            raise DecodeError("response is not a Lead: it has no id", body=raw)
        _lift_custom(fields)
        for contact in fields.get("contacts") or ():
            if isinstance(contact, dict):
                _lift_custom(contact)
        lead = msgspec.convert(fields, Lead)
    except (*MSGSPEC_DECODE_ERRORS, msgspec.ValidationError) as exc:
        raise DecodeError(f"response is not a Lead: {exc}", body=raw) from exc
    for when in ("date_created", "date_updated"):  # tz-aware, as for opportunities: naive is UTC
        value = getattr(lead, when)
        if value is not None and value.tzinfo is None:
            setattr(lead, when, value.replace(tzinfo=dt.timezone.utc))
    return lead


def _lift_custom(fields: dict[str, Any]) -> None:
    """Move the flat ``custom.<id>`` keys into ``fields["custom"]`` (replacing Close's legacy
    object keyed by field name, which a rename in the UI would break)."""
    fields["custom"] = {
        key[len(CUSTOM_PREFIX) :]: fields.pop(key)
        for key in [k for k in fields if k.startswith(CUSTOM_PREFIX)]
    }
