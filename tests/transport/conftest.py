"""Fixtures of the transport tests: the fake loop clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.clock import FakeClock


@pytest.fixture
async def fake_clock() -> AsyncIterator[FakeClock]:
    """The running loop's clock, frozen and moved by hand (see FakeClock)."""
    with FakeClock() as clock:
        yield clock
