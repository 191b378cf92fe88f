"""Models: every field of the seed's schemas, lenient responses, strict requests."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from close_async import InvalidInputError
from close_async.models import (
    AdjustCloseDateDetails,
    AttachmentIn,
    ChangeStatusDetails,
    CreateOpportunity,
    FollowUpCallDetails,
    FollowUpEmailDetails,
    FollowUpSMSDetails,
    Opportunity,
    SuggestedAction,
)

UTC = dt.timezone.utc

SEED_CREATE_FIELDS = {
    "attachments",
    "confidence",
    "contact_id",
    "created_by",
    "custom_fields",
    "date_created",
    "date_won",
    "lead_id",
    "note",
    "status_id",
    "user_id",
    "value",
    "value_period",
}
SEED_OPPORTUNITY_FIELDS = {
    "annualized_expected_value",
    "annualized_value",
    "attachments",
    "comment_summary",
    "confidence",
    "contact_id",
    "contact_name",
    "created_by",
    "created_by_name",
    "date_created",
    "date_lost",
    "date_updated",
    "date_won",
    "expected_value",
    "id",
    "integration_links",
    "is_stalled",
    "lead_id",
    "lead_name",
    "lead_primary_email",
    "lead_primary_phone",
    "note",
    "organization_id",
    "pipeline_id",
    "pipeline_name",
    "stall_status",
    "status_display_name",
    "status_id",
    "status_label",
    "status_type",
    "suggested_action",
    "updated_by",
    "updated_by_name",
    "user_id",
    "user_name",
    "value",
    "value_currency",
    "value_formatted",
    "value_period",
}


def test_create_models_every_seed_field() -> None:
    assert set(CreateOpportunity.__struct_fields__) == SEED_CREATE_FIELDS | {"custom"}


def test_opportunity_models_every_seed_field() -> None:
    assert set(Opportunity.__struct_fields__) == SEED_OPPORTUNITY_FIELDS
    assert Opportunity(id="oppo_1").custom == {}  # a property, derived from custom.* fields


def test_every_response_field_has_a_default() -> None:
    assert Opportunity() == Opportunity(id="")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"value_period": "weekly"}, "value_period", id="value_period-not-in-enum"),
        pytest.param({"confidence": 101}, "confidence", id="confidence-above-100"),
        pytest.param({"confidence": -1}, "confidence", id="confidence-below-0"),
        pytest.param({"confidence": True}, "confidence", id="confidence-bool"),
        pytest.param({"confidence": 50.0}, "confidence", id="confidence-float"),
        pytest.param({"value": 10.5}, "value", id="value-float"),
        pytest.param({"value": False}, "value", id="value-bool"),
        pytest.param({"value": "1000"}, "value", id="value-string"),
        pytest.param({"lead_id": 123}, "lead_id", id="lead_id-int"),
        pytest.param({"lead_id": ""}, "lead_id", id="lead_id-empty"),
        pytest.param({"status_id": ["stat_x"]}, "status_id", id="status_id-list"),
        pytest.param({"contact_id": 1}, "contact_id", id="contact_id-int"),
        pytest.param({"user_id": 1}, "user_id", id="user_id-int"),
        pytest.param({"created_by": 1}, "created_by", id="created_by-int"),
        pytest.param({"note": 12}, "note", id="note-int"),
        pytest.param({"date_won": "2024-01-01"}, "date_won", id="date_won-string"),
        pytest.param(
            {"date_created": dt.datetime(2024, 1, 1)}, "date_created", id="date_created-naive"
        ),
        pytest.param({"custom": ["cf_x"]}, "custom", id="custom-not-dict"),
        pytest.param({"custom": {"tier": 1}}, "custom", id="custom-key-not-cf"),
        pytest.param({"custom": {"custom.cf_x": 1}}, "custom", id="custom-key-prefixed"),
        pytest.param({"custom": {1: 1}}, "custom", id="custom-key-int"),
        pytest.param({"custom": {"cf_": 1}}, "custom", id="custom-key-bare-prefix"),
        pytest.param({"custom": {"cf_x": float("nan")}}, "custom.cf_x", id="custom-value-nan"),
        # msgspec writes NaN and infinity as null (the field would be cleared), however deep.
        pytest.param(
            {"custom": {"cf_x": [1.5, {"a": float("inf")}]}}, "custom.cf_x", id="custom-nested-inf"
        ),
        pytest.param(
            {"custom_fields": {"Tier": (float("-inf"),)}},
            "custom_fields.Tier",
            id="custom_fields-nested-inf",
        ),
        pytest.param(
            {"custom": {"cf_when": dt.datetime(2024, 1, 1)}}, "custom.cf_when", id="custom-naive"
        ),
        pytest.param({"custom_fields": ["x"]}, "custom_fields", id="custom_fields-list"),
        pytest.param({"attachments": {"url": "u"}}, "attachments", id="attachments-dict"),
        pytest.param({"attachments": [{"url": "u"}]}, "attachments[0]", id="attachment-dict"),
        pytest.param(
            {"attachments": [AttachmentIn(url="u", filename=3)]},  # type: ignore[arg-type]
            "attachments[0].filename",
            id="attachment-filename-int",
        ),
    ],
)
def test_bad_input_names_field_and_value(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        CreateOpportunity(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert isinstance(info.value, ValueError)
    assert field in str(info.value)
    assert repr(info.value.value) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="empty"),
        pytest.param({"value_period": None, "confidence": None, "value": None}, id="nulls"),
        pytest.param({"value_period": "annual", "confidence": 0, "value": 0}, id="bounds-low"),
        pytest.param({"confidence": 100, "value": 10**12}, id="bounds-high"),
        pytest.param({"date_won": dt.date(2024, 5, 1)}, id="date_won-date"),
        pytest.param({"date_won": dt.datetime(2024, 5, 1, tzinfo=UTC)}, id="date_won-aware"),
        pytest.param({"custom": {"cf_a": ["x", "y"], "cf_b": None}}, id="custom-list-and-null"),
        pytest.param({"attachments": [AttachmentIn(url="u", filename="f")]}, id="attachments"),
    ],
)
def test_good_input_is_accepted(kwargs: dict[str, object]) -> None:
    CreateOpportunity(**kwargs)  # type: ignore[arg-type]


def test_create_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        CreateOpportunity("lead_x")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("action", "details", "expected"),
    [
        pytest.param(
            "change_status",
            {"status_id": "stat_1"},
            ChangeStatusDetails(status_id="stat_1"),
            id="status",
        ),
        pytest.param(
            "follow_up_email",
            {"contact_id": "cont_1", "subject_draft": "Hi", "message_draft": "..."},
            FollowUpEmailDetails(contact_id="cont_1", subject_draft="Hi", message_draft="..."),
            id="email",
        ),
        pytest.param(
            "follow_up_sms",
            {"contact_id": "cont_1", "message_draft": "yo"},
            FollowUpSMSDetails(contact_id="cont_1", message_draft="yo"),
            id="sms",
        ),
        pytest.param(
            "follow_up_call",
            {"contact_id": "cont_1", "call_plan": "ask"},
            FollowUpCallDetails(contact_id="cont_1", call_plan="ask"),
            id="call",
        ),
        pytest.param(
            "adjust_close_date",
            {"close_date": "2025-01-31"},
            AdjustCloseDateDetails(close_date=dt.date(2025, 1, 31)),
            id="close-date",
        ),
        pytest.param("teleport", {"where": "mars"}, {"where": "mars"}, id="unknown-action"),
        pytest.param(
            "adjust_close_date", {"close_date": 5}, {"close_date": 5}, id="details-not-fitting"
        ),
        pytest.param("change_status", None, None, id="no-details"),
        pytest.param(None, {"a": 1}, {"a": 1}, id="no-action"),
    ],
)
def test_suggested_action_typed_details(
    action: str | None, details: object, expected: object
) -> None:
    raw = msgspec.json.encode({"action": action, "details": details, "justification": "why"})
    suggested = msgspec.json.decode(raw, type=SuggestedAction)
    assert suggested.details == details
    assert suggested.typed_details == expected


def test_change_status_details_positional_is_not_allowed() -> None:
    # kw_only is shared by every model through CloseModel.
    with pytest.raises(TypeError):
        ChangeStatusDetails("stat_1")  # type: ignore[misc]
