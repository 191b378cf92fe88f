"""leads.create against FakeCloseServer, checked at its own record."""

from __future__ import annotations

from tests.support.servers import fake_and_client


async def test_a_lead_made_first_means_no_untitled_lead() -> None:
    async with fake_and_client() as (server, close):
        lead = await close.leads.create(name="Acme", contacts=[{"name": "Ann"}], custom={"cf_s": 1})
        opp = await close.opportunities.create(lead_id=lead.id, value=1)
    assert opp.lead_id == lead.id
    assert list(server.leads) == [lead.id]  # the fake made no "Untitled" lead
    assert server.leads[lead.id]["name"] == "Acme"
    assert (lead.name, lead.contacts[0].name, lead.custom) == ("Acme", "Ann", {"cf_s": 1})
