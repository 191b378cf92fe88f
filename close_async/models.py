"""Typed models of Close's opportunity payloads, as msgspec Structs.

Every model derives from ``CloseModel``, which carries the options they share. Responses are
decoded leniently: every field has a default (real responses omit fields the OpenAPI schema calls
required), unknown fields are ignored, and enums are open (a value Close adds tomorrow decodes as a
plain ``str``). Requests are strict: ``CreateOpportunity`` validates itself on construction and
raises ``InvalidInputError`` naming the field and the value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import msgspec

from ._constants import CUSTOM_PREFIX as _CUSTOM_PREFIX
from ._validation import validate_create

__all__ = [
    "ActionItem",
    "AdjustCloseDateDetails",
    "Attachment",
    "AttachmentIn",
    "ChangeStatusDetails",
    "CloseModel",
    "CommentSummary",
    "ContactEmail",
    "ContactPhone",
    "CreateLead",
    "CreateOpportunity",
    "FollowUpCallDetails",
    "FollowUpEmailDetails",
    "FollowUpSMSDetails",
    "IntegrationLink",
    "Lead",
    "Opportunity",
    "StallStatus",
    "SuggestedAction",
    "SuggestedActionDetails",
    "ValuePeriod",
]

UNSET = msgspec.UNSET

#: The request enum (closed: anything else is rejected before sending).
ValuePeriod = Literal["one_time", "monthly", "annual"]
#: Known values of the open response enums, for reference; responses may carry others.
STATUS_TYPES = ("won", "lost", "active")
COMMUNICATION_ISSUES = ("no_issue", "cant_get_in_touch", "no_communication_attempts")
SUGGESTED_ACTIONS = (
    "change_status",
    "adjust_close_date",
    "follow_up_email",
    "follow_up_call",
    "follow_up_sms",
)


class CloseModel(msgspec.Struct, kw_only=True, omit_defaults=True, repr_omit_defaults=True):
    """Base of every model: defaults left out of encoded JSON and out of reprs.

    (msgspec does not inherit ``kw_only``, so each model states it: every model is built with
    keywords only.)

    ``omit_defaults`` is what keeps unset request fields off the wire; it never loses information
    on responses because their defaults are ``None`` or empty.
    """


# --- requests ------------------------------------------------------------------------------------


class AttachmentIn(CloseModel, kw_only=True):
    """An attachment to add on create: a file already uploaded to Close's files API."""

    url: str
    filename: str
    content_type: str = ""


class CreateOpportunity(CloseModel, kw_only=True):
    """The body of ``POST /opportunity/``. Unset fields are not sent; ``None`` is sent as null.

    ``value`` is in cents. ``custom`` maps custom field ids (``cf_...``) to values, sent as flat
    ``"custom.cf_..."`` keys; lists (multi-value fields) are sent whole and replace the old value.
    """

    lead_id: str | msgspec.UnsetType | None = UNSET
    status_id: str | msgspec.UnsetType | None = UNSET
    value: int | msgspec.UnsetType | None = UNSET
    value_period: ValuePeriod | msgspec.UnsetType | None = UNSET
    confidence: int | msgspec.UnsetType | None = UNSET
    note: str | msgspec.UnsetType | None = UNSET
    contact_id: str | msgspec.UnsetType | None = UNSET
    user_id: str | msgspec.UnsetType | None = UNSET
    created_by: str | msgspec.UnsetType | None = UNSET
    date_won: dt.datetime | dt.date | msgspec.UnsetType | None = UNSET
    date_created: dt.datetime | dt.date | msgspec.UnsetType | None = UNSET
    attachments: list[AttachmentIn] | msgspec.UnsetType | None = UNSET
    #: Deprecated by Close in favour of ``custom.cf_...`` keys; kept because the schema has it.
    custom_fields: dict[str, Any] | msgspec.UnsetType | None = UNSET
    custom: dict[str, Any] = {}

    def __post_init__(self) -> None:
        validate_create(self)


# --- responses -----------------------------------------------------------------------------------


class Attachment(CloseModel, kw_only=True):
    url: str | None = None
    filename: str | None = None
    content_type: str | None = None
    size: int | None = None
    thumbnail_url: str | None = None


class CommentSummary(CloseModel, kw_only=True):
    comment_count: int = 0
    thread_id: str | None = None


class IntegrationLink(CloseModel, kw_only=True):
    """A rendered integration link (``RenderedIntegrationLink`` in the schema)."""

    name: str | None = None
    url: str | None = None


class ContactEmail(CloseModel, kw_only=True):
    email: str | None = None
    type: str | None = None
    is_unsubscribed: bool | None = None


class ContactPhone(CloseModel, kw_only=True):
    phone: str | None = None
    phone_formatted: str | None = None
    type: str | None = None
    country: str | None = None
    outbound_sms_blocked: bool | None = None
    tz_ids: list[str] = []


class ActionItem(CloseModel, kw_only=True):
    """The next step recommended for a stalled opportunity (``action`` is an open enum)."""

    action: str | None = None
    justification: str | None = None


class StallStatus(CloseModel, kw_only=True):
    """Why an opportunity is stalled (``StalledOpportunityActionItems`` in the schema)."""

    communication_issue: str | None = None
    next_action: ActionItem | None = None


class ChangeStatusDetails(CloseModel, kw_only=True):
    status_id: str | None = None


class FollowUpEmailDetails(CloseModel, kw_only=True):
    contact_id: str | None = None
    subject_draft: str | None = None
    message_draft: str | None = None


class FollowUpSMSDetails(CloseModel, kw_only=True):
    contact_id: str | None = None
    message_draft: str | None = None


class FollowUpCallDetails(CloseModel, kw_only=True):
    contact_id: str | None = None
    call_plan: str | None = None


class AdjustCloseDateDetails(CloseModel, kw_only=True):
    close_date: dt.date | None = None


SuggestedActionDetails: TypeAlias = (
    ChangeStatusDetails
    | FollowUpEmailDetails
    | FollowUpSMSDetails
    | FollowUpCallDetails
    | AdjustCloseDateDetails
)

# The details' shape is told apart only by the sibling ``action``; several shapes share field
# names, so they cannot be a msgspec union and are typed on demand instead.
_DETAILS_BY_ACTION: dict[str, type[SuggestedActionDetails]] = {
    "change_status": ChangeStatusDetails,
    "follow_up_email": FollowUpEmailDetails,
    "follow_up_sms": FollowUpSMSDetails,
    "follow_up_call": FollowUpCallDetails,
    "adjust_close_date": AdjustCloseDateDetails,
}


class SuggestedAction(CloseModel, kw_only=True):
    """Close's suggestion for the opportunity. ``details`` is the raw object as sent."""

    action: str | None = None
    justification: str | None = None
    details: dict[str, Any] | None = None

    @property
    def typed_details(self) -> SuggestedActionDetails | dict[str, Any] | None:
        """``details`` as the Struct matching ``action``; a plain dict for actions we don't know
        (or details that don't fit their action's shape), so nothing is lost."""
        cls = _DETAILS_BY_ACTION.get(self.action or "")
        if cls is None or self.details is None:
            return self.details
        try:
            return msgspec.convert(self.details, cls)
        except msgspec.ValidationError:
            return self.details


class Opportunity(CloseModel, kw_only=True):
    """An opportunity as Close returns it. ``value`` and its derivatives are in cents.

    ``custom`` holds every ``custom.*`` key of the response, keyed without the prefix (Close omits
    empty custom fields). Subclass it with fields renamed to ``custom.cf_...`` for typed custom
    fields: see ``decode_opportunity``.

    Instances from the decoder are of a subclass (same name) that also declares the custom keys
    seen so far, which is what lets one pass keep them all. ``isinstance`` checks, pickling and
    ``msgspec.json.encode`` (which writes the flat ``custom.*`` keys back) work as usual. Those
    from the decoder's fast path (a payload whose keys it has seen) are not tracked by Python's
    cycle collector (decoded JSON has no cycles, and tracking costs 5-9% of a small decode): do
    not make one refer to itself, or it is never freed.
    """

    id: str = ""
    organization_id: str | None = None
    lead_id: str | None = None
    lead_name: str | None = None
    status_id: str | None = None
    status_label: str | None = None
    status_display_name: str | None = None
    status_type: str | None = None
    pipeline_id: str | None = None
    pipeline_name: str | None = None
    value: int | None = None
    value_period: str | None = None
    value_currency: str | None = None
    value_formatted: str | None = None
    expected_value: int | None = None
    annualized_value: int | None = None
    annualized_expected_value: int | None = None
    confidence: int | None = None
    note: str | None = None
    contact_id: str | None = None
    contact_name: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    created_by: str | None = None
    created_by_name: str | None = None
    updated_by: str | None = None
    updated_by_name: str | None = None
    date_created: dt.datetime | None = None
    date_updated: dt.datetime | None = None
    date_won: dt.date | None = None
    date_lost: dt.datetime | None = None
    is_stalled: bool | None = None
    stall_status: StallStatus | None = None
    suggested_action: SuggestedAction | None = None
    comment_summary: CommentSummary | None = None
    lead_primary_email: ContactEmail | None = None
    lead_primary_phone: list[ContactPhone] | None = None
    integration_links: list[IntegrationLink] = []
    attachments: list[Attachment] = []

    @property
    def custom(self) -> dict[str, Any]:
        """Every ``custom.*`` key of the response, keyed by field id (``cf_...``).

        Built from the object's fields on each access, so decoding never pays for it (keep it in
        a variable to read it many times). It is a new dict each time: changing it leaves the
        object as it is.
        """
        extra: dict[str, Any] | None = getattr(self, "__dict__", None)
        if not extra:  # the usual case: instances of the decoder's fast type have no __dict__
            return _read_custom(self, ())
        custom = _read_custom(self, extra.get("_absent", ()))
        custom.update(extra.get("_undeclared", ()))
        return custom

    def __reduce__(self) -> tuple[Any, ...]:
        # Decoded instances are of a generated class that pickle cannot look up by name: rebuild
        # them through the decoder from the class the user knows.
        base = getattr(type(self), "_close_base", type(self))
        data = msgspec.to_builtins(self)
        absent = getattr(self, "__dict__", {}).get("_absent", ())
        for field in msgspec.structs.fields(self):
            if field.name in absent:  # a typed custom field that the payload did not have
                data.pop(field.encode_name, None)
        for field_id, value in self.custom.items():  # keys no Struct field could declare
            data.setdefault(_CUSTOM_PREFIX + field_id, value)
        return (_restore, (base, msgspec.json.encode(data)))

    def __copy__(self) -> Opportunity:
        # msgspec's own __copy__ would not carry which typed custom fields were absent.
        restore, args = self.__reduce__()
        clone: Opportunity = restore(*args)
        return clone


def _read_custom(opp: Opportunity, absent: Collection[str]) -> dict[str, Any]:
    cls = type(opp)
    # Kept on the class itself (its own __dict__: a subclass declares more fields), so that the
    # decoder's generated classes of past key sets are not held alive by a cache of ours.
    attrs: tuple[tuple[int, str, str], ...] | None = cls.__dict__.get("_close_custom")
    if attrs is None:
        attrs = tuple(
            (index, f.name, f.encode_name[len(_CUSTOM_PREFIX) :])
            for index, f in enumerate(msgspec.structs.fields(cls))
            if f.encode_name.startswith(_CUSTOM_PREFIX)
        )
        cls._close_custom = attrs  # type: ignore[attr-defined]
    values = msgspec.structs.astuple(opp)  # one C call, instead of a getattr per field
    return {
        field_id: values[index]
        for index, name, field_id in attrs
        if values[index] is not UNSET and name not in absent
    }


def _restore(cls: type[Opportunity], raw: bytes) -> Opportunity:
    from ._codec import decode_opportunity

    return decode_opportunity(raw, cls)


# The lead models live in their resource's folder, which imports this module: they are loaded
# on first use here, so that importing either module first works.
if TYPE_CHECKING:
    from ._resources.leads.models import CreateLead, Lead
else:

    def __getattr__(name: str) -> Any:
        if name in ("CreateLead", "Lead"):
            from ._resources.leads import models as _leads

            return getattr(_leads, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
