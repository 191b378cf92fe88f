"""Fixtures of the transport tests: the fake loop clock (``fake_clock`` at the loop's own time,
``clock`` at a round ``T0``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.clock import T0, FakeClock


@pytest.fixture
async def fake_clock() -> AsyncIterator[FakeClock]:
    """The running loop's clock, frozen and moved by hand (see FakeClock)."""
    with FakeClock() as clock:
        yield clock


@pytest.fixture
async def clock() -> AsyncIterator[FakeClock]:
    """The loop's clock, frozen at a round T0 (so sums of binary fractions stay exact)."""
    with FakeClock(T0) as fake:
        yield fake
