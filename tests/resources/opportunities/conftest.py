"""Fixtures of the opportunity tests: payloads shaped like Close's real ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from close_async._fake.samples import RECORD_2021, RESPONSE_2017, full_opportunity


@pytest.fixture
def response_2017() -> bytes:
    return msgspec.json.encode(RESPONSE_2017)


@pytest.fixture
def record_2021() -> bytes:
    return RECORD_2021


@pytest.fixture
def full_payload() -> dict[str, Any]:
    return full_opportunity()


@pytest.fixture
def make_opportunity() -> Callable[..., dict[str, Any]]:
    """``make_opportunity(custom_fields=N)``: a full Opportunity payload as a dict."""
    return full_opportunity
