"""The lead resource: one folder (models, resource)."""

from __future__ import annotations

from .models import (
    CreateLead,
    Lead,
    LeadAddress,
    LeadContact,
    LeadContactURL,
)
from .resource import Leads

__all__ = [
    "CreateLead",
    "Lead",
    "LeadAddress",
    "LeadContact",
    "LeadContactURL",
    "Leads",
]
