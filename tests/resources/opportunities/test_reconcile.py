"""reconcile's verdicts against an in-memory list with a visibility lag: every state, identical
siblings, a create without lead_id, the values Close rewrites, and bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from close_async import CreateOpportunity, InvalidInputError, decode_opportunity
from close_async._resources.opportunities.match import Probe
from close_async._resources.opportunities.reconcile import (
    CLOCK_SKEW,
    Excluded,
    RecentIds,
    reconcile,
    reconcile_group,
)
from close_async.models import Opportunity

UTC = dt.timezone.utc
LEAD = "lead_" + "R" * 43
_ids = itertools.count(1)


class Store:
    """What Close holds, and what its list shows: each opportunity from ``lag`` seconds (loop
    time) after it was stored. Records every read's filters."""

    def __init__(self, lag: float = 0.0) -> None:
        self.lag = lag
        self.rows: list[tuple[float, Opportunity]] = []
        self.reads: list[dict[str, Any]] = []

    def add(self, *, ago: float = 0.0, **fields: Any) -> Opportunity:
        fields.setdefault("lead_id", LEAD)
        fields.setdefault("date_created", dt.datetime.now(UTC) - dt.timedelta(seconds=ago))
        fields.setdefault("note", "")
        fields.setdefault("confidence", 0)
        fields.setdefault("value_period", "one_time")
        custom = fields.pop("custom", {})
        data = {"id": f"oppo_{next(_ids):043d}", **fields}
        data.update({f"custom.{k}": v for k, v in custom.items()})
        opp = decode_opportunity(msgspec.json.encode(data))
        self.rows.append((asyncio.get_running_loop().time() - ago, opp))
        return opp

    async def list(self, **filters: Any) -> AsyncIterator[Opportunity]:
        self.reads.append(filters)
        now = asyncio.get_running_loop().time()
        for stored, opp in self.rows:
            if now < stored + self.lag:
                continue
            if "lead_id" in filters and opp.lead_id != filters["lead_id"]:
                continue
            if "user_id" in filters and opp.user_id != filters["user_id"]:
                continue
            assert opp.date_created is not None
            if opp.date_created < filters["date_created__gte"]:
                continue
            yield opp


def sent(**fields: Any) -> CreateOpportunity:
    fields.setdefault("lead_id", LEAD)
    return CreateOpportunity(**fields)


def just_now(seconds: float = 0.0) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(seconds=seconds)


async def test_one_match_is_created_at_once_with_one_read() -> None:
    store = Store()
    opp = store.add(value=500, note="Enterprise")
    result = await reconcile(store.list, sent(value=500, note="Enterprise"), sent_at=just_now(1))
    assert (result.state, result.opportunity, result.reads) == ("created", opp, 1)
    assert store.reads[0]["lead_id"] == LEAD


async def test_nothing_listed_is_absent_only_after_settle_and_two_empty_reads() -> None:
    store = Store()
    store.add(value=999)  # same lead, another value: not ours
    loop = asyncio.get_running_loop()
    started, sent_at = loop.time(), just_now()
    result = await reconcile(store.list, sent(value=500), sent_at=sent_at, settle=0.2)
    assert result.state == "absent"
    assert result.opportunity is None
    assert loop.time() - started >= 0.2 - 0.01
    assert 2 <= result.reads <= 3
    assert result.reads == len(store.reads)


async def test_a_settled_miss_still_takes_two_reads() -> None:
    store = Store()
    result = await reconcile(store.list, sent(value=1), sent_at=just_now(10), settle=0.1)
    assert (result.state, result.reads) == ("absent", 2)


async def test_two_matches_are_ambiguous_and_both_are_named() -> None:
    store = Store()
    first, second = store.add(value=7), store.add(value=7)
    result = await reconcile(store.list, sent(value=7), sent_at=just_now(1))
    assert result.state == "ambiguous"
    assert result.opportunity is None
    assert {o.id for o in result.matches} == {first.id, second.id}


async def test_wait_false_is_pending_when_too_early_and_looks_once() -> None:
    store = Store()
    result = await reconcile(store.list, sent(value=3), sent_at=just_now(), wait=False)
    assert (result.state, result.reads) == ("pending", 1)


async def test_wait_false_after_settle_says_absent() -> None:
    store = Store()
    result = await reconcile(store.list, sent(value=3), sent_at=just_now(5), settle=1, wait=False)
    assert (result.state, result.reads) == ("absent", 2)


async def test_created_but_not_yet_listed_is_never_called_absent() -> None:
    # The list shows it only 0.15 s after it was stored; settle is longer than the lag, as it
    # must be: the early reads find nothing, the one at settle finds it.
    store = Store(lag=0.15)
    opp = store.add(value=42)
    early = await reconcile(store.list, sent(value=42), sent_at=just_now(), wait=False)
    assert early.state == "pending"
    result = await reconcile(store.list, sent(value=42), sent_at=just_now(), settle=0.3)
    assert (result.state, result.opportunity) == ("created", opp)
    assert result.reads <= 3


async def test_a_create_this_client_made_or_excluded_never_counts() -> None:
    store = Store()
    ours = store.add(value=5)
    known = RecentIds()
    known.add(ours.id)
    result = await reconcile(
        store.list, sent(value=5), sent_at=just_now(9), settle=0, exclude=Excluded((), known)
    )
    assert result.state == "absent"
    result = await reconcile(
        store.list, sent(value=5), sent_at=just_now(9), settle=0, exclude={ours.id}
    )
    assert result.state == "absent"


async def test_an_identical_opportunity_older_than_the_window_does_not_count() -> None:
    store = Store()
    store.add(value=5, ago=CLOCK_SKEW + 30)  # last month's twin
    result = await reconcile(store.list, sent(value=5), sent_at=just_now(), settle=0)
    assert result.state == "absent"
    inside = store.add(value=5, ago=CLOCK_SKEW - 30)  # our clock ahead of Close's
    result = await reconcile(store.list, sent(value=5), sent_at=just_now(), settle=0)
    assert (result.state, result.opportunity) == ("created", inside)


async def test_identical_siblings_each_get_their_own_opportunity() -> None:
    store = Store()
    a, b = store.add(value=10), store.add(value=10)
    stamps = [just_now(2), just_now(1)]
    results = await reconcile_group(store.list, sent(value=10), stamps, settle=0)
    assert [r.state for r in results] == ["created", "created"]
    assert {r.opportunity.id for r in results if r.opportunity} == {a.id, b.id}


async def test_identical_siblings_with_one_match_after_settle_are_one_created_one_absent() -> None:
    store = Store()
    only = store.add(value=10)
    results = await reconcile_group(
        store.list, sent(value=10), [just_now(3), just_now(2), just_now(1)], settle=0.05
    )
    assert sorted(r.state for r in results) == ["absent", "absent", "created"]
    assert [r.opportunity for r in results if r.opportunity] == [only]


async def test_identical_siblings_before_settle_keep_the_rest_pending() -> None:
    store = Store()
    store.add(value=10)
    results = await reconcile_group(
        store.list, sent(value=10), [just_now(), just_now()], wait=False
    )
    assert sorted(r.state for r in results) == ["created", "pending"]


async def test_without_lead_id_candidates_are_the_recent_creates_of_the_user() -> None:
    store = Store()
    user = "user_" + "U" * 43
    store.add(lead_id="lead_other", user_id=user, value=1)
    mine = store.add(lead_id="lead_untitled", user_id=user, value=77, note="no lead")
    item = CreateOpportunity(user_id=user, value=77, note="no lead")
    result = await reconcile(store.list, item, sent_at=just_now(1))
    assert (result.state, result.opportunity) == ("created", mine)
    assert "lead_id" not in store.reads[0]
    assert store.reads[0]["user_id"] == user
    bare = CreateOpportunity(value=77, note="no lead")  # no lead, no user: by date alone
    assert (await reconcile(store.list, bare, sent_at=just_now(1))).opportunity == mine
    assert set(store.reads[-1]) == {"date_created__gte"}
    null = CreateOpportunity(lead_id=None, value=77, note="no lead")  # sent as null
    assert (await reconcile(store.list, null, sent_at=just_now(1))).opportunity == mine


async def test_values_close_rewrites_still_match() -> None:
    store = Store()
    opp = store.add(
        value=500,
        note="Enterprise plan",
        confidence=0,
        value_period="one_time",
        status_id="stat_default",
        date_won=dt.date(2026, 11, 30),
        custom={"cf_tier": "Gold", "cf_seats": 12, "cf_products": ["Dialer", "CRM"]},
    )
    item = sent(
        value=500,
        note="  Enterprise plan\r\n",
        confidence=None,
        value_period=None,
        status_id=None,
        date_won=dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        custom={
            "cf_tier": " Gold",
            "cf_seats": "12",
            "cf_products": ["CRM", "Dialer"],
            "cf_empty": "",
            "cf_none": None,
        },
    )
    result = await reconcile(store.list, item, sent_at=just_now(1))
    assert (result.state, result.opportunity) == ("created", opp)


@pytest.mark.parametrize(
    "field",
    [
        {"value": 501},
        {"note": "Enterprise plan 2"},
        {"confidence": 10},
        {"custom": {"cf_tier": "Silver"}},
        {"custom": {"cf_new": "x"}},
        {"contact_id": "cont_x"},
    ],
)
async def test_any_sent_field_that_differs_is_no_match(field: dict[str, Any]) -> None:
    store = Store()
    opp = store.add(value=500, note="Enterprise plan", custom={"cf_tier": "Gold"})
    fields = {"value": 500, "note": "Enterprise plan", "custom": {"cf_tier": "Gold"}} | field
    assert list(Probe(sent(**fields)).differences(opp))
    result = await reconcile(store.list, sent(**fields), sent_at=just_now(1), settle=0)
    assert result.state == "absent"


async def test_a_sent_date_created_matches_around_itself_not_around_sent_at() -> None:
    store = Store()
    when = dt.datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    opp = store.add(value=5, date_created=when + dt.timedelta(milliseconds=400))
    result = await reconcile(store.list, sent(value=5, date_created=when), sent_at=just_now(1))
    assert (result.state, result.opportunity) == ("created", opp)
    assert store.reads[0]["date_created__lte"] == when + dt.timedelta(seconds=1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sent_at": dt.datetime(2026, 1, 1)}, "sent_at"),  # naive
        ({"sent_at": "2026-01-01T00:00:00Z"}, "sent_at"),
        ({"sent_at": just_now(), "settle": -1}, "settle"),
        ({"sent_at": just_now(), "settle": True}, "settle"),
        ({"sent_at": just_now(), "settle": float("nan")}, "settle"),
    ],
)
async def test_bad_input_raises_before_any_read(kwargs: dict[str, Any], field: str) -> None:
    store = Store()
    with pytest.raises(InvalidInputError) as info:
        await reconcile(store.list, sent(value=1), **kwargs)
    assert info.value.field == field
    assert store.reads == []


@pytest.mark.parametrize("field", [{"note": ""}, {"value_period": "one_time"}, {"confidence": 0}])
def test_a_default_sent_matches_a_response_that_leaves_the_field_out(field: dict[str, Any]) -> None:
    probe = Probe(sent(**field))
    data = {"id": "oppo_1", "lead_id": LEAD, "date_created": "2026-01-01T00:00:00+00:00"}
    since = dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert probe.matches(decode_opportunity(msgspec.json.encode(data)), since)


async def test_an_infinite_settle_or_a_missing_sent_at_is_refused() -> None:
    store = Store()
    with pytest.raises(InvalidInputError):
        await reconcile(store.list, sent(value=1), sent_at=just_now(), settle=float("inf"))
    with pytest.raises(InvalidInputError) as info:
        await reconcile(store.list, sent(value=1), sent_at=None)
    assert info.value.field == "sent_at"
    assert store.reads == []
