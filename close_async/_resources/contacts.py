"""A contact's email addresses and phone numbers, as every Close object that nests them sends them.

Shared by the resource folders (an opportunity's ``lead_primary_email`` and ``lead_primary_phone``,
a lead's contacts), which may not import one another. Decoded leniently, as every response model.
"""

from __future__ import annotations

from .base import CloseModel

__all__ = ["ContactEmail", "ContactPhone"]


class ContactEmail(CloseModel, kw_only=True):
    """An email address of a contact (here the lead's primary one)."""

    email: str | None = None
    """The address."""
    type: str | None = None
    """Its kind, e.g. ``office`` or ``home`` (an open enum)."""
    is_unsubscribed: bool | None = None
    """Whether the address has unsubscribed from emails."""


class ContactPhone(CloseModel, kw_only=True):
    """A phone number of a contact (here the lead's primary ones)."""

    phone: str | None = None
    """The number in E.164 form, e.g. ``+16505550123``."""
    phone_formatted: str | None = None
    """The number as Close displays it."""
    type: str | None = None
    """Its kind, e.g. ``office`` or ``mobile`` (an open enum)."""
    country: str | None = None
    """Its country, an ISO 3166 code such as ``US``."""
    outbound_sms_blocked: bool | None = None
    """Whether Close blocks sending SMS to it."""
    tz_ids: list[str] = []
    """The time zones of the number, as IANA names (``America/New_York``)."""
