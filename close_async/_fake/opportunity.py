"""Private helpers of :mod:`close_async.testing`: validate and build fake Opportunities.

Self-contained (stdlib only) so the fake server never depends on the rest of the package.
"""

from __future__ import annotations

import datetime as _dt
import random
import string
from typing import Any

__all__ = [
    "LEAD_MISSING",
    "OPPORTUNITY_STATUSES",
    "authored",
    "build_opportunity",
    "custom_fields",
    "derive_values",
    "is_empty",
    "parse_date",
    "random_id",
    "validate_opportunity",
]

#: A ``lead_id`` the fake server treats as non-existent (answers Close's real 400 shape).
LEAD_MISSING = "lead_missing"

USER_ID = "user_" + "FakeCloseServerUser".ljust(43, "0")
USER_NAME = "Fake User"
STATUS_ID = "stat_" + "FakeCloseServerActive".ljust(43, "0")
WON_STATUS_ID = "stat_" + "FakeCloseServerWon".ljust(43, "0")
LOST_STATUS_ID = "stat_" + "FakeCloseServerLost".ljust(43, "0")
#: The opportunity statuses the fake knows: id -> (label, status_type). Any other ``status_id``
#: is accepted and shown as the first (``Active``), as the fake always did.
OPPORTUNITY_STATUSES = {
    STATUS_ID: ("Active", "active"),
    WON_STATUS_ID: ("Won", "won"),
    LOST_STATUS_ID: ("Lost", "lost"),
}
PIPELINE_ID = "pipe_" + "FakeCloseServerPipeline".ljust(43, "0")
PIPELINE_NAME = "Sales"
DEFAULT_ORGANIZATION_ID = "orga_" + "FakeCloseServerOrganization".ljust(43, "0")

_ALPHANUM = string.ascii_letters + string.digits
_rng = random.Random()
_VALUE_PERIODS = {"one_time": "", "monthly": " monthly", "annual": " annually"}
_STRING_FIELDS = ("lead_id", "status_id", "contact_id", "user_id", "note")
_NOT_INT = "Not a valid integer."
_UTC = _dt.timezone.utc


def random_id(prefix: str) -> str:
    """Return ``prefix`` followed by 43 random alphanumerics, like Close's object ids."""
    return prefix + "".join(_rng.choices(_ALPHANUM, k=43))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_date(value: object) -> str | None:
    """Return the ``YYYY-MM-DD`` part of a date/datetime string, or None if invalid."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            return _dt.date.fromisoformat(value).isoformat()
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        return _dt.datetime.fromisoformat(text).date().isoformat()
    except ValueError:
        return None


def validate_opportunity(data: dict[str, Any]) -> dict[str, str]:
    """Return Close-style ``field-errors`` (field name -> message); empty when valid."""
    errors: dict[str, str] = {}
    period = data.get("value_period")
    if period is not None and (not isinstance(period, str) or period not in _VALUE_PERIODS):
        errors["value_period"] = f'"{period}" is not a valid choice.'
    confidence = data.get("confidence")
    if confidence is not None:
        if not _is_int(confidence):
            errors["confidence"] = _NOT_INT
        elif not 0 <= confidence <= 100:
            errors["confidence"] = "Must be between 0 and 100."
    value = data.get("value")
    if value is not None and not _is_int(value):
        errors["value"] = _NOT_INT
    for field in _STRING_FIELDS:
        item = data.get(field)
        if item is not None and not isinstance(item, str):
            errors[field] = "Not a valid string."
    date_won = data.get("date_won")
    if date_won is not None and parse_date(date_won) is None:
        errors["date_won"] = "Not a valid date."
    if data.get("lead_id") == LEAD_MISSING:
        errors["lead"] = "Object does not exist."
    return errors


def format_value(value: int | None, period: str) -> str:
    """Close's ``value_formatted``: ``"$5,000 monthly"``, ``"$3,000"``, ``"$12.50 annually"``."""
    if value is None:
        return ""
    dollars, cents = divmod(abs(value), 100)
    sign = "-" if value < 0 else ""
    amount = f"{sign}${dollars:,}.{cents:02d}" if cents else f"{sign}${dollars:,}"
    return amount + _VALUE_PERIODS[period]


def is_empty(value: object) -> bool:
    return value is None or value == "" or value == [] or value == {}


def custom_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The flat ``custom.cf_*`` keys of a payload that an answer shows (empty ones omitted)."""
    return {k: v for k, v in data.items() if k.startswith("custom.cf_") and not is_empty(v)}


def authored(now: str) -> dict[str, Any]:
    """Who created and last updated an object, and when: the fake's one user, ``now``."""
    return {
        "created_by": USER_ID,
        "created_by_name": USER_NAME,
        "updated_by": USER_ID,
        "updated_by_name": USER_NAME,
        "date_created": now,
        "date_updated": now,
    }


def derive_values(opportunity: dict[str, Any]) -> None:
    """Set the fields Close computes from ``value``/``value_period``/``confidence``/status."""
    value: int | None = opportunity["value"]
    period: str = opportunity["value_period"]
    confidence: int = opportunity["confidence"]
    if value is None:
        expected = annualized = annualized_expected = None
    else:
        expected = value * confidence // 100
        annualized = value * 12 if period == "monthly" else value
        annualized_expected = annualized * confidence // 100
    label, status_type = OPPORTUNITY_STATUSES.get(
        opportunity["status_id"], OPPORTUNITY_STATUSES[STATUS_ID]
    )
    opportunity.update(
        value_formatted=format_value(value, period),
        expected_value=expected,
        annualized_value=annualized,
        annualized_expected_value=annualized_expected,
        status_label=label,
        status_display_name=label,
        status_type=status_type,
    )


def build_opportunity(
    data: dict[str, Any],
    organization_id: str,
    *,
    lead_name: str = "Sample Lead",
    now: str | None = None,
) -> dict[str, Any]:
    """Build the JSON object Close returns for a *valid* create payload ``data``.

    Without ``lead_id`` the lead is a new random id named "Untitled" (``FakeCloseServer`` passes
    the lead it created instead); ``now`` is ``date_created`` (default: the wall clock).
    """
    lead_id: str | None = data.get("lead_id")
    if lead_id is None:
        lead_id, lead_name = random_id("lead_"), "Untitled"
    contact_id: str | None = data.get("contact_id")
    user_id: str = data.get("user_id") or USER_ID
    date_won = data.get("date_won")
    if now is None:
        now = _dt.datetime.now(_UTC).isoformat(timespec="microseconds")
    opportunity: dict[str, Any] = {
        "id": random_id("oppo_"),
        "organization_id": organization_id,
        "lead_id": lead_id,
        "lead_name": lead_name,
        "lead_primary_email": None,
        "lead_primary_phone": None,
        "status_id": data.get("status_id") or STATUS_ID,
        "status_label": "Active",
        "status_display_name": "Active",
        "status_type": "active",
        "pipeline_id": PIPELINE_ID,
        "pipeline_name": PIPELINE_NAME,
        "value": data.get("value"),
        "value_period": data.get("value_period") or "one_time",
        "value_currency": "USD",
        "value_formatted": "",
        "confidence": data.get("confidence") or 0,
        "expected_value": None,
        "annualized_value": None,
        "annualized_expected_value": None,
        "note": data.get("note") or "",
        "contact_id": contact_id,
        "contact_name": None if contact_id is None else "Sample Contact",
        "user_id": user_id,
        "user_name": USER_NAME,
        **authored(now),
        "date_won": None if date_won is None else parse_date(date_won),
        "date_lost": None,
        "integration_links": [],
        "attachments": [],
        "is_stalled": False,
        "stall_status": None,
        "suggested_action": None,
        "comment_summary": None,
    }
    opportunity.update(custom_fields(data))
    derive_values(opportunity)
    return opportunity
