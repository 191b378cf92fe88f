"""The import journal: an append-only JSON Lines record of each row's state."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from close_async._journal import DONE, UNKNOWN_STATES, Journal, RowState


def lines(path: Path) -> list[dict[str, object]]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def test_states() -> None:
    assert DONE == "created"
    assert {"sending", "unknown"} == UNKNOWN_STATES


def test_new_journal_is_empty_and_created(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        assert journal.rows == {}
        assert journal.state(1) is None
    assert path.exists()
    assert path.read_bytes() == b""


def test_record_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(2, "sending", digest="d2")
        journal.record(2, "created", id="oppo_2")
        journal.record(3, "invalid", error="confidence=150: must be between 0 and 100")
        journal.record(4, "sending", digest="d4")
        journal.record(5, "sending", digest="d5")
        journal.record(5, "failed", error="HTTP 400")
        journal.record(6, "sending", digest="d6")
        journal.record(6, "unknown", error="HTTP 504")
    assert lines(path)[0] == {"row": 2, "state": "sending", "digest": "d2"}
    assert len(lines(path)) == 8
    loaded = Journal(path)
    try:
        assert loaded.state(2) == RowState("created", "d2", None)
        assert loaded.state(3) == RowState(
            "invalid", None, "confidence=150: must be between 0 and 100"
        )
        assert loaded.state(4) == RowState("sending", "d4")
        assert loaded.state(5) == RowState("failed", "d5", "HTTP 400")
        assert loaded.state(6) == RowState("unknown", "d6", "HTTP 504")
        assert loaded.state(7) is None
    finally:
        loaded.close()


def test_appends_across_runs_and_last_state_wins(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(1, "sending", digest="a")
        journal.record(1, "failed", error="HTTP 400")
        journal.record(2, "sending", digest="b")
    with Journal(path) as journal:
        assert journal.state(1) == RowState("failed", "a", "HTTP 400")
        assert journal.state(2) == RowState("sending", "b")
        journal.record(1, "sending", digest="a")
        journal.record(1, "created", id="oppo_1")
        journal.record(2, "unknown", error="lost")
    with Journal(path) as journal:
        assert journal.state(1) == RowState("created", "a", None)
        assert journal.state(2) == RowState("unknown", "b", "lost")
    assert len(lines(path)) == 6  # appended, never rewritten


def test_digest_is_carried_to_later_records(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(9, "sending", digest="first")
        journal.record(9, "created", id="oppo_9")
        journal.record(10, "invalid", error="bad")  # never sent: no digest at all
    with Journal(path) as journal:
        state = journal.state(9)
        assert state is not None
        assert state.digest == "first"
        assert state.state == "created"
        ten = journal.state(10)
        assert ten is not None
        assert ten.digest is None


def test_a_later_digest_replaces_an_earlier_one(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b'{"row":1,"state":"sending","digest":"old"}\n{"row":1,"state":"sending","digest":"new"}\n'
    )
    with Journal(path) as journal:
        assert journal.state(1) == RowState("sending", "new")


@pytest.mark.parametrize(
    "tail",
    [
        b'{"row": 7, "state": "crea',  # cut short by a kill mid-write
        b'{"row": 7, "state": "created", "id": "oppo_7"',
        b'{"row": 7',
        b"\x00\x00\x00",
    ],
)
def test_truncated_last_line_is_ignored(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b'{"row":7,"state":"sending","digest":"d7"}\n{"row":8,"state":"created","id":"o8"}\n' + tail
    )
    with Journal(path) as journal:
        assert journal.state(7) == RowState("sending", "d7")
        assert journal.state(8) == RowState("created", None, None)


@pytest.mark.parametrize(
    "junk",
    [b"", b"not json", b"[1, 2]", b'{"state": "created"}', b'{"row": "x", "state": "created"}'],
)
def test_lines_that_record_nothing_are_skipped(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(junk + b'\n{"row":3,"state":"created","id":"o3"}\n')
    with Journal(path) as journal:
        assert set(journal.rows) == {3}


def test_record_after_a_truncated_line_survives(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    # A kill mid-write left a torn last line: the next run's first record must not be glued
    # onto it (and so lost to the run after).
    path.write_bytes(b'{"row":1,"state":"created","id":"o1"}\n{"row": 2, "state": "sen')
    with Journal(path) as journal:
        journal.record(3, "sending", digest="d3")
        journal.record(3, "created", id="o3")
        journal.record(4, "sending", digest="d4")
    with Journal(path) as journal:
        assert journal.state(3) == RowState("created", "d3", None)
        assert journal.state(4) == RowState("sending", "d4")


def test_reopening_a_clean_journal_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(1, "created", id="o1")
    before = path.read_bytes()
    with Journal(path):
        pass
    assert path.read_bytes() == before
    with Journal(path) as journal:
        journal.record(2, "created", id="o2")
    assert path.read_bytes() == before + b'{"row":2,"state":"created","id":"o2"}\n'


def test_records_reach_the_file_at_once(tmp_path: Path) -> None:
    # Flushed per record: a process killed right after record() has lost nothing.
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    try:
        journal.record(1, "sending", digest="d")
        assert lines(path) == [{"row": 1, "state": "sending", "digest": "d"}]
        journal.record(1, "created", id="oppo_1")
        assert len(lines(path)) == 2
    finally:
        journal.close()


@pytest.mark.parametrize("fsync", [False, True])
def test_fsync_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with Journal(tmp_path / "j.jsonl", fsync=fsync) as journal:
        journal.record(1, "sending", digest="d")
        journal.record(1, "created", id="o")
        journal.record(2, "invalid", error="x")
        fileno = journal._file.fileno()
    assert calls == ([fileno] * 3 if fsync else [])


def test_unicode_and_extra_fields_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(1, "failed", error="lead: Objet n\u2019existe pas \u2603", extra=[1, 2])
    assert lines(path) == [
        {
            "row": 1,
            "state": "failed",
            "error": "lead: Objet n\u2019existe pas \u2603",
            "extra": [1, 2],
        }
    ]
    with Journal(path) as journal:
        assert journal.state(1) == RowState("failed", None, "lead: Objet n\u2019existe pas \u2603")
