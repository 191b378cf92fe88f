"""A create without lead_id makes Close create an "Untitled" lead: said once per client."""

from __future__ import annotations

import logging

import pytest
from aioresponses import aioresponses

from close_async import AsyncCloseClient

OPP_URL = "https://api.close.com/api/v1/opportunity/"


async def test_a_create_without_lead_id_warns_once_per_client(
    mock_http: aioresponses, response_2017: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    mock_http.post(OPP_URL, body=response_2017, repeat=True)
    caplog.set_level(logging.WARNING, logger="close_async")
    async with AsyncCloseClient("k") as close:
        await close.opportunities.create(value=1)
        await close.opportunities.create(value=2)
        await close.opportunities.create_many([{"value": 3}])
    async with AsyncCloseClient("k") as other:
        await other.opportunities.create(value=4)
    warnings = [r for r in caplog.records if "Untitled" in r.getMessage()]
    assert len(warnings) == 2  # one per client
    assert all(r.levelno == logging.WARNING for r in warnings)


async def test_a_create_with_lead_id_says_nothing(
    mock_http: aioresponses, response_2017: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    mock_http.post(OPP_URL, body=response_2017)
    caplog.set_level(logging.WARNING, logger="close_async")
    async with AsyncCloseClient("k") as close:
        await close.opportunities.create(lead_id="lead_1", value=1)
    assert not [r for r in caplog.records if "Untitled" in r.getMessage()]
