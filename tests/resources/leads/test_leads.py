"""leads.create: what reaches the server (its record), the typed Lead back, lenient decoding,
bad input refused before sending."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aiohttp import web
from aioresponses import aioresponses

from close_async import (
    AsyncCloseClient,
    BadRequestError,
    CreateLead,
    DecodeError,
    InvalidInputError,
    Lead,
    ServerError,
)
from close_async._resources.leads.models import decode_lead
from tests.support.servers import serving_app as serve

LEAD_URL = "https://api.close.com/api/v1/lead/"
LEAD_ID = "lead_XLnuBerozWCpobHZOJjbC9KpPIUcFgpDfut809pCcp9"


def close_like_lead(fields: dict[str, Any]) -> dict[str, Any]:
    """What Close answers to a lead create, in its 2017 shape: the legacy ``custom`` object by
    field name beside the flat keys, fields it added, contacts with ids."""
    custom = {k: v for k, v in fields.items() if k.startswith("custom.")}
    contacts = [
        {**c, "id": f"cont_{i}", "lead_id": LEAD_ID, "display_name": c.get("name", "")}
        for i, c in enumerate(fields.get("contacts", []))
    ]
    return {
        "id": LEAD_ID,
        "name": fields.get("name"),
        "display_name": fields.get("name") or "Untitled",
        "status_id": fields.get("status_id", "stat_default"),
        "status_label": "Potential",
        "date_created": "2017-07-24T09:33:50.766000+00:00",
        "custom": {"Source": "Google"},
        "contacts": contacts,
        "addresses": [],
        "opportunities": [],
        "tasks": [],
        "integration_links": [],
        "a_field_close_added": {"x": 1},
        **custom,
    }


@pytest.fixture
async def lead_server() -> Any:
    received: list[dict[str, Any]] = []

    async def create(request: web.Request) -> web.Response:
        fields = msgspec.json.decode(await request.read())
        received.append(fields)
        return web.json_response(close_like_lead(fields))

    app = web.Application()
    app.router.add_post("/api/v1/lead/", create)
    async with serve(app) as base:
        yield base, received


async def test_create_sends_the_given_fields_and_returns_a_typed_lead(lead_server: Any) -> None:
    base, received = lead_server
    contact = {"name": "Ann", "title": "CTO", "emails": [{"email": "a@x.io", "type": "office"}]}
    async with AsyncCloseClient("k", base_url=base) as close:
        lead = await close.leads.create(
            name="Acme",
            status_id="stat_1",
            contacts=[contact],
            custom={"cf_tier": "Gold", "lcf_legacy": 3},
        )
    assert received == [
        {
            "name": "Acme",
            "status_id": "stat_1",
            "contacts": [contact],
            "custom.cf_tier": "Gold",
            "custom.lcf_legacy": 3,
        }
    ]
    assert isinstance(lead, Lead)
    assert (lead.id, lead.name, lead.status_id) == (LEAD_ID, "Acme", "stat_1")
    assert lead.custom == {"cf_tier": "Gold", "lcf_legacy": 3}  # by id, not the legacy names
    assert lead.date_created is not None
    assert lead.date_created.utcoffset() is not None
    [ann] = lead.contacts
    assert (ann.id, ann.name, ann.emails[0].email) == ("cont_0", "Ann", "a@x.io")
    # Flat both ways: encoding the Lead writes its custom fields back as flat keys.
    encoded = msgspec.json.decode(msgspec.json.encode(lead))
    assert (encoded["custom.cf_tier"], encoded["custom.lcf_legacy"]) == ("Gold", 3)


async def test_create_takes_a_create_lead_too(lead_server: Any) -> None:
    base, received = lead_server
    async with AsyncCloseClient("k", base_url=base) as close:
        await close.leads.create(CreateLead(name="Acme", description=None))
    assert received == [{"name": "Acme", "description": None}]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"name": 3}, "name", id="name"),
        pytest.param({"status_id": ""}, "status_id", id="status"),
        pytest.param({"contacts": {"name": "x"}}, "contacts", id="contacts-not-a-list"),
        pytest.param({"contacts": ["Ann"]}, "contacts[0]", id="contact-not-a-dict"),
        pytest.param({"contacts": [{"x": float("nan")}]}, "contacts[0]", id="contact-nan"),
        pytest.param({"custom": {"tier": 1}}, "custom", id="custom-key"),
        pytest.param({"custom": {"custom.cf_a": 1}}, "custom", id="custom-prefixed"),
        pytest.param({"custom": []}, "custom", id="custom-not-a-dict"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    mock_http: aioresponses, fields: dict[str, Any], field: str
) -> None:
    async with AsyncCloseClient("k") as close:
        with pytest.raises(InvalidInputError) as info:
            await close.leads.create(**fields)
    assert info.value.field == field
    assert mock_http.requests == {}


async def test_an_item_and_keywords_together_are_refused(mock_http: aioresponses) -> None:
    async with AsyncCloseClient("k") as close:
        with pytest.raises(InvalidInputError):
            await close.leads.create(CreateLead(name="a"), name="b")
    assert mock_http.requests == {}


async def test_closes_400_names_its_field(mock_http: aioresponses) -> None:
    body = b'{"errors": [], "field-errors": {"status": "Not a valid choice."}}'
    mock_http.post(LEAD_URL, status=400, body=body)
    async with AsyncCloseClient("k") as close:
        with pytest.raises(BadRequestError) as info:
            await close.leads.create(status_id="foo")
    assert info.value.field_errors == {"status": "Not a valid choice."}


async def test_a_5xx_is_not_retried_and_may_have_succeeded(mock_http: aioresponses) -> None:
    mock_http.post(LEAD_URL, status=502, body=b"<html>Bad Gateway</html>")
    async with AsyncCloseClient("k") as close:
        with pytest.raises(ServerError) as info:
            await close.leads.create(name="Acme")
    assert info.value.may_have_succeeded is True
    assert len(mock_http.requests) == 1


async def test_a_2xx_that_is_not_a_lead_is_a_decode_error_that_may_have_created(
    mock_http: aioresponses,
) -> None:
    mock_http.post(LEAD_URL, status=200, body=b"<html>maintenance</html>")
    async with AsyncCloseClient("k") as close:
        with pytest.raises(DecodeError) as info:
            await close.leads.create(name="Acme")
    assert info.value.may_have_succeeded is True


def test_decoding_is_lenient_missing_fields_are_none_unknown_ones_ignored() -> None:
    lead = decode_lead(b'{"id": "lead_1", "new_thing": [1], "contacts": [{"name": "Ann"}]}')
    assert (lead.name, lead.status_id, lead.date_created, lead.custom) == (None, None, None, {})
    assert lead.contacts[0].name == "Ann"
    with pytest.raises(DecodeError):
        decode_lead(b'{"name": "no id"}')
    with pytest.raises(DecodeError):
        decode_lead(b'{"id": "lead_1", "contacts": "not a list"}')
