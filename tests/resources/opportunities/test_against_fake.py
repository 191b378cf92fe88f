"""The opportunity resource against FakeCloseServer: list paging while rows are added, past a
_skip cap, get/update/delete; checked at the fake's own record."""

from __future__ import annotations

import pytest

from close_async import InvalidInputError, NotFoundError
from close_async._resources import pagination
from tests.support.servers import fake_and_client


async def test_listing_while_rows_are_added_lists_every_row_once() -> None:
    async with fake_and_client() as (server, close):
        await close.opportunities.create_many(
            [{"lead_id": "lead_a", "value": n} for n in range(120)]
        )
        listed: list[str] = []
        async for opp in close.opportunities.list(lead_id="lead_a", page_size=25):
            listed.append(opp.id)
            if len(listed) % 25 == 0 and len(listed) <= 100:  # 2 new rows at each page boundary
                for _ in range(2):
                    await close.opportunities.create(lead_id="lead_a", value=-1)
        await close.opportunities.create(lead_id="lead_b")  # another lead: never listed
    expected = [o["id"] for o in server.opportunities.values() if o["lead_id"] == "lead_a"]
    assert len(listed) == len(set(listed))  # no duplicates
    assert set(listed) == set(expected)  # none missed, the ones added during the walk too
    assert len(expected) == 120 + 8


async def test_listing_past_the_fakes_skip_cap_never_sends_a_deeper_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pagination, "MAX_SKIP", 60)
    async with fake_and_client(max_skip=60) as (server, close):
        await close.opportunities.create_many([{"lead_id": "lead_a"} for _ in range(230)])
        listed = [opp.id async for opp in close.opportunities.list(page_size=20)]
    lists = [r for r in server.requests if r.method == "GET"]
    assert sorted(listed) == sorted(server.opportunities)
    assert len(listed) == 230
    assert all(r.status == 200 for r in lists)  # no 400 for a _skip past the cap


async def test_get_update_delete_at_the_fakes_record() -> None:
    async with fake_and_client() as (server, close):
        made = await close.opportunities.create(
            lead_id="lead_a", confidence=10, note="n", custom={"cf_tier": "Gold"}
        )
        got = await close.opportunities.get(made.id)
        assert (got.confidence, got.custom) == (10, {"cf_tier": "Gold"})
        updated = await close.opportunities.update(made.id, confidence=90, custom={"cf_tier": None})
        record = server.opportunities[made.id]
        assert (record["confidence"], record["note"]) == (90, "n")  # the rest untouched
        assert "custom.cf_tier" not in record
        assert (updated.confidence, updated.custom) == (90, {})
        await close.opportunities.delete(made.id)
        assert made.id not in server.opportunities
        with pytest.raises(NotFoundError):
            await close.opportunities.get(made.id)
        with pytest.raises(NotFoundError):
            await close.opportunities.delete(made.id)  # its first write met the 404: it never was
        with pytest.raises(NotFoundError):
            await close.opportunities.update(made.id, confidence=1)


async def test_an_empty_listing_is_one_request() -> None:
    async with fake_and_client() as (server, close):
        assert [o async for o in close.opportunities.list(lead_id="lead_none")] == []
    assert len([r for r in server.requests if r.method == "GET"]) == 1


async def test_contact_and_id_filters_list_exactly_the_matching_rows() -> None:
    async with fake_and_client() as (server, close):
        a1, a2, b1, none = await close.opportunities.create_many(
            [
                {"lead_id": "lead_a", "contact_id": "cont_1"},
                {"lead_id": "lead_a", "contact_id": "cont_2"},
                {"lead_id": "lead_b", "contact_id": "cont_1"},
                {"lead_id": "lead_c"},
            ]
        )

        async def ids(**filters: object) -> set[str]:
            return {o.id async for o in close.opportunities.list(**filters)}

        assert await ids(contact_id="cont_1") == {a1.id, b1.id}
        assert await ids(contact_id__in=["cont_2", "cont_x"]) == {a2.id}
        assert await ids(id__in=(a1.id, none.id)) == {a1.id, none.id}
        assert await ids(lead_id__in=["lead_b", "lead_c"]) == {b1.id, none.id}
        assert await ids(lead_id="lead_a", contact_id__in="cont_1,cont_2") == {a1.id, a2.id}
    lists = [r for r in server.requests if r.method == "GET"]
    assert all(r.status == 200 for r in lists)
    assert len(lists) == 5


@pytest.mark.parametrize("name", ["id__in", "lead_id__in", "contact_id__in", "user_id__in"])
@pytest.mark.parametrize("value", [[], (), ["oppo_1", 2], ["oppo_1", ""], [None]], ids=repr)
async def test_a_bad_in_filter_is_refused_naming_it_and_nothing_is_sent(
    name: str, value: object
) -> None:
    async with fake_and_client() as (server, close):
        with pytest.raises(InvalidInputError) as info:
            close.opportunities.list(**{name: value})
    assert (info.value.field, info.value.value) == (name, value)
    assert info.value.reason == "must be a non-empty list of non-empty strings"
    assert server.requests == []
