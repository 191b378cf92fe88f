"""Private helpers of :mod:`close_async.testing`: ``PUT /opportunity/{id}/`` (acts as a PATCH).

Self-contained (stdlib only) so the fake server never depends on the rest of the package.

Only the keys sent change; the body is validated as a create's is (Close's 400
``field-errors``, ``lead_id="lead_missing"`` included). ``"custom.cf_x": null`` (or an empty
value) removes that custom field from the record; ``value``, ``contact_id``, ``date_won`` may
be set to null. Keys the server computes or owns (``id``, ``organization_id``, ``date_created``,
``value_formatted``, ...) are ignored, as Close ignores read-only fields. The derived values
(``value_formatted``, ``expected_value``, ``annualized_*``, the status label and type) are
recomputed, ``date_updated`` moves to now, and moving to a ``won`` status without ``date_won``
sets it to today (UTC). The answer is the full object.
"""

from __future__ import annotations

from typing import Any

from .opportunity import (
    OPPORTUNITY_STATUSES,
    STATUS_ID,
    derive_values,
    is_empty,
    parse_date,
    validate_opportunity,
)

__all__ = ["NOT_FOUND", "UPDATABLE", "update_opportunity", "validate_update"]

#: Close's 404 body for an opportunity id it does not know (GET, PUT and DELETE alike).
NOT_FOUND = {"error": "Empty query: Opportunity matching query does not exist."}

#: The keys a PUT may change (besides ``custom.cf_*``).
UPDATABLE = (
    "lead_id",
    "status_id",
    "value",
    "value_period",
    "confidence",
    "note",
    "contact_id",
    "user_id",
    "date_won",
)
_DEFAULTS: dict[str, Any] = {"status_id": STATUS_ID, "value_period": "one_time", "confidence": 0}
_DEFAULTS["note"] = ""


def validate_update(data: dict[str, Any]) -> dict[str, str]:
    """Close-style ``field-errors`` of a PUT body: a create's, and ``lead_id`` not null."""
    errors = validate_opportunity(data)
    if "lead_id" in data and data["lead_id"] is None:
        errors["lead"] = "This field may not be null."
    return errors


def update_opportunity(
    opportunity: dict[str, Any], data: dict[str, Any], *, lead_name: str | None, now: str
) -> None:
    """Apply a *valid* PUT body ``data`` to the stored ``opportunity`` in place.

    ``lead_name``: the display name of the lead ``data`` moves it to (None: keep the name).
    """
    for key, item in data.items():
        if key.startswith("custom.cf_"):
            if is_empty(item):
                opportunity.pop(key, None)
            else:
                opportunity[key] = item
        elif key in UPDATABLE:
            if key == "date_won" and item is not None:
                item = parse_date(item)
            opportunity[key] = _DEFAULTS.get(key) if item is None else item
    if "lead_id" in data and lead_name is not None:
        opportunity["lead_name"] = lead_name
    if "contact_id" in data:
        opportunity["contact_name"] = None if data["contact_id"] is None else "Sample Contact"
    if "status_id" in data:
        _, status_type = OPPORTUNITY_STATUSES.get(
            opportunity["status_id"], OPPORTUNITY_STATUSES[STATUS_ID]
        )
        if status_type == "won" and opportunity["date_won"] is None:
            opportunity["date_won"] = now[:10]
    derive_values(opportunity)
    opportunity["date_updated"] = now
