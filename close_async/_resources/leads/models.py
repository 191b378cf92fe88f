"""Typed models of Close's lead payloads: ``CreateLead`` (the body of ``POST /lead/``) and
``Lead`` (what Close answers), with their encoder and decoder.

Custom fields travel as flat ``"custom.<id>"`` keys both ways, as for opportunities: lead custom
field ids are ``cf_...`` (and ``lcf_...`` for fields made before Close's shared fields). Requests
are checked on construction (``InvalidInputError`` naming the field and the value). Responses are
decoded by the generic custom-field decoder (``custom.CustomDecoder``, the one opportunities use):
one pass, every flat key kept in ``Lead.custom`` (by id), unknown fields ignored, missing ones
``None`` (or empty). Close's legacy ``"custom"`` object keyed by field *name* is not in
``custom``. Custom fields of the nested contacts are not kept (a contact's own read has them).
"""

# Ruff cannot see that CloseModel (imported) is a msgspec Struct, whose defaults are copied per
# instance: mutable defaults are safe here, as in opportunities/responses.py.

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from ..._constants import CUSTOM_PREFIX
from ..._exceptions import InvalidInputError
from ..base import CloseModel
from ..checks import check_json_value
from ..contacts import ContactEmail, ContactPhone
from ..custom import CustomDecoder, CustomFieldsModel, share

__all__ = [
    "CreateLead",
    "Lead",
    "LeadAddress",
    "LeadContact",
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
    """The lead's name (a company, usually); Close shows it as the lead's title."""
    status_id: str | msgspec.UnsetType | None = _UNSET
    """The lead status (``stat_...``); Close uses the organization's first status when unset."""
    description: str | msgspec.UnsetType | None = _UNSET
    """Free text shown on the lead."""
    url: str | msgspec.UnsetType | None = _UNSET
    """The lead's website."""
    contacts: list[dict[str, Any]] | msgspec.UnsetType | None = _UNSET
    """Contacts to create with the lead, as dicts in Close's shape (``name``, ``title``,
    ``emails``, ``phones``)."""
    addresses: list[dict[str, Any]] | msgspec.UnsetType | None = _UNSET
    """Addresses, as dicts in Close's shape (``label``, ``address_1``, ``city``, ``zipcode``,
    ``country``...)."""
    custom: dict[str, Any] = {}
    """Custom field values by id (``cf_...`` or ``lcf_...``), sent as flat ``"custom.<id>"`` keys;
    ``None`` sends null."""

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


class LeadContactURL(CloseModel, kw_only=True):
    url: str | None = None
    type: str | None = None


class LeadContact(CloseModel, kw_only=True):
    """A contact of a lead, as the lead's answer nests it."""

    id: str | None = None
    lead_id: str | None = None
    organization_id: str | None = None
    name: str | None = None
    title: str | None = None
    display_name: str | None = None
    emails: list[ContactEmail] = []
    phones: list[ContactPhone] = []
    urls: list[LeadContactURL] = []
    date_created: dt.datetime | None = None
    date_updated: dt.datetime | None = None


class LeadAddress(CloseModel, kw_only=True):
    label: str | None = None
    address_1: str | None = None
    address_2: str | None = None
    city: str | None = None
    state: str | None = None
    zipcode: str | None = None
    country: str | None = None


class Lead(CustomFieldsModel, kw_only=True):
    """A lead as Close returns it. ``custom`` holds every flat ``custom.*`` key of the response,
    keyed without the prefix (``{"cf_...": value}``); Close omits empty custom fields.
    ``msgspec.json.encode`` writes them back as flat keys."""

    id: str = ""
    """The lead's id (``lead_...``)."""
    organization_id: str | None = None
    """The organization (``orga_...``) the lead belongs to."""
    name: str | None = None
    """The lead's name as given (``None`` for an unnamed lead)."""
    display_name: str | None = None
    """The name Close displays (``Untitled`` style for an unnamed lead)."""
    description: str | None = None
    """Free text shown on the lead."""
    url: str | None = None
    """The lead's website."""
    html_url: str | None = None
    """The lead's page in the Close app."""
    status_id: str | None = None
    """The lead status (``stat_...``)."""
    status_label: str | None = None
    """The lead status's label (``Potential``, ...)."""
    created_by: str | None = None
    """The user (``user_...``) who created the lead: the API key's user."""
    created_by_name: str | None = None
    """That user's name."""
    updated_by: str | None = None
    """The user who last changed the lead."""
    updated_by_name: str | None = None
    """That user's name."""
    date_created: dt.datetime | None = None
    """When Close created the lead (tz-aware)."""
    date_updated: dt.datetime | None = None
    """When the lead last changed (tz-aware)."""
    contacts: list[LeadContact] = []
    """The lead's contacts, as Close nests them."""
    addresses: list[LeadAddress] = []
    """The lead's addresses."""


_encoder = msgspec.json.Encoder()
_decoder = CustomDecoder(Lead)
share(_decoder)  # the decoder that unpickles and copies Leads


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
    lead: Lead = _decoder.decode(raw)
    return lead
