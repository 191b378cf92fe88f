"""Shared by the benchmarks: the Opportunity payloads they decode (shaped like Close's real
responses), machine info and writing a report as JSON.

The benchmarks never import from ``tests/``: the real-shaped payloads both decode live in
``close_async._fake.samples`` (``RESPONSE_2017``, ``full_opportunity``).

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

from close_async._fake.samples import RESPONSE_2017, full_opportunity

CUSTOM_PREFIX = "custom."

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
