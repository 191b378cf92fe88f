"""One journal file, one import: the lock belongs to the file, however its path is spelled."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from close_async._tools.journal import Journal, JournalLockedError, open_journal
from tests.support.cli import (
    ThreadedServer,
    cli_process,
    csv_rows,
    journal_records,
    server_thread,
    write_csv,
)


@pytest.mark.parametrize("link", [os.symlink, os.link])
def test_a_symlink_or_hard_link_to_a_journal_in_use_is_refused(
    tmp_path: Path, link: Callable[[Path, Path], None]
) -> None:
    journal = tmp_path / "j.jsonl"
    with Journal(journal) as first:
        first.record(1, "sending", digest="ab")
        other = tmp_path / "other.jsonl"
        link(journal, other)
        with pytest.raises(JournalLockedError, match="in use by another import"):
            Journal(other)
    with Journal(tmp_path / "other.jsonl") as again:  # released with the first
        assert again.state(1) == "sending"


def test_output_is_exported_while_the_journal_is_still_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.cli import csv_rows, invoke, server_thread, write_csv

    seen: list[str] = []
    export = Journal.export

    def checked(self: Journal, output: str | os.PathLike[str]) -> int:
        try:
            Journal(self.path).close()
            seen.append("unlocked")  # another import could append to it now
        except JournalLockedError:
            seen.append("locked")
        return export(self, output)

    monkeypatch.setattr(Journal, "export", checked)
    path = write_csv(tmp_path / "in.csv", csv_rows(3))
    out = tmp_path / "out.jsonl"
    args = ["import", str(path), "--journal", str(tmp_path / "j.jsonl"), "--output", str(out)]
    with server_thread() as fake:
        result = invoke(args, fake.base_url)
    assert result.exit_code == 0, result.output
    assert seen == ["locked"]
    assert len(out.read_text().splitlines()) == 3


# --- --wait: a second run waits for the first instead of refusing ---------------------------------


async def test_open_journal_waits_for_the_holder_to_let_go_and_says_so_once(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    first = Journal(path)
    told: list[str] = []
    asyncio.get_running_loop().call_later(0.05, first.close)
    second = await open_journal(path, wait=math.inf, on_wait=told.append, poll=0.005)
    with second:
        second.record(1, "sending", digest="ab")
    assert len(told) == 1
    assert f"pid {os.getpid()}" in told[0]


async def test_open_journal_gives_up_after_its_wait_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path):
        with pytest.raises(JournalLockedError, match=r"still in use .* after waiting 0\.02 s"):
            await open_journal(path, wait=0.02, poll=0.005)
        with pytest.raises(JournalLockedError, match="in use by another import"):
            await open_journal(path)  # no wait: refused at once, as without --wait


def _exit_code(proc: subprocess.Popen[str], timeout: float = 60) -> int:
    proc.communicate(timeout=timeout)
    return proc.returncode


def _start(args: list[str], url: str, err: Path) -> subprocess.Popen[str]:
    """A real ``close-async`` process whose stderr goes to ``err`` (readable while it runs)."""
    env = {**os.environ, "CLOSE_API_KEY": "api_wait", "CLOSE_BASE_URL": url}
    with err.open("w") as stderr:
        return subprocess.Popen(
            cli_process(args), env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )


def _until(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _created(journal: Path) -> bool:
    return journal.exists() and any(r["state"] == "created" for r in journal_records(journal))


@contextlib.contextmanager
def _first_run_held(
    tmp_path: Path, rows: int, concurrency: int, latency: float
) -> Iterator[tuple[ThreadedServer, subprocess.Popen[str], list[str]]]:
    """A first import, stopped (SIGSTOP) once it has created a row: it holds the journal for as
    long as the test needs, however slow the machine. Continued (SIGCONT) by ``resume``."""
    path = write_csv(tmp_path / "in.csv", csv_rows(rows))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", str(concurrency)]
    with server_thread(latency=latency) as fake:
        first = _start(args, fake.base_url, tmp_path / "first.err")
        _until(lambda: _created(journal))
        first.send_signal(signal.SIGSTOP)
        try:
            yield fake, first, args
        finally:
            first.send_signal(signal.SIGCONT)


def _resume(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGCONT)


@pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX signals")
def test_a_second_run_with_wait_takes_over_when_the_first_stops_and_creates_each_row_once(
    tmp_path: Path,
) -> None:
    with _first_run_held(tmp_path, rows=100, concurrency=2, latency=0.05) as (fake, first, args):
        second = _start([*args, "--wait"], fake.base_url, tmp_path / "second.err")
        _until(lambda: "waiting for the import" in (tmp_path / "second.err").read_text())
        first.send_signal(signal.SIGINT)  # Ctrl-C: the first stops part way
        _resume(first)
        assert _exit_code(first) == 130
        out, _ = second.communicate(timeout=60)
        notes = fake.created_notes()
        sent = fake.call(lambda s: len(s.requests))
    err = (tmp_path / "second.err").read_text()
    assert second.returncode == 0, err
    assert f"pid {first.pid}" in err
    assert notes == Counter({f"row-{i}": 1 for i in range(1, 101)})  # the server's own record
    assert sent == 100  # nothing sent twice, by either run
    created_now = int(out.split("rows: ")[1].split(" created now")[0])
    assert 0 < created_now < 100  # the second did the rest, the first's rows skipped


@pytest.mark.skipif(sys.platform == "win32", reason="flock and POSIX signals")
def test_a_waiting_run_gives_up_after_wait_timeout_or_on_ctrl_c_having_sent_nothing(
    tmp_path: Path,
) -> None:
    with _first_run_held(tmp_path, rows=150, concurrency=3, latency=0.02) as (fake, first, args):
        timed = _start([*args, "--wait-timeout", "0.3"], fake.base_url, tmp_path / "t.err")
        assert _exit_code(timed) == 2
        waiting = _start([*args, "--wait"], fake.base_url, tmp_path / "waiting.err")
        _until(lambda: "waiting for the import" in (tmp_path / "waiting.err").read_text())
        waiting.send_signal(signal.SIGINT)
        assert _exit_code(waiting) == 130
        _resume(first)
        assert _exit_code(first) == 0
        notes = fake.created_notes()
        sent = fake.call(lambda s: len(s.requests))
    timed_err = (tmp_path / "t.err").read_text()
    assert "still in use" in timed_err, timed_err
    assert f"pid {first.pid}" in timed_err
    assert "at most 0.3 s" in timed_err
    assert "nothing was sent" in (tmp_path / "waiting.err").read_text()
    assert "Traceback" not in timed_err + (tmp_path / "waiting.err").read_text()
    assert notes == Counter({f"row-{i}": 1 for i in range(1, 151)})
    assert sent == 150
