"""The import journal: an append-only JSON Lines record of each row's state."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import msgspec
import pytest

from close_async._tools.journal import (
    DONE,
    UNKNOWN_STATES,
    Journal,
    JournalLockedError,
    JournalWriteError,
)


def lines(path: Path) -> list[dict[str, object]]:
    """The records, without the header line."""
    decoded = [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]
    return [d for d in decoded if "journal" not in d]


def state(journal: Journal, row: int) -> tuple[str | None, int]:
    return journal.state(row), journal.digest(row)


def test_states() -> None:
    assert DONE == "created"
    assert {"sending", "unknown"} == UNKNOWN_STATES


def test_new_journal_is_empty_and_created(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        assert journal.recorded_rows() == 0
        assert journal.state(1) is None
    assert path.exists()
    assert path.read_bytes() == b'{"journal":2,"input":null}\n'  # format 2: CRC digests


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
        assert state(loaded, 2) == ("created", 0xD2)
        assert state(loaded, 3) == ("invalid", 0)
        assert state(loaded, 4) == ("sending", 0xD4)
        assert state(loaded, 5) == ("failed", 0xD5)
        assert state(loaded, 6) == ("unknown", 0xD6)
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
        assert state(journal, 1) == ("failed", 0xA)
        assert state(journal, 2) == ("sending", 0xB)
        journal.record(1, "sending", digest="a")
        journal.record(1, "created", id="oppo_1")
        journal.record(2, "unknown", error="lost")
    with Journal(path) as journal:
        assert state(journal, 1) == ("created", 0xA)
        assert state(journal, 2) == ("unknown", 0xB)
    assert len(lines(path)) == 6  # appended, never rewritten


def test_digest_is_carried_to_later_records(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(9, "sending", digest="f1")
        journal.record(9, "created", id="oppo_9")
        journal.record(10, "invalid", error="bad")  # never sent: no digest at all
    with Journal(path) as journal:
        assert state(journal, 9) == ("created", 0xF1)
        assert state(journal, 10) == ("invalid", 0)


def test_a_later_digest_replaces_an_earlier_one(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b'{"row":1,"state":"sending","digest":"01d"}\n{"row":1,"state":"sending","digest":"2e3"}\n'
    )
    with Journal(path) as journal:
        assert state(journal, 1) == ("sending", 0x2E3)


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
        assert state(journal, 7) == ("sending", 0xD7)
        assert state(journal, 8) == ("created", 0)


@pytest.mark.parametrize(
    "junk",
    [b"", b"not json", b"[1, 2]", b'{"state": "created"}', b'{"row": "x", "state": "created"}'],
)
def test_lines_that_record_nothing_are_skipped(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(junk + b'\n{"row":3,"state":"created","id":"o3"}\n')
    with Journal(path) as journal:
        assert journal.recorded_rows() == 1
        assert journal.state(3) == "created"


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
        assert state(journal, 3) == ("created", 0xD3)
        assert state(journal, 4) == ("sending", 0xD4)


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
    monkeypatch.setattr(os, "fdatasync", counting_fsync, raising=False)
    with Journal(tmp_path / "j.jsonl", fsync=fsync) as journal:
        journal.record(1, "sending", digest="d")
        journal.record(1, "created", id="o")
        journal.record(2, "invalid", error="x")
        fileno = journal._fd
    # Off the event loop: a thread fsyncs what was written since its last round (at least one
    # round, the last at close); never one call per record on the caller's thread.
    assert (len(calls) >= 1 and set(calls) == {fileno}) if fsync else calls == []


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
        assert state(journal, 1) == ("failed", 0)


def test_a_second_journal_on_the_same_file_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path):
        with pytest.raises(JournalLockedError) as info:
            Journal(path)
        assert f"pid {os.getpid()}" in str(info.value)
    with Journal(path):  # released on close
        pass


def test_a_failed_write_breaks_the_journal_and_the_next_line_starts_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    real_write = os.write
    with Journal(path) as journal:
        journal.record(1, "created", id="o1")

        def half_then_full(fd: int, data: bytes) -> int:
            monkeypatch.setattr(os, "write", full)
            return real_write(fd, data[:7])

        def full(fd: int, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_full)
        with pytest.raises(JournalWriteError, match="No space left"):
            journal.record(2, "sending", digest="d2")
        with pytest.raises(JournalWriteError):
            journal.record(3, "sending", digest="d3")  # broken: nothing more
        monkeypatch.setattr(os, "write", real_write)
    with Journal(path) as journal:  # the torn line records nothing; the next is whole
        assert journal.state(1) == "created"
        assert journal.state(2) is None
        journal.record(4, "created", id="o4")
    with Journal(path) as journal:
        assert journal.state(4) == "created"


def test_export_writes_each_rows_last_outcome(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.record(2, "sending", digest="d2")
        journal.record(2, "waiting")  # a 429: nothing created
        journal.record(2, "sending", digest="d2")
        journal.record(2, "created", id="o2")
        journal.record(3, "sending", digest="d3")  # cut in flight
        journal.record(4, "invalid", error="bad")
        journal.record(5, "sending", digest="d5")
        journal.record(5, "waiting")  # never left: no outcome yet
    with Journal(path) as journal:
        journal.record(4, "invalid", error="still bad")
        out = tmp_path / "out.jsonl"
        assert journal.export(out) == 3
    assert [msgspec.json.decode(line) for line in out.read_bytes().splitlines()] == [
        {"row": 2, "state": "created", "id": "o2"},
        {"row": 3, "state": "unknown", "error": "in flight when the import stopped"},
        {"row": 4, "state": "invalid", "error": "still bad"},
    ]


def test_resume_state_is_flat_arrays_not_objects(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(
        b"".join(b'{"row":%d,"state":"created","id":"o"}\n' % i for i in range(1, 5001))
    )
    with Journal(path) as journal:
        assert journal.recorded_rows() == 5000
        assert len(journal.states) < 8000  # one byte per line, with room to grow
        assert journal.errors == {}


def test_a_full_disk_gives_up_the_reserve_for_outcomes_but_refuses_new_sends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.jsonl"
    real_write = os.write
    failures = [OSError(28, "No space left on device")]

    def write_once_full(fd: int, data: bytes) -> int:
        if failures:
            raise failures.pop()
        return real_write(fd, data)

    with Journal(path) as journal:
        reserve = tmp_path / "j.jsonl.reserve"
        assert reserve.stat().st_size == 64 * 1024
        journal.record(1, "sending", digest="d1")
        monkeypatch.setattr(os, "write", write_once_full)
        journal.record(1, "created", id="o1")  # written, into the reserve's space
        assert journal.full is not None
        assert not reserve.exists()
        with pytest.raises(JournalWriteError):
            journal.record(2, "sending", digest="d2")  # must not leave
        journal.record(3, "failed", error="HTTP 400")  # outcomes still recorded
    with Journal(path) as journal:
        assert (journal.state(1), journal.state(2), journal.state(3)) == ("created", None, "failed")


def test_the_reserve_is_written_out_where_fallocate_is_not_supported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    with Journal(tmp_path / "j.jsonl"):
        assert (tmp_path / "j.jsonl.reserve").stat().st_size == 64 * 1024
    assert not (tmp_path / "j.jsonl.reserve").exists()
