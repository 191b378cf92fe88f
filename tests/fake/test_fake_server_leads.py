"""FakeCloseServer's leads: ``POST /lead/``, ``GET /lead/{id}/``, and the leads creates make."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from close_async.testing import LEAD_STATUSES, STATUS_MISSING
from tests.support.fake_api import Api, serve

LEAD_ID = re.compile(r"^lead_[A-Za-z0-9]{43}$")


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serve() as client:
        yield client


async def test_a_lead_is_created_with_its_contacts_status_and_custom_fields(api: Api) -> None:
    payload = {
        "name": "Acme",
        "status_label": "Qualified",
        "contacts": [{"name": "Ann", "emails": [{"email": "a@acme.test", "type": "office"}]}],
        "custom.cf_size": "big",
        "custom.cf_empty": "",
    }
    status, lead = await api.call("POST", "lead/", payload)
    assert status == 200
    assert LEAD_ID.match(lead["id"])
    assert (lead["name"], lead["display_name"]) == ("Acme", "Acme")
    assert (lead["status_label"], lead["status_id"]) == ("Qualified", LEAD_STATUSES["Qualified"])
    assert lead["custom.cf_size"] == "big"
    assert "custom.cf_empty" not in lead
    (contact,) = lead["contacts"]
    assert contact["id"].startswith("cont_")
    assert (contact["lead_id"], contact["name"]) == (lead["id"], "Ann")
    assert contact["emails"] == [{"email": "a@acme.test", "type": "office"}]
    assert api.server.leads == {lead["id"]: lead}
    assert api.server.created == []  # the log of opportunity creates


async def test_a_lead_without_a_name_or_status_is_an_untitled_potential(api: Api) -> None:
    _, lead = await api.call("POST", "lead/", {})
    assert (lead["name"], lead["display_name"]) == (None, "Untitled")
    assert (lead["status_label"], lead["status_id"]) == ("Potential", LEAD_STATUSES["Potential"])


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param({"status_label": "Nope"}, "status", id="unknown_label"),
        pytest.param({"status": "Nope"}, "status", id="unknown_status"),
        pytest.param({"status_id": STATUS_MISSING}, "status", id="missing_status_id"),
        pytest.param({"name": 5}, "name", id="name_type"),
        pytest.param({"contacts": {"name": "Ann"}}, "contacts", id="contacts_not_a_list"),
    ],
)
async def test_a_bad_lead_answers_closes_400(
    api: Api, payload: dict[str, object], field: str
) -> None:
    status, body = await api.call("POST", "lead/", payload)
    assert status == 400
    assert body["errors"] == []
    assert list(body["field-errors"]) == [field]
    assert api.server.leads == {}


async def test_get_lead_answers_it_with_its_live_opportunities(api: Api) -> None:
    _, lead = await api.call("POST", "lead/", {"name": "Acme"})
    first = await api.create(lead_id=lead["id"], note="a")
    second = await api.create(lead_id=lead["id"], note="b")
    await api.create(lead_id="lead_elsewhere")
    assert first["lead_name"] == "Acme"
    await api.call("DELETE", f"opportunity/{first['id']}/")
    status, body = await api.call("GET", f"lead/{lead['id']}/")
    assert status == 200
    assert [o["id"] for o in body["opportunities"]] == [second["id"]]
    assert {k: v for k, v in body.items() if k != "opportunities"} == {
        k: v for k, v in lead.items() if k != "opportunities"
    }


async def test_an_unknown_lead_answers_404(api: Api) -> None:
    status, body = await api.call("GET", "lead/lead_nope/")
    assert (status, body) == (404, {"error": "Empty query: Lead matching query does not exist."})


async def test_a_create_without_lead_id_makes_an_untitled_lead_as_close_does(api: Api) -> None:
    made = await api.create(value=100)
    assert made["lead_name"] == "Untitled"
    assert list(api.server.leads) == [made["lead_id"]]
    status, lead = await api.call("GET", f"lead/{made['lead_id']}/")
    assert status == 200
    assert lead["display_name"] == "Untitled"
    assert [o["id"] for o in lead["opportunities"]] == [made["id"]]


async def test_a_create_on_an_unknown_lead_still_works(api: Api) -> None:
    made = await api.create(lead_id="lead_from_elsewhere")
    assert (made["lead_id"], made["lead_name"]) == ("lead_from_elsewhere", "Sample Lead")
    assert api.server.leads == {}


async def test_a_put_moving_to_a_known_lead_takes_its_name(api: Api) -> None:
    _, lead = await api.call("POST", "lead/", {"name": "Globex"})
    made = await api.create(lead_id="lead_1")
    _, body = await api.call("PUT", f"opportunity/{made['id']}/", {"lead_id": lead["id"]})
    assert (body["lead_id"], body["lead_name"]) == (lead["id"], "Globex")


async def test_the_lists_of_a_lead_follow_moves_and_deletes(api: Api) -> None:
    _, lead = await api.call("POST", "lead/", {"name": "Globex"})
    older = await api.create(lead_id="lead_1")
    mine = await api.create(lead_id=lead["id"])
    gone = await api.create(lead_id=lead["id"])
    await api.call("PUT", f"opportunity/{older['id']}/", {"lead_id": lead["id"]})
    await api.call("DELETE", f"opportunity/{gone['id']}/")
    listed = await api.list(lead_id=lead["id"], _order_by="date_created")
    assert [o["id"] for o in listed["data"]] == [older["id"], mine["id"]]  # creation order
    assert (await api.list(lead_id="lead_1"))["data"] == []
    _, body = await api.call("GET", f"lead/{lead['id']}/")
    assert [o["id"] for o in body["opportunities"]] == [older["id"], mine["id"]]
