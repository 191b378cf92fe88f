"""Tests of close_async.testing.FakeCloseServer, driven with a plain aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from close_async.testing import DIALECTS, FAULTS, LEAD_MISSING, FakeCloseServer, RequestRecord

KEY = "api_0123456789abcdef"
BEARER = {"Authorization": f"Bearer {KEY}"}
UNAUTHORIZED = (
    "The server could not verify that you are authorized to access the URL requested.  You"
    " either supplied the wrong credentials (e.g. a bad password), or your browser doesn't"
    " understand how to supply the credentials required."
)
ISO_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
MODERN = re.compile(r"^limit=(\d+), remaining=(\d+), reset=(\d+\.\d{6})$")
SEMICOLON = re.compile(r"^limit=(\d+); remaining=(\d+); reset=(\d+\.\d{6})$")


def basic(username: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def server() -> AsyncIterator[FakeCloseServer]:
    async with FakeCloseServer() as fake:
        yield fake


async def post(
    session: aiohttp.ClientSession,
    server: FakeCloseServer,
    payload: Any = None,
    *,
    headers: Mapping[str, str] | None = BEARER,
    data: bytes | None = None,
    path: str = "opportunity/",
    method: str = "POST",
) -> Answer:
    body = data if data is not None else json.dumps({} if payload is None else payload).encode()
    async with session.request(
        method, server.base_url + path, data=body, headers=dict(headers or {})
    ) as resp:
        return Answer(resp.status, resp.headers, await resp.read())


# -- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "status", "recorded_key"),
    [
        pytest.param(basic("good"), 200, "good", id="basic"),
        pytest.param(basic("good", "ignored"), 200, "good", id="basic_with_password"),
        pytest.param("Bearer good", 200, "good", id="bearer"),
        pytest.param("bearer good", 200, "good", id="bearer_lowercase_scheme"),
        pytest.param(None, 401, None, id="missing"),
        pytest.param(basic("wrong"), 401, "wrong", id="wrong_key_basic"),
        pytest.param("Bearer wrong", 401, "wrong", id="wrong_key_bearer"),
        pytest.param(basic(""), 401, None, id="empty_username"),
        pytest.param("Bearer ", 401, None, id="empty_bearer"),
        pytest.param("Basic !!!not-base64", 401, None, id="bad_base64"),
        pytest.param("Basic " + base64.b64encode(b"\xff:").decode(), 401, None, id="not_utf8"),
        pytest.param("Digest good", 401, None, id="unknown_scheme"),
    ],
)
async def test_auth(
    session: aiohttp.ClientSession, authorization: str | None, status: int, recorded_key: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with FakeCloseServer(api_keys=["good"]) as server:
        answer = await post(session, server, headers=headers)
        assert answer.status == status
        assert server.requests[0].api_key == recorded_key
        if status == 401:
            assert answer.json() == {"error": UNAUTHORIZED}
            assert answer.headers["Content-Type"] == "application/json"
            assert server.created == []
        else:
            assert len(server.created) == 1


async def test_any_non_empty_key_accepted_without_api_keys(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    answer = await post(session, server, headers={"Authorization": basic("whatever")})
    assert answer.status == 200


# -- success shape -------------------------------------------------------------------------

FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "organization_id": str,
    "lead_id": str,
    "lead_name": str,
    "status_id": str,
    "status_label": str,
    "status_display_name": str,
    "status_type": str,
    "pipeline_id": str,
    "pipeline_name": str,
    "value": int,
    "value_period": str,
    "value_currency": str,
    "value_formatted": str,
    "confidence": int,
    "expected_value": int,
    "annualized_value": int,
    "annualized_expected_value": int,
    "note": str,
    "contact_id": type(None),
    "contact_name": type(None),
    "user_id": str,
    "user_name": str,
    "created_by": str,
    "created_by_name": str,
    "updated_by": str,
    "updated_by_name": str,
    "date_created": str,
    "date_updated": str,
    "date_won": type(None),
    "date_lost": type(None),
    "integration_links": list,
    "attachments": list,
    "is_stalled": bool,
    "stall_status": type(None),
    "suggested_action": type(None),
    "comment_summary": type(None),
    "lead_primary_email": type(None),
    "lead_primary_phone": type(None),
}


async def test_full_shape(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(organization_id="orga_mine") as server:
        answer = await post(
            session,
            server,
            {"value": 500000, "value_period": "monthly", "confidence": 50, "note": "hi"},
        )
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    opp = answer.json()
    assert set(opp) == set(FIELD_TYPES)
    for name, expected in FIELD_TYPES.items():
        assert isinstance(opp[name], expected), name
    assert re.fullmatch(r"oppo_[A-Za-z0-9]{43}", opp["id"])
    assert re.fullmatch(r"lead_[A-Za-z0-9]{43}", opp["lead_id"])
    assert re.fullmatch(r"stat_[A-Za-z0-9]{43}", opp["status_id"])
    assert opp["organization_id"] == "orga_mine"
    assert ISO_MICROS.match(opp["date_created"])
    assert opp["date_updated"] == opp["date_created"]
    assert opp["lead_name"] == "Untitled"
    assert (opp["status_label"], opp["status_display_name"], opp["status_type"]) == (
        "Active",
        "Active",
        "active",
    )
    assert opp["value_currency"] == "USD"
    assert opp["value_formatted"] == "$5,000 monthly"
    assert (opp["expected_value"], opp["annualized_value"]) == (250000, 6000000)
    assert opp["annualized_expected_value"] == 3000000
    assert opp["is_stalled"] is False
    assert opp["note"] == "hi"
    assert server.created == [opp]


@pytest.mark.parametrize(
    ("payload", "formatted", "expected", "annualized", "annualized_expected"),
    [
        pytest.param(
            {"value": 500000, "value_period": "monthly"},
            "$5,000 monthly",
            0,
            6000000,
            0,
            id="monthly",
        ),
        pytest.param(
            {"value": 300000, "value_period": "one_time"}, "$3,000", 0, 300000, 0, id="one_time"
        ),
        pytest.param(
            {"value": 300000, "confidence": 75},
            "$3,000",
            225000,
            300000,
            225000,
            id="default_period",
        ),
        pytest.param(
            {"value": 1250, "value_period": "annual", "confidence": 100},
            "$12.50 annually",
            1250,
            1250,
            1250,
            id="annual_cents",
        ),
        pytest.param(
            {"value": 123456789, "value_period": None},
            "$1,234,567.89",
            0,
            123456789,
            0,
            id="null_period",
        ),
        pytest.param({"value": -500}, "-$5", 0, -500, 0, id="negative"),
        pytest.param({"value": None, "confidence": 10}, "", None, None, None, id="no_value"),
    ],
)
async def test_value_derived_fields(
    session: aiohttp.ClientSession,
    server: FakeCloseServer,
    payload: dict[str, Any],
    formatted: str,
    expected: int | None,
    annualized: int | None,
    annualized_expected: int | None,
) -> None:
    opp = (await post(session, server, payload)).json()
    assert opp["value_formatted"] == formatted
    assert opp["value_period"] == (payload.get("value_period") or "one_time")
    assert opp["expected_value"] == expected
    assert opp["annualized_value"] == annualized
    assert opp["annualized_expected_value"] == annualized_expected


async def test_defaults(session: aiohttp.ClientSession, server: FakeCloseServer) -> None:
    opp = (await post(session, server, {"confidence": None, "note": None})).json()
    assert (opp["value"], opp["value_period"], opp["confidence"], opp["note"]) == (
        None,
        "one_time",
        0,
        "",
    )
    assert opp["user_id"] == opp["created_by"] == opp["updated_by"]
    assert opp["contact_id"] is None
    assert opp["contact_name"] is None


async def test_custom_fields_echoed_and_empty_ones_omitted(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    payload = {
        "custom.cf_text": "hello",
        "custom.cf_number": 0,
        "custom.cf_list": ["a", "b"],
        "custom.cf_empty": "",
        "custom.cf_null": None,
        "custom.cf_empty_list": [],
        "custom.cf_empty_dict": {},
        "custom.not_cf": "dropped",
        "unknown_key": "ignored",
    }
    opp = (await post(session, server, payload)).json()
    assert opp["custom.cf_text"] == "hello"
    assert opp["custom.cf_number"] == 0
    assert opp["custom.cf_list"] == ["a", "b"]
    for absent in (
        "custom.cf_empty",
        "custom.cf_null",
        "custom.cf_empty_list",
        "custom.cf_empty_dict",
        "custom.not_cf",
        "unknown_key",
    ):
        assert absent not in opp
    assert server.created[0]["custom.cf_text"] == "hello"


async def test_given_ids_are_echoed(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    ids = {"lead_id": "lead_x", "status_id": "stat_x", "contact_id": "cont_x", "user_id": "user_x"}
    opp = (await post(session, server, ids)).json()
    assert {name: opp[name] for name in ids} == ids
    assert opp["lead_name"] != "Untitled"
    assert isinstance(opp["contact_name"], str)


async def test_no_lead_creates_untitled_leads(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    first = (await post(session, server)).json()
    second = (await post(session, server)).json()
    assert first["lead_name"] == second["lead_name"] == "Untitled"
    assert first["lead_id"] != second["lead_id"]
    assert first["id"] != second["id"]


@pytest.mark.parametrize(
    ("date_won", "expected"),
    [
        pytest.param("2024-02-29", "2024-02-29", id="date"),
        pytest.param("2024-02-29T23:59:59.123456+02:00", "2024-02-29", id="datetime_offset"),
        pytest.param("2024-03-01T10:00:00Z", "2024-03-01", id="datetime_z"),
        pytest.param(None, None, id="null"),
    ],
)
async def test_date_won(
    session: aiohttp.ClientSession,
    server: FakeCloseServer,
    date_won: str | None,
    expected: str | None,
) -> None:
    assert (await post(session, server, {"date_won": date_won})).json()["date_won"] == expected


# -- 400s ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field_errors"),
    [
        pytest.param(
            {"value_period": "weekly"},
            {"value_period": '"weekly" is not a valid choice.'},
            id="value_period_weekly",
        ),
        pytest.param(
            {"value_period": 5},
            {"value_period": '"5" is not a valid choice.'},
            id="value_period_int",
        ),
        pytest.param(
            {"confidence": "50"}, {"confidence": "Not a valid integer."}, id="confidence_str"
        ),
        pytest.param(
            {"confidence": True}, {"confidence": "Not a valid integer."}, id="confidence_bool"
        ),
        pytest.param(
            {"confidence": 101}, {"confidence": "Must be between 0 and 100."}, id="confidence_101"
        ),
        pytest.param(
            {"confidence": -1},
            {"confidence": "Must be between 0 and 100."},
            id="confidence_negative",
        ),
        pytest.param({"value": "100"}, {"value": "Not a valid integer."}, id="value_str"),
        pytest.param({"value": 1.5}, {"value": "Not a valid integer."}, id="value_float"),
        pytest.param({"lead_id": 5}, {"lead_id": "Not a valid string."}, id="lead_id_int"),
        pytest.param({"status_id": []}, {"status_id": "Not a valid string."}, id="status_id_list"),
        pytest.param({"contact_id": 1}, {"contact_id": "Not a valid string."}, id="contact_id_int"),
        pytest.param({"user_id": {}}, {"user_id": "Not a valid string."}, id="user_id_dict"),
        pytest.param({"note": 3}, {"note": "Not a valid string."}, id="note_int"),
        pytest.param(
            {"date_won": "yesterday"}, {"date_won": "Not a valid date."}, id="date_won_text"
        ),
        pytest.param(
            {"date_won": "2024-13-01"}, {"date_won": "Not a valid date."}, id="date_won_bad_month"
        ),
        pytest.param(
            {"date_won": "2024-01-01T25:00:00"},
            {"date_won": "Not a valid date."},
            id="date_won_bad_time",
        ),
        pytest.param({"date_won": 20240101}, {"date_won": "Not a valid date."}, id="date_won_int"),
        pytest.param(
            {"lead_id": LEAD_MISSING}, {"lead": "Object does not exist."}, id="lead_missing"
        ),
        pytest.param(
            {"value_period": "weekly", "value": "x", "lead_id": LEAD_MISSING},
            {
                "value_period": '"weekly" is not a valid choice.',
                "value": "Not a valid integer.",
                "lead": "Object does not exist.",
            },
            id="several_fields",
        ),
    ],
)
async def test_field_errors(
    session: aiohttp.ClientSession,
    server: FakeCloseServer,
    payload: dict[str, Any],
    field_errors: dict[str, str],
) -> None:
    answer = await post(session, server, payload)
    assert answer.status == 400
    assert answer.json() == {"errors": [], "field-errors": field_errors}
    assert server.created == []
    assert server.requests[0].status == 400


@pytest.mark.parametrize(
    ("data", "error"),
    [
        pytest.param(b"{", "Invalid JSON", id="truncated"),
        pytest.param(b"", "Invalid JSON", id="empty_body"),
        pytest.param(b"[1, 2]", "Invalid JSON: expected an object", id="array"),
        pytest.param(b'"text"', "Invalid JSON: expected an object", id="string"),
    ],
)
async def test_invalid_json(
    session: aiohttp.ClientSession, server: FakeCloseServer, data: bytes, error: str
) -> None:
    answer = await post(session, server, data=data)
    assert answer.status == 400
    assert answer.json() == {"error": error}
    assert server.created == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("PATCH", "opportunity/", 405, id="patch_opportunities"),
        pytest.param("POST", "opportunity/oppo_1/", 405, id="post_opportunity_by_id"),
        pytest.param("DELETE", "lead/lead_1/", 405, id="delete_lead"),
        pytest.param("POST", "opportunity", 404, id="no_trailing_slash"),
        pytest.param("POST", "activity/", 404, id="other_path"),
    ],
)
async def test_other_routes(
    session: aiohttp.ClientSession, server: FakeCloseServer, method: str, path: str, status: int
) -> None:
    answer = await post(session, server, method=method, path=path)
    assert answer.status == status
    assert "error" in answer.json()
    assert [(r.method, r.status, r.api_key) for r in server.requests] == [(method, status, KEY)]


# -- rate limiting -------------------------------------------------------------------------


def rate_state(dialect: str, headers: Mapping[str, str]) -> tuple[int, int, float]:
    """(limit, remaining, reset) from a non-429 answer's headers."""
    if dialect in ("modern", "html", "semicolon"):
        pattern = SEMICOLON if dialect == "semicolon" else MODERN
        match = pattern.match(headers["RateLimit"])
        assert match, headers["RateLimit"]
        assert "X-Rate-Limit-Limit" not in headers
        return int(match[1]), int(match[2]), float(match[3])
    assert "RateLimit" not in headers
    assert re.fullmatch(r"\d+\.\d{6}", headers["X-Rate-Limit-Reset"])
    return (
        int(headers["X-Rate-Limit-Limit"]),
        int(headers["X-Rate-Limit-Remaining"]),
        float(headers["X-Rate-Limit-Reset"]),
    )


@pytest.mark.parametrize("dialect", [d for d in DIALECTS if d != "none"])
async def test_dialect_headers_and_429(session: aiohttp.ClientSession, dialect: str) -> None:
    async with FakeCloseServer(
        api_keys=[KEY], rate_limit=2, window=60.0, dialect=dialect
    ) as server:
        first = await post(session, server)
        second = await post(session, server, {"value": "bad"})  # 400s consume a slot too
        denied = await post(session, server)
        unauthorized = await post(session, server, headers={"Authorization": "Bearer other"})
    assert rate_state(dialect, first.headers)[:2] == (2, 1)
    assert 59.0 < rate_state(dialect, first.headers)[2] <= 60.0
    assert rate_state(dialect, second.headers)[:2] == (2, 0)
    assert rate_state(dialect, unauthorized.headers)[:2] == (2, 2)  # 401s peek, never consume
    assert denied.status == 429
    assert len(server.created) == 1
    assert server.count_429 == 1
    assert [r.status for r in server.requests] == [200, 400, 429, 401]
    if dialect == "html":
        assert denied.headers["Content-Type"].startswith("text/html")
        assert denied.body == b"<html><body><h1>429 Too Many Requests</h1></body></html>"
        assert denied.headers["Retry-After"] == "60"
        assert "RateLimit" not in denied.headers
        assert "X-Rate-Limit-Reset" not in denied.headers
        return
    limit, remaining, reset = rate_state(dialect, denied.headers)
    assert (limit, remaining) == (2, 0)
    assert 59.0 < reset <= 60.0
    body = denied.json()
    if dialect in ("modern", "semicolon"):
        assert body == {"error": "Rate limit exceeded"}
    elif dialect == "legacy_nested":
        assert body["error"]["message"] == "API call count exceeded for this 60 second window"
        assert (body["error"]["rate_limit"], body["error"]["rate_window"]) == (2, 60)
        assert 59.0 < body["error"]["rate_reset"] <= 60.0
    else:
        assert body["message"] == "API call count exceeded for this period"
        assert body["rate_endpoint_group"] == "ab60a2938ea23638a0c6f32222cadc8e"
        assert (body["rate_limit"], body["rate_limit_type"], body["rate_window"]) == (2, "key", 60)
        assert re.fullmatch(r"\d+\.\d{6}", body["rate_reset"])


async def test_dialect_none(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=1, window=60.0, dialect="none") as server:
        ok = await post(session, server)
        denied = await post(session, server)
        unauthorized = await post(session, server, headers={})
    assert (ok.status, denied.status, unauthorized.status) == (200, 429, 401)
    assert denied.body == b""
    for answer in (ok, denied, unauthorized):
        assert not any(
            h.lower().startswith(("ratelimit", "x-rate", "retry")) for h in answer.headers
        )


async def test_fractional_window_in_legacy_body(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=1, window=30.5, dialect="legacy_nested") as server:
        await post(session, server)
        body = (await post(session, server)).json()
    assert body["error"]["rate_window"] == 30.5
    assert body["error"]["message"] == "API call count exceeded for this 30.5 second window"


async def test_unlimited_has_no_rate_limit_headers(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    answers = [await post(session, server) for _ in range(5)]
    unauthorized = await post(session, server, headers={})
    assert all(a.status == 200 and "RateLimit" not in a.headers for a in answers)
    assert "RateLimit" not in unauthorized.headers


async def test_windows_are_per_key(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=1, window=60.0) as server:
        a1 = await post(session, server, headers={"Authorization": "Bearer a"})
        a2 = await post(session, server, headers={"Authorization": basic("a")})
        b1 = await post(session, server, headers={"Authorization": "Bearer b"})
    assert (a1.status, a2.status, b1.status) == (200, 429, 200)


async def test_window_resets_and_429_does_not_consume(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=1, window=0.25) as server:
        _, _, reset = rate_state("modern", (await post(session, server)).headers)
        await asyncio.sleep(reset + 0.01)  # now at the start of a fresh window
        fresh = await post(session, server)
        _, remaining, reset = rate_state("modern", fresh.headers)
        assert (fresh.status, remaining) == (200, 0)
        assert reset > 0.15
        denied = [await post(session, server) for _ in range(3)]
        assert [a.status for a in denied] == [429, 429, 429]
        _, _, reset = rate_state("modern", denied[-1].headers)
        await asyncio.sleep(reset + 0.01)
        again = await post(session, server)
        assert again.status == 200
        assert rate_state("modern", again.headers)[1] == 0
    assert len(server.created) == 3
    assert server.count_429 == 3


# -- scripted faults -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type", "body", "created", "rate_headers"),
    [
        pytest.param(
            "500", 500, "application/json", b'{"error":"Internal Server Error"}', 0, True, id="500"
        ),
        pytest.param(
            "500_after_create",
            500,
            "application/json",
            b'{"error":"Internal Server Error"}',
            1,
            True,
            id="500_after_create",
        ),
        pytest.param(
            "502", 502, "text/html", b"<html><head><title>502 Bad Gateway", 0, False, id="502"
        ),
        pytest.param(
            "503", 503, "text/html", b"<html><head><title>503 Service", 0, False, id="503"
        ),
        pytest.param("504", 504, "application/json", b"", 0, False, id="504"),
        pytest.param(
            "429", 429, "application/json", b'{"error":"Rate limit exceeded"}', 0, True, id="429"
        ),
    ],
)
async def test_status_faults(
    session: aiohttp.ClientSession,
    fault: str,
    status: int,
    content_type: str,
    body: bytes,
    created: int,
    rate_headers: bool,
) -> None:
    async with FakeCloseServer(rate_limit=10, window=60.0) as server:
        server.fail_next(fault)
        answer = await post(session, server, {"value": 100})
        after = await post(session, server)
    assert answer.status == status
    assert answer.headers["Content-Type"].startswith(content_type)
    assert answer.body.startswith(body)
    assert ("RateLimit" in answer.headers) is rate_headers
    assert len(server.created) == created + 1
    assert after.status == 200
    assert server.requests[0].fault == fault
    assert server.requests[1].fault is None
    if fault == "429":
        assert rate_state("modern", answer.headers)[1] == 0
        assert server.count_429 == 1


async def test_scripted_429_without_rate_limit(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    server.fail_next("429")
    answer = await post(session, server)
    assert answer.status == 429
    limit, remaining, reset = rate_state("modern", answer.headers)
    assert (limit, remaining) == (0, 0)
    assert 0 < reset <= 1.0


@pytest.mark.parametrize(("fault", "created"), [("drop", 1), ("drop_before_create", 0)])
async def test_drop_faults(
    session: aiohttp.ClientSession, server: FakeCloseServer, fault: str, created: int
) -> None:
    server.fail_next(fault)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await post(session, server, {"value": 1})
    assert len(server.created) == created
    assert (server.requests[0].status, server.requests[0].fault) == (None, fault)
    assert (await post(session, server)).status == 200  # the server keeps serving


async def test_post_create_fault_with_invalid_body_still_answers_400(
    session: aiohttp.ClientSession, server: FakeCloseServer
) -> None:
    server.fail_next("drop")
    answer = await post(session, server, {"value": "x"})
    assert answer.status == 400
    assert server.requests[0].fault == "drop"
    assert (await post(session, server)).status == 200  # the fault was consumed


async def test_hang_times_out_client_then_closes_cleanly(session: aiohttp.ClientSession) -> None:
    server = FakeCloseServer(hang_seconds=30.0)
    await server.start()
    server.fail_next("hang")
    with pytest.raises(asyncio.TimeoutError):
        await post_with_timeout(session, server, 0.2)
    assert len(server.created) == 1
    assert server.requests[0].status is None
    await asyncio.sleep(0.05)  # let the server notice the client went away
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.close()  # the handler is still sleeping, its client long gone
    assert loop.time() - started < 0.5
    assert server.requests[0].status is None


async def post_with_timeout(
    session: aiohttp.ClientSession, server: FakeCloseServer, seconds: float
) -> Answer:
    timeout = aiohttp.ClientTimeout(total=seconds)
    async with session.post(
        server.base_url + "opportunity/", json={}, headers=BEARER, timeout=timeout
    ) as resp:
        return Answer(resp.status, resp.headers, await resp.read())


async def test_hang_answers_after_hang_seconds(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(hang_seconds=0.1) as server:
        server.fail_next("hang")
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await post(session, server)
        assert loop.time() - started >= 0.1
    assert answer.status == 200
    assert answer.json() == server.created[0]
    assert server.requests[0].status == 200


async def test_close_with_hanging_request_open(session: aiohttp.ClientSession) -> None:
    server = FakeCloseServer()  # hang_seconds defaults to an hour
    await server.start()
    server.fail_next("hang")
    pending = asyncio.ensure_future(post(session, server))
    for _ in range(200):  # wait until the server is hanging on the created opportunity
        if server.created:
            break
        await asyncio.sleep(0.005)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.close()
    assert loop.time() - started < 1.0
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await pending
    assert len(server.created) == 1
    await server.close()  # idempotent


async def test_faults_are_fifo_and_skip_401_and_429(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=3, window=60.0) as server:
        server.fail_next("503", times=2)
        server.fail_next("500")
        server.fail_next("502", times=0)
        statuses = [(await post(session, server, headers={})).status]  # 401: no fault consumed
        statuses += [(await post(session, server)).status for _ in range(4)]
    assert statuses == [401, 503, 503, 500, 429]
    assert [r.fault for r in server.requests] == [None, "503", "503", "500", None]


@pytest.mark.parametrize(
    ("fault", "times"),
    [pytest.param("boom", 1, id="unknown_fault"), pytest.param("500", -1, id="negative_times")],
)
def test_fail_next_rejects(fault: str, times: int) -> None:
    with pytest.raises(ValueError, match=r"fault|times"):
        FakeCloseServer().fail_next(fault, times=times)


def test_fault_names() -> None:
    assert set(FAULTS) == {
        "500",
        "502",
        "503",
        "504",
        "500_after_create",
        "drop",
        "drop_before_create",
        "hang",
        "429",
        "late_create",
    }
    assert set(DIALECTS) == {"modern", "semicolon", "legacy_nested", "legacy_flat", "html", "none"}


# -- lifecycle, log, reset -----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"dialect": "klingon"}, id="dialect"),
        pytest.param({"rate_limit": 0}, id="rate_limit"),
        pytest.param({"window": 0}, id="window"),
        pytest.param({"latency": -1}, id="latency"),
        pytest.param({"hang_seconds": -1}, id="hang_seconds"),
        pytest.param({"late_seconds": -1}, id="late_seconds"),
        pytest.param({"list_lag": -0.5}, id="list_lag"),
        pytest.param({"max_limit": 0}, id="max_limit"),
        pytest.param({"max_skip": -1}, id="max_skip"),
    ],
)
def test_constructor_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"dialect|rate_limit|window|max_limit"):
        FakeCloseServer(**kwargs)


async def test_lifecycle_errors() -> None:
    server = FakeCloseServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url
    await server.close()  # closing a never-started server is a no-op
    async with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1/", server.base_url)
        with pytest.raises(RuntimeError, match="already started"):
            await server.start()
        port = int(server.base_url.split(":")[2].split("/")[0])
        with pytest.raises(OSError):  # noqa: PT011 - errno varies by platform
            await FakeCloseServer(port=port).start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


async def test_restart_after_close(session: aiohttp.ClientSession) -> None:
    server = FakeCloseServer()
    async with server:
        assert (await post(session, server)).status == 200
    async with server:
        assert (await post(session, server)).status == 200
    assert len(server.created) == 2


async def test_requests_log(session: aiohttp.ClientSession, server: FakeCloseServer) -> None:
    loop = asyncio.get_running_loop()
    before = loop.time()
    await post(session, server, {"value": 1}, headers={**BEARER, "X-Test": "yes"})
    await post(session, server, headers={})
    first, second = server.requests
    assert isinstance(first, RequestRecord)
    assert (first.method, first.path, first.api_key, first.status) == (
        "POST",
        "/api/v1/opportunity/",
        KEY,
        200,
    )
    assert json.loads(first.body) == {"value": 1}
    assert first.headers["X-Test"] == "yes"
    assert before <= first.at <= second.at <= loop.time()
    assert (second.api_key, second.status, second.fault) == (None, 401, None)


async def test_reset(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=1, window=60.0) as server:
        created, requests = server.created, server.requests
        await post(session, server)
        assert (await post(session, server)).status == 429
        server.fail_next("500")
        server.reset()
        assert (server.created, server.requests, server.count_429) == ([], [], 0)
        answer = await post(session, server)  # window forgotten, fault forgotten
        assert answer.status == 200
        assert server.created is created
        assert server.requests is requests
        assert len(created) == 1


async def test_latency(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(latency=0.1) as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(*(post(session, server) for _ in range(5)))
        elapsed = loop.time() - started
    assert [a.status for a in answers] == [200] * 5
    assert 0.1 <= elapsed < 0.5  # concurrent requests sleep concurrently


async def test_many_concurrent_requests(session: aiohttp.ClientSession) -> None:
    async with FakeCloseServer(rate_limit=150, window=60.0) as server:
        answers = await asyncio.gather(*(post(session, server, {"value": i}) for i in range(200)))
    assert sorted(a.status for a in answers) == [200] * 150 + [429] * 50
    assert len(server.created) == 150
    assert len({opp["id"] for opp in server.created}) == 150
