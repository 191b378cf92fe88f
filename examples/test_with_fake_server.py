"""Testing your own code against FakeCloseServer, with pytest and pytest-asyncio.

    pytest examples/test_with_fake_server.py

(``asyncio_mode = "auto"`` is set in this project's pytest configuration; without it, mark each
test with ``@pytest.mark.asyncio``.)
"""

import pytest

from close_async import AsyncCloseClient, ServerError
from close_async.testing import FakeCloseServer


@pytest.fixture
async def close_server():
    async with FakeCloseServer(rate_limit=100, window=1.0) as server:
        yield server


async def test_creates_one_opportunity(close_server):
    async with AsyncCloseClient("test-key", base_url=close_server.base_url) as close:
        opp = await close.opportunities.create(lead_id="lead_1", value=1000)
    assert [o["id"] for o in close_server.created] == [opp.id]
    assert close_server.created[0]["value_formatted"] == "$10"


async def test_a_504_is_reported_not_retried(close_server):
    close_server.fail_next("504")
    async with AsyncCloseClient("test-key", base_url=close_server.base_url) as close:
        with pytest.raises(ServerError) as caught:
            await close.opportunities.create(lead_id="lead_1")
    assert caught.value.may_have_succeeded  # Close may have created it: we were not told
    assert len(close_server.requests) == 1  # and it was not sent again


async def test_your_code_through_the_environment(close_server, monkeypatch):
    # Code that builds its own client finds the fake server through the environment.
    monkeypatch.setenv("CLOSE_API_KEY", "test-key")
    monkeypatch.setenv("CLOSE_BASE_URL", close_server.base_url)
    async with AsyncCloseClient() as close:
        await close.opportunities.create(lead_id="lead_1", custom={"cf_tier": "Gold"})
    assert close_server.created[0]["custom.cf_tier"] == "Gold"
