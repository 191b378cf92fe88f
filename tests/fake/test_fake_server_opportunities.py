"""FakeCloseServer's opportunity reads and writes: GET, PUT (a PATCH), DELETE by id."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest

from tests.support.fake_api import Api, serve

NOT_FOUND = {"error": "Empty query: Opportunity matching query does not exist."}
WON = "stat_" + "FakeCloseServerWon".ljust(43, "0")


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with serve() as client:
        yield client


async def test_get_answers_the_object_the_create_answered(api: Api) -> None:
    created = await api.create(lead_id="lead_1", value=5000, note="n", **{"custom.cf_a": "x"})
    status, body = await api.call("GET", f"opportunity/{created['id']}/")
    assert (status, body) == (200, created)
    assert api.server.opportunities == {created["id"]: created}


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_unknown_id_answers_closes_404(api: Api, method: str) -> None:
    await api.create(lead_id="lead_1")
    status, body = await api.call(method, "opportunity/oppo_nope/", {"note": "x"})
    assert (status, body) == (404, NOT_FOUND)
    assert [r.status for r in api.server.requests] == [200, 404]


async def test_put_changes_only_the_given_keys_and_answers_the_full_object(api: Api) -> None:
    created = await api.create(lead_id="lead_1", value=500, value_period="monthly", confidence=90)
    status, body = await api.call("PUT", f"opportunity/{created['id']}/", {"note": "my_note"})
    assert status == 200
    assert body["note"] == "my_note"
    assert body["date_updated"] > created["date_updated"]
    unchanged = {k: v for k, v in body.items() if k not in ("note", "date_updated")}
    assert unchanged == {k: v for k, v in created.items() if k not in ("note", "date_updated")}
    assert api.server.opportunities[created["id"]] == body
    assert api.server.created == [created]  # the log of creates keeps the create's answer


async def test_put_recomputes_what_close_derives(api: Api) -> None:
    created = await api.create(lead_id="lead_1", value=500, confidence=50)
    _, body = await api.call(
        "PUT", f"opportunity/{created['id']}/", {"value": 120000, "value_period": "annual"}
    )
    assert body["value_formatted"] == "$1,200 annually"
    assert (body["expected_value"], body["annualized_value"]) == (60000, 120000)
    _, body = await api.call("PUT", f"opportunity/{created['id']}/", {"status_id": WON})
    assert (body["status_type"], body["status_label"]) == ("won", "Won")
    assert body["date_won"] == dt.datetime.now(dt.timezone.utc).date().isoformat()


async def test_put_with_a_null_custom_field_removes_it(api: Api) -> None:
    created = await api.create(lead_id="lead_1", **{"custom.cf_a": "x", "custom.cf_b": "y"})
    _, body = await api.call("PUT", f"opportunity/{created['id']}/", {"custom.cf_a": None})
    assert "custom.cf_a" not in body
    assert body["custom.cf_b"] == "y"
    assert "custom.cf_a" not in api.server.opportunities[created["id"]]
    _, body = await api.call("PUT", f"opportunity/{created['id']}/", {"custom.cf_c": [1, 2]})
    assert body["custom.cf_c"] == [1, 2]


async def test_put_ignores_read_only_keys(api: Api) -> None:
    created = await api.create(lead_id="lead_1")
    body = {"id": "oppo_other", "date_created": "2001-01-01T00:00:00+00:00", "note": "x"}
    status, answer = await api.call("PUT", f"opportunity/{created['id']}/", body)
    assert status == 200
    assert (answer["id"], answer["date_created"]) == (created["id"], created["date_created"])
    assert list(api.server.opportunities) == [created["id"]]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        pytest.param({"confidence": 101}, {"confidence": "Must be between 0 and 100."}, id="range"),
        pytest.param({"value": "5"}, {"value": "Not a valid integer."}, id="type"),
        pytest.param({"lead_id": None}, {"lead": "This field may not be null."}, id="null_lead"),
        pytest.param({"lead_id": "lead_missing"}, {"lead": "Object does not exist."}, id="lead"),
    ],
)
async def test_an_invalid_put_answers_400_and_changes_nothing(
    api: Api, body: dict[str, object], errors: dict[str, str]
) -> None:
    created = await api.create(lead_id="lead_1", confidence=10)
    status, answer = await api.call("PUT", f"opportunity/{created['id']}/", body)
    assert (status, answer) == (400, {"errors": [], "field-errors": errors})
    assert api.server.opportunities[created["id"]] == created


async def test_a_put_that_is_not_a_json_object_answers_400(api: Api) -> None:
    created = await api.create(lead_id="lead_1")
    status, answer = await api.call("PUT", f"opportunity/{created['id']}/", [1])
    assert (status, answer) == (400, {"error": "Invalid JSON: expected an object"})


async def test_delete_answers_an_empty_object_then_404(api: Api) -> None:
    created = await api.create(lead_id="lead_1")
    kept = await api.create(lead_id="lead_1")
    assert await api.call("DELETE", f"opportunity/{created['id']}/") == (200, {})
    assert await api.call("DELETE", f"opportunity/{created['id']}/") == (404, NOT_FOUND)
    assert await api.call("GET", f"opportunity/{created['id']}/") == (404, NOT_FOUND)
    assert list(api.server.opportunities) == [kept["id"]]
    assert [o["id"] for o in (await api.list())["data"]] == [kept["id"]]
    assert api.server.created == [created, kept]


async def test_reads_and_writes_are_their_own_rate_limit_groups() -> None:
    async with serve(rate_limit=1, window=60.0) as api:
        created = await api.create(lead_id="lead_1")
        assert (await api.call("GET", f"opportunity/{created['id']}/"))[0] == 200
        assert (await api.call("PUT", f"opportunity/{created['id']}/", {"note": "x"}))[0] == 200
        assert (await api.call("GET", f"opportunity/{created['id']}/"))[0] == 429
        assert (await api.call("POST", "opportunity/", {"lead_id": "lead_1"}))[0] == 429
        assert len(api.server.created) == 1
