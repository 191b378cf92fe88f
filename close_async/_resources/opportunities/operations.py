"""What ``get``/``update``/``delete``/``list`` of opportunities check and send, before sending.

* Ids: a non-empty string that can be one path segment (no ``/``, ``?``, ``#``, ``%``,
  whitespace, and not ``.`` or ``..``): ``get("../lead/x")`` must not reach another endpoint.
* ``update``: the fields are ``CreateOpportunity``'s own (built with them, so the checks are
  create's, word for word); only the fields given are sent, ``custom={"cf_x": None}`` sends
  ``"custom.cf_x": null``, which unsets it. Nothing to change is an error, not an empty PUT.
* ``list``: Close's documented filters of ``GET /opportunity/`` (``OPPORTUNITY_FILTERS``),
  each with the kind of value it takes (see ``encode_filters``), plus ``contact_id`` and the
  ``id__in``, ``lead_id__in``, ``contact_id__in`` forms: missing from the parameters Close's
  reference lists for the endpoint, but accepted by Close and served by ``FakeCloseServer``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ..._exceptions import InvalidInputError
from ..pagination import FilterKind, Page, page_decoder_for
from .codec import encode_create
from .requests import CreateOpportunity

# Each of these is a filter taking one string, and also one ``__in`` taking several.
_MATCHED = (
    "lead_id",
    "contact_id",
    "user_id",
    "status_id",
    "status_type",
    "status_label",
    "status",
    "value_period",
)
_STRINGS = (*_MATCHED, "organization_id", "query", "lead_query", "lead_saved_search_id")
_IN = ("id", *_MATCHED)
_DATES = ("date_created", "date_updated", "date_won")
_OPERATORS = ("", "__gte", "__gt", "__lte", "__lt")

#: The filters of Close's "List or filter opportunities", by the kind of value each takes.
OPPORTUNITY_FILTERS: dict[str, FilterKind] = {
    **dict.fromkeys(_STRINGS, "str"),
    **{f"{name}__in": "list" for name in _IN},
    **{f"{name}{op}": "date" for name in _DATES for op in _OPERATORS},
    "is_stalled": "bool",
}

_NOT_IN_ID = re.compile(r"[/?#%\s]")


def check_id(value: Any, name: str = "id") -> str:
    """``value`` if it can be a Close id in a URL path; else ``InvalidInputError``."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(name, value, "must be a non-empty string id")
    if _NOT_IN_ID.search(value) or value in (".", ".."):
        raise InvalidInputError(name, value, "is not a Close id (it cannot be a path segment)")
    return value


def encode_update(fields: Mapping[str, Any]) -> bytes:
    """The PUT body for ``update(id, **fields)``: only the given fields, checked as on create."""
    try:
        item = CreateOpportunity(**fields)
    except TypeError as exc:  # msgspec: "Unexpected keyword argument 'x'"
        known = ", ".join(f for f in CreateOpportunity.__struct_fields__)
        unknown = [k for k in fields if k not in CreateOpportunity.__struct_fields__]
        name = unknown[0] if unknown else "fields"
        raise InvalidInputError(
            name, fields.get(name), f"is not an opportunity field (known: {known})"
        ) from exc
    if not any(getattr(item, f) is not msgspec.UNSET for f in _PLAIN) and not item.custom:
        raise InvalidInputError("fields", fields, "update() needs at least one field to change")
    return encode_create(item)


_PLAIN = tuple(f for f in CreateOpportunity.__struct_fields__ if f != "custom")


@page_decoder_for
class OpportunityPage(Page, kw_only=True):
    """A page of ``GET /opportunity/``, with the aggregates Close computes over every match
    (regardless of paging). Values are in cents; expected values weigh by ``confidence``."""

    count_by_value_period: dict[str, int] | None = None
    # Sums of cents are integers, but an expected value (value x confidence) may not be.
    total_value_one_time: int | float | None = None
    total_value_monthly: int | float | None = None
    total_value_annual: int | float | None = None
    total_value_annualized: int | float | None = None
    expected_value_one_time: int | float | None = None
    expected_value_monthly: int | float | None = None
    expected_value_annual: int | float | None = None
    expected_value_annualized: int | float | None = None
