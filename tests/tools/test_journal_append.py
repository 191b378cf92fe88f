"""The journal's write side: outcomes written a batch at a time, and what a failed write lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from pathlib import Path

import msgspec
import pytest

from close_async import AsyncCloseClient
from close_async._tools.import_reconcile import sent_at_now
from close_async._tools.importer import EXIT_JOURNAL, run_import
from close_async._tools.journal import Journal, JournalWriteError
from close_async.testing import FakeCloseServer

LEAD = "lead_" + "JournalAppendTests".ljust(43, "0")


def records(path: Path) -> list[tuple[int, str]]:
    lines = path.read_bytes().splitlines()
    decoded = [msgspec.json.decode(line) for line in lines if line]  # b"": a torn line ended
    return [(d["row"], d["state"]) for d in decoded if "journal" not in d]


def counting_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    writes: list[bytes] = []
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    return writes


async def test_outcomes_go_out_with_the_next_sending_record_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        writes = counting_writes(monkeypatch)
        journal.sending(1, 0xD1, sent_at_now())
        journal.sending(2, 0xD2, sent_at_now())
        journal.outcome(1, "created", id="o1")
        journal.outcome(2, "failed", error="HTTP 400")
        assert records(path) == [(1, "sending"), (2, "sending")]  # held, this iteration
        journal.sending(3, 0xD3, sent_at_now())  # "sending" itself is never held
        assert len(writes) == 3
        held = [(1, "created"), (2, "failed")]
        assert records(path) == [(1, "sending"), (2, "sending"), *held, (3, "sending")]
        assert (journal.state(1), journal.state(2), journal.state(3)) == (
            "created",
            "failed",
            "sending",
        )


async def test_held_outcomes_reach_the_os_by_the_end_of_the_loop_iteration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.sending(1, 0xD1, sent_at_now())
        writes = counting_writes(monkeypatch)
        journal.outcome(1, "created", id="o1")
        journal.outcome(2, "invalid", error="bad")
        await asyncio.sleep(0)
        assert len(writes) == 1  # both in one write
        assert records(path) == [(1, "sending"), (1, "created"), (2, "invalid")]


def test_outside_an_event_loop_an_outcome_is_written_at_once(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.outcome(1, "created", id="o1")
        assert records(path) == [(1, "created")]


def test_a_record_written_at_once_keeps_the_order_of_what_was_held(tmp_path: Path) -> None:
    async def run() -> None:
        with Journal(path) as journal:
            journal.sending(1, 0xD1, sent_at_now())
            journal.outcome(1, "failed", error="HTTP 400")
            journal.record(1, "waiting")  # written at once, after what was held
            assert records(path) == [(1, "sending"), (1, "failed"), (1, "waiting")]
            journal.outcome(2, "created", id="o2")
        assert records(path)[-1] == (2, "created")  # close() writes what is still held

    path = tmp_path / "j.jsonl"
    asyncio.run(run())
    with Journal(path) as journal:
        assert journal.last[1] == 3  # the ordinals the journal noted match the file's order
        assert (journal.state(1), journal.state(2)) == ("waiting", "created")


async def test_outcomes_a_failed_write_loses_are_listed_as_unwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"

    def broken(fd: int, data: bytes) -> int:
        raise OSError(5, "Input/output error")

    with Journal(path) as journal:
        journal.sending(1, 0xD1, sent_at_now())
        journal.sending(2, 0xD2, sent_at_now())
        journal.outcome(1, "created", id="oppo_1")
        journal.outcome(2, "failed", error="HTTP 400")
        monkeypatch.setattr(os, "write", broken)
        with pytest.raises(JournalWriteError, match="Input/output"):
            journal.sending(3, 0xD3, sent_at_now())  # its request must not leave
        assert journal.unwritten == [(1, "created oppo_1"), (2, "failed")]
        with pytest.raises(JournalWriteError):
            journal.outcome(4, "created", id="oppo_4")  # broken: refused, not held
        await asyncio.sleep(0)  # nothing left to flush
    assert records(path) == [(1, "sending"), (2, "sending")]


async def test_a_full_disk_writes_the_held_outcomes_into_the_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    real_write = os.write
    failures = [OSError(28, "No space left on device")]

    def full_once(fd: int, data: bytes) -> int:
        if failures:
            raise failures.pop()
        return real_write(fd, data)

    with Journal(path) as journal:
        journal.sending(1, 0xD1, sent_at_now())
        monkeypatch.setattr(os, "write", full_once)
        journal.outcome(1, "created", id="oppo_1")
        await asyncio.sleep(0)  # the flush meets the full disk: the reserve takes it
        assert journal.full is not None
        assert journal.unwritten == []
        with pytest.raises(JournalWriteError):
            journal.sending(2, 0xD2, sent_at_now())  # no new request once the disk is full
        journal.outcome(3, "failed", error="HTTP 400")  # outcomes still recorded
    assert records(path) == [(1, "sending"), (1, "created"), (3, "failed")]


def test_sent_at_now_is_the_iso_text_of_now_in_milliseconds() -> None:
    for _ in range(3):
        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        text = sent_at_now()
        after = dt.datetime.now(dt.timezone.utc)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", text)
        assert before <= dt.datetime.fromisoformat(text) <= after


@pytest.mark.parametrize("good_writes", [0, 2, 5])
async def test_an_import_whose_journal_breaks_names_every_created_row_it_could_not_record(
    close_server: FakeCloseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    good_writes: int,
) -> None:
    source = tmp_path / "rows.jsonl"
    notes = [f"row-{i}" for i in range(1, 41)]
    source.write_text("".join(f'{{"lead_id": "{LEAD}", "note": "{n}"}}\n' for n in notes))
    real_write = os.write
    left = [good_writes]

    def breaks(fd: int, data: bytes) -> int:  # the first write of held outcomes past a few
        if b'"created"' in data:
            if left[0] <= 0:
                raise OSError(5, "Input/output error")
            left[0] -= 1
        return real_write(fd, data)

    path = tmp_path / "j.jsonl"
    async with AsyncCloseClient("k", base_url=close_server.base_url) as client:
        with Journal(path) as journal:
            monkeypatch.setattr(os, "write", breaks)
            summary = await run_import(client, source, journal=journal, concurrency=4)
            monkeypatch.setattr(os, "write", real_write)
    assert summary.stop_code == EXIT_JOURNAL
    recorded = dict(records(path))
    unrecorded = dict(summary.unrecorded)
    line_of = {n: i for i, n in enumerate(notes, start=1)}
    created = {line_of[str(o["note"])]: o["id"] for o in close_server.created}
    assert created  # some rows went through before the journal broke
    for line, oid in created.items():  # the server's record: each one recorded, or named
        assert recorded.get(line) == "created" or unrecorded.get(line) == f"created {oid}"


def test_what_the_journal_notes_as_it_writes_is_what_a_resume_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"

    async def run() -> Journal:
        with Journal(path) as journal:
            for row in (3, 1, 2, 40, 3):
                journal.sending(row, row, sent_at_now())
            journal.created(1, "o1")
            journal.outcome(2, "unknown", error="timed out", sent_at="2026-12-01T00:00:00+00:00")
            journal.record(3, "waiting")
            journal.sending(2, 0, sent_at_now())  # no digest: the recorded one stays
            journal.created(40, "o40")
        return journal

    written = asyncio.run(run())
    with Journal(path) as read:
        for row in range(1, 41):
            assert (read.state(row), read.digest(row)) == (written.state(row), written.digest(row))
            assert read.last[row] == written.last[row]
        assert (read.errors, read.sent_ats) == (written.errors, written.sent_ats)
        assert read.state(2) == "sending"
        assert read.digest(2) == 2


def test_a_loop_that_ended_before_its_flush_does_not_keep_the_next_loops_outcomes_held(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:

        async def hold_one() -> None:
            journal.outcome(1, "created", id="o1")

        first = asyncio.new_event_loop()
        task = first.create_task(hold_one())
        first.call_soon(first.stop)  # the loop ends with the task's step: its flush never runs
        first.run_forever()
        first.close()
        assert task.done()
        assert records(path) == []

        async def hold_another() -> None:
            journal.outcome(2, "created", id="o2")
            await asyncio.sleep(0)
            assert records(path) == [(1, "created"), (2, "created")]

        asyncio.run(hold_another())
