"""Typed models of Close's payloads, as msgspec Structs (re-exported from their resources).

Every model derives from ``CloseModel``. Responses are decoded leniently (every field has a
default, unknown fields are ignored, enums are open); requests are strict: ``CreateOpportunity``
validates itself on construction and raises ``InvalidInputError`` naming the field and the value.
"""

from __future__ import annotations

from ._resources.base import CloseModel
from ._resources.leads.models import CreateLead, Lead
from ._resources.opportunities.requests import AttachmentIn, CreateOpportunity, ValuePeriod
from ._resources.opportunities.responses import (
    ActionItem,
    AdjustCloseDateDetails,
    Attachment,
    ChangeStatusDetails,
    CommentSummary,
    ContactEmail,
    ContactPhone,
    FollowUpCallDetails,
    FollowUpEmailDetails,
    FollowUpSMSDetails,
    IntegrationLink,
    Opportunity,
    StallStatus,
    SuggestedAction,
    SuggestedActionDetails,
)

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
