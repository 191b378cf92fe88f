"""``client.leads``: the lead resource (``POST /lead/``).

A lead made first lets opportunities be created with its ``lead_id``: without one, Close makes a
new "Untitled" lead for every opportunity. A create is a POST, so an unknown outcome (a timeout
after sending, a lost connection, a 5xx) is not retried: the error says ``may_have_succeeded``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from ..._exceptions import DecodeError, InvalidInputError
from .models import CreateLead, Lead, decode_lead, encode_lead

if TYPE_CHECKING:
    from ..._transport.base import Transport

_UNSET: Any = msgspec.UNSET
_PATH = "lead/"


class Leads:
    """Create leads. Reached as ``client.leads``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def create(
        self,
        item: CreateLead | None = None,
        /,
        *,
        name: str | None = _UNSET,
        status_id: str | None = _UNSET,
        description: str | None = _UNSET,
        url: str | None = _UNSET,
        contacts: list[dict[str, Any]] | None = _UNSET,
        addresses: list[dict[str, Any]] | None = _UNSET,
        custom: dict[str, Any] | None = None,
    ) -> Lead:
        """Create one lead; returns it as Close stored it (with its contacts).

        Pass either a ``CreateLead`` or its fields as keywords: ``contacts`` and ``addresses``
        in Close's own shape, ``custom`` mapping custom field ids (``cf_...``) to values.
        Fields not given are not sent. Invalid input raises ``InvalidInputError`` before
        anything is sent.
        """
        fields: dict[str, Any] = {
            "name": name,
            "status_id": status_id,
            "description": description,
            "url": url,
            "contacts": contacts,
            "addresses": addresses,
        }
        if item is None:
            item = CreateLead(**fields, custom={} if custom is None else custom)
        elif not isinstance(item, CreateLead):
            raise InvalidInputError("item", item, "must be a CreateLead")
        elif custom is not None or any(v is not _UNSET for v in fields.values()):
            raise InvalidInputError("item", item, "pass a CreateLead or keywords, not both")
        raw = await self._transport.send("POST", _PATH, encode_lead(item))
        try:
            return decode_lead(raw)
        except DecodeError as exc:
            exc.may_have_succeeded = True  # Close answered 2xx: it did create something
            raise self._transport.redact(exc) from None
