"""Private helpers of :mod:`close_async.testing`: validate and build fake Leads.

Self-contained (stdlib only) so the fake server never depends on the rest of the package.

``POST /lead/`` takes ``name``, ``status_id`` or ``status_label`` (``status`` too, as Close's
older clients send it), ``description``, ``url``, ``contacts`` (objects with ``name``,
``title``, ``emails`` and ``phones`` lists of ``{"email"|"phone": ..., "type": ...}``),
``addresses`` and flat ``custom.cf_*`` keys (empty ones omitted from the answer, as for
opportunities). A lead without a name is displayed "Untitled". Statuses: ``LEAD_STATUSES``
(label -> id); a label the organisation does not have answers Close's 400
``{"field-errors": {"status": "Not a valid choice. ..."}}``, and so does ``status_id`` equal to
``STATUS_MISSING``; any other ``status_id`` is accepted and labelled ``Potential``.
"""

from __future__ import annotations

from typing import Any

from .opportunity import USER_ID, authored, custom_fields, random_id

__all__ = ["LEAD_STATUSES", "STATUS_MISSING", "build_lead", "validate_lead"]

#: A ``status_id`` the fake treats as not one of the organisation's lead statuses.
STATUS_MISSING = "stat_missing"

#: The organisation's lead statuses: label -> id (the first is the default).
LEAD_STATUSES = {
    label: "stat_" + f"FakeCloseServerLead{label.replace(' ', '')}".ljust(43, "0")
    for label in ("Potential", "Bad Fit", "Qualified", "Customer")
}
_LABEL_OF = {status_id: label for label, status_id in LEAD_STATUSES.items()}
_TEXT_FIELDS = ("name", "description", "url", "status_id", "status_label", "status")
_NOT_A_LIST = "Not a valid list."


def _not_a_choice(label: object) -> str:
    return (
        "Not a valid choice. Please go to Customizations in your organization settings and"
        f' add "{label}" to the list of lead statuses.'
    )


def validate_lead(data: dict[str, Any]) -> dict[str, str]:
    """Return Close-style ``field-errors`` (field name -> message); empty when valid."""
    errors: dict[str, str] = {}
    for field in _TEXT_FIELDS:
        item = data.get(field)
        if item is not None and not isinstance(item, str):
            errors[field] = "Not a valid string."
    label = data.get("status_label", data.get("status"))
    if isinstance(label, str) and label not in LEAD_STATUSES:
        errors["status"] = _not_a_choice(label)
    if data.get("status_id") == STATUS_MISSING:
        errors["status"] = _not_a_choice(STATUS_MISSING)
    for field in ("contacts", "addresses"):
        items = data.get(field)
        if items is not None and (
            not isinstance(items, list) or not all(isinstance(i, dict) for i in items)
        ):
            errors[field] = _NOT_A_LIST
    return errors


def _contact(data: dict[str, Any], lead_id: str, organization_id: str, now: str) -> dict[str, Any]:
    name = data.get("name") or ""
    return {
        "id": random_id("cont_"),
        "lead_id": lead_id,
        "organization_id": organization_id,
        "name": name,
        "display_name": name,
        "title": data.get("title") or "",
        "emails": list(data.get("emails") or []),
        "phones": list(data.get("phones") or []),
        "urls": list(data.get("urls") or []),
        "created_by": USER_ID,
        "updated_by": USER_ID,
        "date_created": now,
        "date_updated": now,
    }


def build_lead(data: dict[str, Any], organization_id: str, *, now: str) -> dict[str, Any]:
    """Build the JSON object Close returns for a *valid* lead payload ``data``."""
    lead_id = random_id("lead_")
    label = data.get("status_label") or data.get("status")
    status_id = data.get("status_id") or LEAD_STATUSES[label or "Potential"]
    label = label or _LABEL_OF.get(status_id, "Potential")
    name = data.get("name")
    contacts = [_contact(c, lead_id, organization_id, now) for c in data.get("contacts") or []]
    return {
        "id": lead_id,
        "organization_id": organization_id,
        "name": name,
        "display_name": name or "Untitled",
        "description": data.get("description") or "",
        "url": data.get("url"),
        "status_id": status_id,
        "status_label": label,
        "contacts": contacts,
        "addresses": list(data.get("addresses") or []),
        "opportunities": [],
        "tasks": [],
        "integration_links": [],
        "html_url": f"https://app.close.com/lead/{lead_id}/",
        **authored(now),
        **custom_fields(data),
    }
