"""Shared by the benchmarks: the Opportunity payloads they decode (shaped like Close's real
responses), machine info and writing a report as JSON.

Self-contained on purpose (the benchmarks never import from ``tests/``); the full payload mirrors
``full_opportunity()`` in ``tests/support/payloads.py`` field for field.

Three payloads, from the issue:

* ``minimal``: only the fields every real response carries (a small, old-style response).
* ``typical``: a full create response with no custom fields: every top-level field present, the
  nested objects null or empty (what Close, and FakeCloseServer, answer to a plain create).
* ``full_custom20``: every field filled, with nested stall status, suggested action, attachments,
  phones, links, and 20 custom fields of string, number and list values.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import msgspec

CUSTOM_PREFIX = "custom."

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

_MINIMAL_KEYS = (
    "id",
    "organization_id",
    "lead_id",
    "status_id",
    "status_type",
    "value",
    "value_period",
    "value_currency",
    "confidence",
    "user_id",
    "date_created",
    "date_updated",
)


def minimal_opportunity() -> dict[str, Any]:
    """The fields every real response carries, and nothing else."""
    return {key: RESPONSE_2017[key] for key in _MINIMAL_KEYS}


def typical_opportunity() -> dict[str, Any]:
    """A full create response with no custom fields: every top-level field, nested ones empty."""
    payload = dict(RESPONSE_2017)
    payload.update(
        {
            "annualized_value": 6000,
            "annualized_expected_value": 5400,
            "expected_value": 450,
            "is_stalled": False,
            "pipeline_id": "pipe_1",
            "pipeline_name": "Sales",
            "status_display_name": "Active",
            "attachments": [],
            "comment_summary": None,
            "lead_primary_email": None,
            "lead_primary_phone": None,
            "stall_status": None,
            "suggested_action": None,
            "updated_by": "user_CwSfS8J6DsD6tnAsUwNFKCpS7Tq9LVCgJvHapOcpWyW",
        }
    )
    return payload


def full_opportunity(custom_fields: int = 20) -> dict[str, Any]:
    """Every field of Opportunity, nested objects filled, and ``custom_fields`` custom fields of
    string, number and list values (the same payload as the test suite's ``full_opportunity``)."""
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


def custom_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload's custom fields keyed without the prefix, as ``Opportunity.custom`` has them."""
    return {
        key[len(CUSTOM_PREFIX) :]: value
        for key, value in payload.items()
        if key.startswith(CUSTOM_PREFIX)
    }


#: name -> (description, payload as a dict)
PAYLOADS: dict[str, tuple[str, dict[str, Any]]] = {
    "minimal": ("minimal: required fields only", minimal_opportunity()),
    "typical": ("typical: full response, no custom fields", typical_opportunity()),
    "full_custom20": (
        "full: nested objects, attachments, 20 custom fields",
        full_opportunity(20),
    ),
}


def encoded(name: str) -> bytes:
    """A payload as the JSON bytes a server would send."""
    return msgspec.json.encode(PAYLOADS[name][1])


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (where the OS has them): how busy the machine was."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict[str, Any]:
    """Where a benchmark ran: interpreter, OS, CPU, load and the libraries that matter."""
    libs: dict[str, str | None] = {}
    for dist in ("close-async", "msgspec", "aiohttp", "pydantic", "orjson", "closeio", "requests"):
        try:
            libs[dist] = version(dist)
        except PackageNotFoundError:
            libs[dist] = None
    cpu_model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu_model = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                None,
            )
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model or platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "versions": libs,
    }


def write_report(path: str | Path, report: dict[str, Any]) -> Path:
    """Write a benchmark's report as indented JSON (its folder created if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
