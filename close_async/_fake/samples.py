"""Payloads shaped like Close's real ones (from public cassettes and records, not copied).

Private: the test suite (``tests/resources/opportunities/conftest.py``) and the benchmarks
(``benchmarks/payloads.py``) decode these, so both measure and check one shape. Nothing in the
SDK itself uses them.
"""

from __future__ import annotations

from typing import Any

# The shape of a real 2017 create response (closex VCR cassette): no annualized_* or
# expected_value, date_won null, microsecond timestamps with an offset.
RESPONSE_2017: dict[str, Any] = {
    "date_updated": "2017-09-29T11:07:23.962000+00:00",
    "created_by_name": "API User (DO NOT DELETE)",
    "value_currency": "USD",
    "contact_id": None,
    "lead_name": "Luke Skywalker",
    "contact_name": None,
    "id": "oppo_otkBudcuHXq90sC43gex0ddp5XYQjvKndlOGMHjE9Ph",
    "confidence": 90,
    "user_id": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
    "value_period": "monthly",
    "created_by": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
    "note": "i hope this deal closes...",
    "updated_by_name": "API User (DO NOT DELETE)",
    "user_name": "API User (DO NOT DELETE)",
    "status_type": "active",
    "updated_by": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
    "status_id": "stat_vQWQtofUTvlcdgo1R1lsauc5Inez29fxk0SEOKC8qBg",
    "value_formatted": "$5 monthly",
    "organization_id": "orga_CC25dsMNG4KsRpxn2LEwPUVyGRs4poLYFIBsioIK4Oj",
    "integration_links": [],
    "date_won": None,
    "lead_id": "lead_ibiNeZe7yE0ZoJZQUKm0Eymg0nxDH2xb5fHg8IzBsAm",
    "date_lost": None,
    "value": 500,
    "status_label": "Active",
    "date_created": "2017-09-29T11:07:23.962000+00:00",
}

# A 2021 record (airbyte's expected records): date_won as a date, the annualized fields present,
# a non-ASCII character escaped the way Python's json.dumps writes it.
RECORD_2021 = (
    b'{"date_won": "2021-07-16", "date_created": "2021-07-13T11:39:04.817000+00:00", '
    b'"date_updated": "2021-07-13T11:39:04.817000+00:00", "date_lost": null, "contact_id": null, '
    b'"value": 300000, "user_name": "Airbyte Team", "status_type": "active", "confidence": 75, '
    b'"note": "Gob\'s ready to buy a $3,000 suit.", "value_currency": "USD", '
    b'"integration_links": [], "expected_value": 225000, "status_display_name": "Demo Completed",'
    b' "annualized_value": 300000, "value_formatted": "$3,000", '
    b'"lead_name": "Bluth Company (Example\\u00a0Lead)", "status_label": "Demo Completed", '
    b'"value_period": "one_time", "annualized_expected_value": 225000, '
    b'"organization_id": "orga_ya3w9oMjeLtWe7zFGZr63Dz8ruBbjybG0EIUdUXaESi", '
    b'"lead_id": "lead_p7HyK4BZKAZJH2m8AAhFpcla2E0fDa6TACgU8KWv7o2", '
    b'"id": "oppo_NkKuhUWfDoErNArh44hw7jkkx7sCl5bhlamtezmX7BE", '
    b'"custom.cf_Qj3b4cWxvmvqTtZ0U5TaprRDah8g7jRsavfVh8NCPcu": "2022-12-01"}'
)


def full_opportunity(custom_fields: int = 20) -> dict[str, Any]:
    """Every field of the seed's Opportunity, nested objects filled, and ``custom_fields``
    custom fields of string, number and list values."""
    payload = dict(RESPONSE_2017)
    payload.update(
        {
            "annualized_value": 6000,
            "annualized_expected_value": 5400,
            "expected_value": 450,
            "date_won": "2021-07-16",
            "is_stalled": True,
            "pipeline_id": "pipe_1",
            "pipeline_name": "Sales",
            "status_display_name": "Active",
            "attachments": [
                {
                    "url": "https://files/a.pdf",
                    "filename": "a.pdf",
                    "content_type": "application/pdf",
                    "size": 1024,
                    "thumbnail_url": None,
                }
            ],
            "comment_summary": {"comment_count": 2, "thread_id": "cmth_1"},
            "integration_links": [{"name": "LinkedIn", "url": "https://linkedin/x"}],
            "lead_primary_email": {"email": "a@b.c", "type": "office", "is_unsubscribed": False},
            "lead_primary_phone": [
                {
                    "phone": "+14156236785",
                    "phone_formatted": "+1 415-623-6785",
                    "type": "office",
                    "country": "US",
                    "outbound_sms_blocked": False,
                    "tz_ids": ["America/Los_Angeles"],
                }
            ],
            "stall_status": {
                "communication_issue": "cant_get_in_touch",
                "next_action": {"action": "follow_up", "justification": "No reply in 2 weeks."},
            },
            "suggested_action": {
                "action": "follow_up_email",
                "details": {"contact_id": "cont_1", "subject_draft": "Hi", "message_draft": "..."},
                "justification": "They asked for pricing.",
            },
        }
    )
    for i in range(custom_fields):
        kinds: list[Any] = [f"text {i}", i * 1.5, [f"choice {i}", "other"]]
        payload[f"custom.cf_{i:02d}abcdefghijklmnopqrstuvwxyz0123456789AB"] = kinds[i % 3]
    return payload
