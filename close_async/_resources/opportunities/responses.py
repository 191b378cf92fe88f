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
from ..contacts import ContactEmail, ContactPhone
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
    """A file attached to the opportunity."""

    url: str | None = None
    """Where to download the file."""
    filename: str | None = None
    """The file's name."""
    content_type: str | None = None
    """Its MIME type."""
    size: int | None = None
    """Its size in bytes."""
    thumbnail_url: str | None = None
    """A preview image of it, for images."""


class CommentSummary(CloseModel, kw_only=True):
    """The opportunity's comments: how many, and their thread."""

    comment_count: int = 0
    """How many comments the opportunity has."""
    thread_id: str | None = None
    """The id of their comment thread."""


class IntegrationLink(CloseModel, kw_only=True):
    """A rendered integration link (``RenderedIntegrationLink`` in the schema)."""

    name: str | None = None
    """The link's label."""
    url: str | None = None
    """Its target, rendered for this opportunity."""


class ActionItem(CloseModel, kw_only=True):
    """The next step recommended for a stalled opportunity (``action`` is an open enum)."""

    action: str | None = None
    """The step recommended, e.g. ``follow_up_email`` (an open enum)."""
    justification: str | None = None
    """Why Close recommends it."""


class StallStatus(CloseModel, kw_only=True):
    """Why an opportunity is stalled (``StalledOpportunityActionItems`` in the schema)."""

    communication_issue: str | None = None
    """What went wrong: ``no_issue``, ``cant_get_in_touch`` or
    ``no_communication_attempts`` (an open enum: Close may add values)."""
    next_action: ActionItem | None = None
    """The step Close recommends next."""


class ChangeStatusDetails(CloseModel, kw_only=True):
    """The details of a ``change_status`` suggestion."""

    status_id: str | None = None
    """The status to move the opportunity to (``stat_...``)."""


class FollowUpEmailDetails(CloseModel, kw_only=True):
    """The details of a ``follow_up_email`` suggestion: a draft to send."""

    contact_id: str | None = None
    """The contact to email (``cont_...``)."""
    subject_draft: str | None = None
    """A suggested subject."""
    message_draft: str | None = None
    """A suggested message."""


class FollowUpSMSDetails(CloseModel, kw_only=True):
    """The details of a ``follow_up_sms`` suggestion: a draft to send."""

    contact_id: str | None = None
    """The contact to text (``cont_...``)."""
    message_draft: str | None = None
    """A suggested message."""


class FollowUpCallDetails(CloseModel, kw_only=True):
    """The details of a ``follow_up_call`` suggestion."""

    contact_id: str | None = None
    """The contact to call (``cont_...``)."""
    call_plan: str | None = None
    """A suggested plan for the call."""


class AdjustCloseDateDetails(CloseModel, kw_only=True):
    """The details of an ``adjust_close_date`` suggestion."""

    close_date: dt.date | None = None
    """The suggested new expected close date."""


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
    """Which action: ``change_status``, ``adjust_close_date``, ``follow_up_email``,
    ``follow_up_call`` or ``follow_up_sms`` (an open enum)."""
    justification: str | None = None
    """Why Close suggests it."""
    details: dict[str, Any] | None = None
    """The action's details as sent (``typed_details`` gives them as a Struct)."""

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
    """Its id (``oppo_...``); never empty in a decoded response."""
    organization_id: str | None = None
    """The organization it belongs to (``orga_...``)."""
    lead_id: str | None = None
    """Its lead (``lead_...``)."""
    lead_name: str | None = None
    """The lead's display name."""
    status_id: str | None = None
    """Its status (``stat_...``)."""
    status_label: str | None = None
    """The status's label, e.g. ``Active``."""
    status_display_name: str | None = None
    """The status's name as Close's app shows it."""
    status_type: str | None = None
    """The status's kind: ``active``, ``won`` or ``lost`` (an open enum)."""
    pipeline_id: str | None = None
    """The pipeline of its status (``pipe_...``)."""
    pipeline_name: str | None = None
    """That pipeline's name."""
    value: int | None = None
    """The value in cents."""
    value_period: str | None = None
    """How often the value is paid: ``one_time``, ``monthly`` or ``annual`` (a plain
    ``str``, so that a period Close adds later still decodes)."""
    value_currency: str | None = None
    """The value's currency, an ISO 4217 code such as ``USD``."""
    value_formatted: str | None = None
    """The value as Close displays it, e.g. ``$5,000 monthly``."""
    expected_value: int | None = None
    """``value`` weighted by ``confidence``, in cents."""
    annualized_value: int | None = None
    """``value`` over a year (twelve times a monthly value), in cents."""
    annualized_expected_value: int | None = None
    """``annualized_value`` weighted by ``confidence``, in cents."""
    confidence: int | None = None
    """How likely it is to be won, in percent: 0 to 100."""
    note: str | None = None
    """Free text shown on the opportunity."""
    contact_id: str | None = None
    """Its contact (``cont_...``)."""
    contact_name: str | None = None
    """The contact's name."""
    user_id: str | None = None
    """The user who owns it (``user_...``)."""
    user_name: str | None = None
    """The owner's name."""
    created_by: str | None = None
    """The user who created it (``user_...``)."""
    created_by_name: str | None = None
    """That user's name."""
    updated_by: str | None = None
    """The user who changed it last (``user_...``)."""
    updated_by_name: str | None = None
    """That user's name."""
    date_created: dt.datetime | None = None
    """When it was created (timezone-aware: a timestamp sent without a zone is UTC)."""
    date_updated: dt.datetime | None = None
    """When it was last changed (timezone-aware)."""
    date_won: dt.date | None = None
    """The day it was won (a date, without a time)."""
    date_lost: dt.datetime | None = None
    """When it was lost (timezone-aware)."""
    is_stalled: bool | None = None
    """Whether Close considers it stalled (``stall_status`` says why)."""
    stall_status: StallStatus | None = None
    """Why it is stalled and the step Close recommends, when it is."""
    suggested_action: SuggestedAction | None = None
    """The next action Close suggests for it, if any."""
    comment_summary: CommentSummary | None = None
    """How many comments it has, and their thread."""
    lead_primary_email: ContactEmail | None = None
    """The lead's primary email address."""
    lead_primary_phone: list[ContactPhone] | None = None
    """The lead's primary phone numbers."""
    integration_links: list[IntegrationLink] = []
    """Links rendered by the organization's integrations."""
    attachments: list[Attachment] = []
    """The files attached to it."""
