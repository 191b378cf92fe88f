"""``run_import(reconcile=True)``: unknown rows are looked up, found ones recorded as created,
absent ones sent again once; identical rows never share an opportunity. Checked at the server's
record.

The list Close would answer is read from the fake server's own record (``server.created``), each
opportunity visible only ``lag`` seconds after it was created, as Close's list lags its writes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from close_async import AsyncCloseClient, decode_opportunity
from close_async._resources.opportunities.resource import Opportunities
from close_async._tools.import_reconcile import MAX_SENT_AGAIN
from close_async._tools.importer import ImportSummary, run_import
from close_async._tools.journal import Journal
from close_async.models import Opportunity
from close_async.testing import FakeCloseServer

LEAD = "lead_" + "ImportReconcile".ljust(43, "0")
UTC = dt.timezone.utc


def lagging_list(
    server: FakeCloseServer, lag: float, reads: list[dict[str, Any]]
) -> Callable[..., AsyncIterator[Opportunity]]:
    async def list_(**filters: Any) -> AsyncIterator[Opportunity]:
        reads.append(filters)
        now = dt.datetime.now(UTC)
        for data in list(server.created):
            opp = decode_opportunity(msgspec.json.encode(data))
            assert opp.date_created is not None
            if now - opp.date_created < dt.timedelta(seconds=lag):
                continue
            if "lead_id" in filters and opp.lead_id != filters["lead_id"]:
                continue
            if opp.date_created < filters["date_created__gte"]:
                continue
            yield opp

    return list_


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch, close_server: FakeCloseServer) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    lister = lagging_list(close_server, 0.1, seen)
    monkeypatch.setattr(Opportunities, "_lister", lambda self: lister)
    return seen


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(msgspec.json.encode(r).decode() + "\n" for r in rows))
    return path


def states(journal: Path) -> dict[int, dict[str, Any]]:
    last: dict[int, dict[str, Any]] = {}
    for line in journal.read_bytes().splitlines():
        record = msgspec.json.decode(line)
        if "row" in record:
            last[record["row"]] = record
    return last


async def run(
    server: FakeCloseServer, source: Path, journal: Path, **options: Any
) -> ImportSummary:
    async with AsyncCloseClient("key", base_url=server.base_url) as client:
        with Journal(journal) as j:
            return await run_import(client, source, journal=j, concurrency=1, **options)


def notes(server: FakeCloseServer) -> Counter[str]:
    return Counter(str(o["note"]) for o in server.created)


async def test_a_rerun_finds_the_created_and_sends_the_absent_once(
    close_server: FakeCloseServer, reads: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows = [{"lead_id": LEAD, "value": i, "note": f"row-{i}"} for i in range(1, 7)]
    source, journal = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "j.jsonl"
    close_server.fail_next("drop")  # row 1: created, answer lost
    close_server.fail_next("drop_before_create")  # row 2: not created
    close_server.fail_next("500_after_create")  # row 3: created, 500
    first = await run(close_server, source, journal)
    assert [line for line, _ in first.unknown] == [1, 2, 3]
    assert all(states(journal)[n]["sent_at"] for n in (1, 2, 3))
    second = await run(close_server, source, journal, reconcile=True, settle=0.3)
    assert (second.unknown, second.failed) == ([], [])
    assert (second.reconciled, second.resent, second.created, second.skipped) == (2, 1, 3, 3)
    assert notes(close_server) == Counter(f"row-{i}" for i in range(1, 7))  # once each
    final = states(journal)
    assert {final[n]["state"] for n in final} == {"created"}
    by_note = {o["note"]: o["id"] for o in close_server.created}
    assert all(final[n]["id"] == by_note[f"row-{n}"] for n in final)
    assert len(reads) <= 3 * 3


async def test_this_runs_own_unknown_rows_are_reconciled_at_its_end(
    close_server: FakeCloseServer, reads: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows = [{"lead_id": LEAD, "value": i, "note": f"row-{i}"} for i in range(1, 4)]
    source, journal = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "j.jsonl"
    close_server.fail_next("drop")
    close_server.fail_next("drop_before_create")
    summary = await run(close_server, source, journal, reconcile=True, settle=0.3)
    assert summary.exit_code == 0
    assert (summary.created, summary.reconciled, summary.resent) == (3, 1, 1)
    assert notes(close_server) == Counter(["row-1", "row-2", "row-3"])


async def test_identical_rows_are_never_matched_to_one_opportunity(
    close_server: FakeCloseServer, reads: list[dict[str, Any]], tmp_path: Path
) -> None:
    same = {"lead_id": LEAD, "value": 100, "note": "twin"}
    source, journal = write_rows(tmp_path / "in.jsonl", [same] * 4), tmp_path / "j.jsonl"
    close_server.fail_next("drop")  # 1: created
    close_server.fail_next("drop_before_create")  # 2: not created
    # 3 and 4 are created and known: their ids are claimed in the journal.
    await run(close_server, source, journal)
    assert len(close_server.created) == 3
    summary = await run(close_server, source, journal, reconcile=True, settle=0.3)
    assert summary.unknown == []
    assert (summary.reconciled, summary.resent) == (1, 1)
    assert len(close_server.created) == 4  # four rows, four opportunities, no more
    ids = [record["id"] for record in states(journal).values()]
    assert sorted(ids) == sorted(o["id"] for o in close_server.created)


async def test_a_row_created_but_not_yet_listed_is_not_sent_again(
    close_server: FakeCloseServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lister = lagging_list(close_server, 0.4, [])  # longer than the run: first reads miss it
    monkeypatch.setattr(Opportunities, "_lister", lambda self: lister)
    rows = [{"lead_id": LEAD, "value": 1, "note": "late"}]
    source, journal = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "j.jsonl"
    close_server.fail_next("drop")
    summary = await run(close_server, source, journal, reconcile=True, settle=0.6)
    assert (summary.reconciled, summary.resent, summary.unknown) == (1, 0, [])
    assert len(close_server.created) == 1


async def test_ambiguous_rows_stay_unknown_and_are_named(
    close_server: FakeCloseServer, reads: list[dict[str, Any]], tmp_path: Path
) -> None:
    row = {"lead_id": LEAD, "value": 5, "note": "dup"}
    source, journal = write_rows(tmp_path / "in.jsonl", [row]), tmp_path / "j.jsonl"
    close_server.fail_next("drop")
    await run(close_server, source, journal)
    async with AsyncCloseClient("other", base_url=close_server.base_url) as someone:
        await someone.opportunities.create(lead_id=LEAD, value=5, note="dup")  # a twin by hand
    summary = await run(close_server, source, journal, reconcile=True, settle=0.2)
    assert [line for line, _ in summary.unknown] == [1]
    assert "ambiguous, 2 opportunities match" in summary.unknown[0][1]
    assert summary.exit_code == 1
    assert len(close_server.created) == 2  # nothing sent again


async def test_each_absent_verdict_allows_one_new_attempt_up_to_the_cap(
    close_server: FakeCloseServer, reads: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows = [{"lead_id": LEAD, "value": 9, "note": "unlucky"}]
    source, journal = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "j.jsonl"
    close_server.fail_next("drop_before_create", times=2)  # the first send and the first resend
    summary = await run(close_server, source, journal, reconcile=True, settle=0.2)
    assert (summary.resent, summary.created, summary.unknown) == (2, 1, [])
    assert len(close_server.requests) == 3
    assert len(close_server.created) == 1


async def test_a_row_absent_after_every_attempt_is_failed_not_sent_again(
    close_server: FakeCloseServer, reads: list[dict[str, Any]], tmp_path: Path
) -> None:
    rows = [{"lead_id": LEAD, "value": 9, "note": "unluckier"}]
    source, journal = write_rows(tmp_path / "in.jsonl", rows), tmp_path / "j.jsonl"
    close_server.fail_next("drop_before_create", times=1 + MAX_SENT_AGAIN)
    summary = await run(close_server, source, journal, reconcile=True, settle=0.1)
    assert summary.resent == MAX_SENT_AGAIN
    assert [line for line, _ in summary.failed] == [1]
    assert states(journal)[1]["state"] == "failed"
    assert len(close_server.requests) == 1 + MAX_SENT_AGAIN
    assert close_server.created == []


def test_the_journal_keeps_the_first_sent_at_of_a_row_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(2, "sending", digest="ab", sent_at="2026-12-01T10:00:00.000+00:00")
        journal.record(2, "unknown", error="lost", sent_at="2026-12-01T10:00:00.500+00:00")
        journal.record(3, "sending", digest="cd", sent_at="2026-12-01T10:00:01.000+00:00")
        journal.record(3, "created", id="oppo_3")
        journal.record(4, "sending", digest="ef")  # written before sent_at was recorded
    with Journal(path) as journal:  # read back, as a re-run does
        assert journal.sent_at(2) == dt.datetime(2026, 12, 1, 10, tzinfo=UTC)
        assert journal.sent_at(3) is None  # created: no longer in flight
        assert journal.sent_at(4) is None
        assert journal.created_ids() == {"oppo_3"}
