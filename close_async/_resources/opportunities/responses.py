"""Typed models of Close's opportunity responses, as msgspec Structs.

Decoded leniently: every field has a default (real responses omit fields the OpenAPI schema calls
required), unknown fields are ignored, and enums are open (a value Close adds tomorrow decodes as a
plain ``str``). ``Opportunity.custom`` and pickling come from ``CustomFieldsModel``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias

import msgspec

from ..base import CloseModel
from ..custom import CustomFieldsModel

__all__ = [
    "ActionItem",
    "AdjustCloseDateDetails",
    "Attachment",
    "ChangeStatusDetails",
    "CommentSummary",
    "ContactEmail",
    "ContactPhone",
    "FollowUpCallDetails",
    "FollowUpEmailDetails",
    "FollowUpSMSDetails",
    "IntegrationLink",
    "Opportunity",
    "StallStatus",
    "SuggestedAction",
    "SuggestedActionDetails",
]

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


class Opportunity(CustomFieldsModel, kw_only=True):
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
