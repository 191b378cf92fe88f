"""A batched journal write that fails or is cut short: nothing written twice, nothing lost unsaid.

The disks here are ``os.write`` stand-ins that behave as Linux does: a write that fills the disk
returns the short count of what fitted, and the next one raises ENOSPC; an EIO writes nothing.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from close_async import AsyncCloseClient
from close_async._tools.importer import EXIT_JOURNAL, run_import
from close_async._tools.journal import Journal
from close_async.testing import FakeCloseServer
from tests.support.cli import csv_rows, invoke, journal_records, server_thread, write_csv

SENT_AT = "2026-12-01T00:00:00.000+00:00"
_real_write = os.write


def exported(journal: Journal, out: Path) -> dict[int, str]:
    journal.export(out)
    return {r["row"]: r["state"] for r in map(json.loads, out.read_text().splitlines())}


def whole_lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def short_then(failure: int, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """The next write takes its first line and 10 bytes of the next, then raises ``failure``."""
    state = {"armed": False, "cut": False}

    def disk(fd: int, data: bytes) -> int:
        if state["armed"]:
            state["armed"], state["cut"] = False, True
            return _real_write(fd, bytes(data)[: bytes(data).index(b"\n") + 10])
        if state["cut"]:
            state["cut"] = False
            raise OSError(failure, os.strerror(failure))
        return _real_write(fd, data)

    monkeypatch.setattr(os, "write", disk)
    return state


async def three_outcomes_cut_short(
    journal: Journal, failure: int, monkeypatch: pytest.MonkeyPatch, *, direct: bool = False
) -> None:
    """Rows 2-4 sent, then their outcomes in one batch that the disk takes 1 line and a bit of
    (``direct``: the created ones by ``Journal.created``)."""
    for row in (2, 3, 4):
        journal.sending(row, row, SENT_AT)
    disk = short_then(failure, monkeypatch)
    for row in (2, 3):
        if direct:
            journal.created(row, f"oppo_{row}")
        else:
            journal.outcome(row, "created", id=f"oppo_{row}")
    journal.outcome(4, "failed", error="HTTP 400")
    disk["armed"] = True
    await asyncio.sleep(0)  # the batch goes out


async def test_a_short_write_on_a_full_disk_goes_on_where_it_stopped_writing_no_line_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        await three_outcomes_cut_short(journal, errno.ENOSPC, monkeypatch)  # the reserve: the rest
        assert journal.full is not None
        assert journal.unwritten == []
        lines = whole_lines(path)
        assert len(lines) == len(set(lines)) == 1 + 6  # the header, 3 sending, 3 outcomes
        assert exported(journal, tmp_path / "out.jsonl") == {
            2: "created",
            3: "created",
            4: "failed",
        }


async def test_a_short_write_then_an_io_error_lists_only_the_outcomes_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        await three_outcomes_cut_short(journal, errno.EIO, monkeypatch, direct=True)
        assert journal.broken is not None
        assert journal.unwritten == [(3, "created oppo_3"), (4, "failed")]  # 2's line is written
        assert [journal.state(row) for row in (2, 3, 4)] == ["created", "sending", "sending"]
        out = exported(journal, tmp_path / "out.jsonl")
    assert out == {2: "created", 3: "unknown", 4: "unknown"}


async def test_an_outcome_a_failed_write_lost_is_exported_as_unknown_not_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int, data: bytes) -> int:
        raise OSError(errno.EIO, "Input/output error")

    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.sending(2, 2, SENT_AT)
        journal.sending(3, 3, SENT_AT)
        journal.outcome(2, "failed", error="HTTP 400")
        journal.created(3, "oppo_3")
        monkeypatch.setattr(os, "write", broken)
        await asyncio.sleep(0)
        monkeypatch.setattr(os, "write", _real_write)
        assert journal.unwritten == [(2, "failed"), (3, "created oppo_3")]
        assert (journal.state(2), journal.state(3)) == ("sending", "sending")  # as the file says
        assert exported(journal, tmp_path / "out.jsonl") == {2: "unknown", 3: "unknown"}


def fails_on_created(failure: int, reserve: Path | None = None) -> object:
    """A journal disk that fails every write carrying a "created" record (ENOSPC: while the
    reserve is there, so its space takes them)."""

    def write(fd: int, data: bytes) -> int:
        if b'"created"' in bytes(data) and (reserve is None or reserve.exists()):
            raise OSError(failure, os.strerror(failure))
        return _real_write(fd, data)

    return write


def test_an_import_whose_last_created_record_cannot_be_written_exits_4_naming_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_csv(tmp_path / "in.csv", csv_rows(1))
    journal, output = tmp_path / "j.jsonl", tmp_path / "out.jsonl"
    with server_thread() as fake:
        monkeypatch.setattr(os, "write", fails_on_created(errno.EIO))
        args = ["import", str(source), "--journal", str(journal), "--output", str(output)]
        result = invoke(args, base_url=fake.base_url)
        monkeypatch.setattr(os, "write", _real_write)
        assert sum(fake.created_notes().values()) == 1  # the server created it
    assert [r["state"] for r in journal_records(journal)] == ["sending"]
    assert result.exit_code == EXIT_JOURNAL, result.output
    assert "line 2: created oppo_" in result.stderr  # named: not in the journal
    assert [json.loads(line)["state"] for line in output.read_text().splitlines()] == ["unknown"]


def test_an_import_whose_disk_fills_on_its_last_outcome_exits_4_saying_the_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_csv(tmp_path / "in.csv", csv_rows(1))
    journal = tmp_path / "j.jsonl"
    reserve = journal.with_name(journal.name + ".reserve")
    with server_thread() as fake:
        monkeypatch.setattr(os, "write", fails_on_created(errno.ENOSPC, reserve))
        result = invoke(["import", str(source), "--journal", str(journal)], base_url=fake.base_url)
        monkeypatch.setattr(os, "write", _real_write)
    assert [r["state"] for r in journal_records(journal)] == ["sending", "created"]
    assert not reserve.exists()  # its space took the outcome
    assert result.exit_code == EXIT_JOURNAL, result.output
    assert "disk is full" in result.stderr
    assert "Free some space, then resume" in result.stderr


@pytest.mark.parametrize("after", [30, 120])
async def test_an_import_whose_disk_fills_mid_batch_exports_every_row_it_recorded(
    close_server: FakeCloseServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: int
) -> None:
    journal_path = tmp_path / "j.jsonl"
    reserve = journal_path.with_name(journal_path.name + ".reserve")
    room = {"left": -1}  # bytes the disk has left once full (-1: not full yet)

    def disk(fd: int, data: bytes) -> int:
        data = bytes(data)
        if os.fstat(fd).st_ino != journal_path.stat().st_ino:
            return _real_write(fd, data)
        if room["left"] < 0 and data.count(b"\n") >= 2 and os.fstat(fd).st_size > after * 100:
            room["left"] = data.index(b"\n") + 10  # full mid-way through this batch's 2nd line
        if room["left"] < 0:
            return _real_write(fd, data)
        if room["left"] == 0 and not reserve.exists():
            room["left"] = 64 * 1024  # the space the reserve gave up
        if room["left"] == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = _real_write(fd, data[: room["left"]])
        room["left"] -= written
        return written

    source = write_csv(tmp_path / "in.csv", csv_rows(400))
    async with AsyncCloseClient("k", base_url=close_server.base_url) as client:
        with Journal(journal_path) as journal:
            monkeypatch.setattr(os, "write", disk)
            summary = await run_import(client, source, journal=journal, concurrency=20)
            monkeypatch.setattr(os, "write", _real_write)
            out = exported(journal, tmp_path / "out.jsonl")
    assert summary.stop_code == EXIT_JOURNAL
    assert "disk is full" in (summary.stopped or "")
    lines = whole_lines(journal_path)
    assert len(lines) == len(set(lines)), "a line is in the journal twice"
    last = {r["row"]: r["state"] for r in journal_records(journal_path)}
    assert out == {row: state for row, state in last.items() if state != "waiting"} | {
        row: "unknown" for row, state in last.items() if state == "sending"
    }
    created = Counter(state for state in last.values())["created"]
    assert 0 < created == len(close_server.created) < 400  # each creation recorded, once
