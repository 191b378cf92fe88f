"""``close-async import`` under a user's ordinary mistakes and events, as real processes.

Each test runs the real command (its own interpreter) against a FakeCloseServer on a thread of
the test process, over real sockets, and checks the outcome at the server's own record.
"""

from __future__ import annotations

import codecs
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import (
    LEAD,
    ThreadedServer,
    cli_process,
    csv_rows,
    journal_records,
    server_thread,
    write_csv,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and flock")


def start(args: list[str], url: str, key: str = "api_safety") -> subprocess.Popen[str]:
    env = {**os.environ, "CLOSE_API_KEY": key, "CLOSE_BASE_URL": url}
    return subprocess.Popen(
        cli_process(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run(args: list[str], url: str, key: str = "api_safety") -> subprocess.CompletedProcess[str]:
    proc = start(args, url, key)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[str], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def kill_while_last_is(journal: Path, state: str, proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc`` at a moment its journal's last record is ``state``.

    Frozen (SIGSTOP) before looking, so the record cannot change between the look and the kill:
    a retry's backoff is jittered from 0 s, so a poll-then-kill can land inside its next
    "sending" (flaky under load before). Not that moment: let it run a little and look again."""
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "timed out"
        proc.send_signal(signal.SIGSTOP)
        if list(states(journal))[-1:] == [state]:
            break
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)


def states(journal: Path) -> Iterator[str]:
    return (r["state"] for r in journal_records(journal)) if journal.exists() else iter(())


def requests(fake: ThreadedServer) -> int:
    return fake.call(lambda s: len(s.requests))


def each_created_once(fake: ThreadedServer, n: int, tag: str = "row") -> None:
    assert fake.created_notes() == Counter({f"{tag}-{i}": 1 for i in range(1, n + 1)})


# --- two runs at once ---------------------------------------------------------------------------


def test_a_second_run_on_the_same_journal_is_refused_naming_the_first(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(200))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "5"]
    with server_thread(latency=0.05) as fake:  # the first run takes 2 s
        first = start(args, fake.base_url)
        wait_for(lambda: "created" in states(journal), first)
        first.send_signal(signal.SIGSTOP)  # still running when the second starts, however slow
        try:
            second = run(args, fake.base_url)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 2, second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "in use by another import" in second.stderr
        first.communicate(timeout=60)
        assert first.returncode == 0
        each_created_once(fake, 200)


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(100))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "2"]
    with server_thread(latency=0.02) as fake:
        first = start(args, fake.base_url)
        wait_for(lambda: "created" in states(journal), first)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        assert (tmp_path / "j.jsonl.lock").exists()
        second = run([*args, "--retry-unknown"], fake.base_url)
        assert second.returncode == 0, second.stderr
        assert set(fake.created_notes()) == {f"row-{i}" for i in range(1, 101)}


# --- paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--journal", "--output"])
def test_journal_or_output_on_the_input_is_refused(tmp_path: Path, option: str) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(3))
    before = path.read_bytes()
    with server_thread() as fake:
        result = run(["import", str(path), option, str(path)], fake.base_url)
        assert result.returncode == 2
        assert "is the input file itself" in result.stderr
        assert requests(fake) == 0
    assert path.read_bytes() == before


def test_output_holds_every_rows_outcome_across_runs(tmp_path: Path) -> None:
    rows = csv_rows(60)
    rows[4]["value"] = "abc"  # line 6: invalid
    path = write_csv(tmp_path / "in.csv", rows)
    journal, output = tmp_path / "j.jsonl", tmp_path / "out.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--output", str(output)]
    with server_thread(latency=0.02) as fake:
        first = start([*args, "--concurrency", "2"], fake.base_url)
        wait_for(lambda: list(states(journal)).count("created") >= 10, first)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)
        assert first.returncode == 130
        second = run(args, fake.base_url)
        assert second.returncode == 1, second.stderr  # the invalid row
        ids = fake.call(lambda s: {o["note"]: o["id"] for o in s.created})
    out = [json.loads(line) for line in output.read_text().splitlines()]
    by_row = {r["row"]: r for r in out}
    assert len(by_row) == len(out) == 60  # one outcome per row, earlier runs' included
    assert by_row[6]["state"] == "invalid"
    for i in range(1, 61):
        if i != 5:
            assert by_row[i + 1] == {"row": i + 1, "state": "created", "id": ids[f"row-{i}"]}


def test_a_journal_from_another_file_is_refused_before_sending(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(5))
    other = write_csv(tmp_path / "other.csv", csv_rows(5, tag="other"))
    journal = tmp_path / "j.jsonl"
    with server_thread() as fake:
        assert run(["import", str(path), "--journal", str(journal)], fake.base_url).returncode == 0
        fake.call(lambda s: s.reset())
        result = run(["import", str(other), "--journal", str(journal)], fake.base_url)
        assert result.returncode == 2
        assert "line 2 (and 4 more) differs" in result.stderr
        assert f"written for {path.resolve()}" in result.stderr
        assert requests(fake) == 0


# --- encodings and bad rows -----------------------------------------------------------------------


def excel_csv(path: Path, n: int, encoding: str, special: int) -> Path:
    lines = ["lead_id,value,note"]
    for i in range(1, n + 1):
        lines.append(f"{LEAD},{i},{'Café' if i == special else f'row-{i}'}")
    path.write_bytes("\r\n".join(lines).encode(encoding) + b"\r\n")
    return path


def test_a_cp1252_csv_is_refused_naming_the_line_then_imports_with_encoding(
    tmp_path: Path,
) -> None:
    path = excel_csv(tmp_path / "excel.csv", 1000, "cp1252", special=900)
    with server_thread() as fake:
        for extra in ([], ["--dry-run"]):
            result = run(["import", str(path), *extra], fake.base_url)
            assert result.returncode == 2, result.stderr
            assert "line 901 is not valid UTF-8" in result.stderr
            assert "--encoding cp1252" in result.stderr
            assert "Traceback" not in result.stderr
        assert requests(fake) == 0
        result = run(["import", str(path), "--encoding", "cp1252"], fake.base_url)
        assert result.returncode == 0, result.stderr
        assert fake.created_notes()["Café"] == 1
        assert sum(fake.created_notes().values()) == 1000


def test_a_utf16_csv_with_a_byte_order_mark_just_works(tmp_path: Path) -> None:
    path = tmp_path / "unicode.csv"
    excel_csv(path, 5, "utf-16-le", special=3)
    path.write_bytes(codecs.BOM_UTF16_LE + path.read_bytes())
    with server_thread() as fake:
        result = run(["import", str(path)], fake.base_url)
        assert result.returncode == 0, result.stderr
        assert fake.created_notes()["Café"] == 1


@pytest.mark.parametrize("damage", ["lone-surrogate", "odd-last-byte"])
def test_a_damaged_utf16_csv_is_refused_naming_the_line(tmp_path: Path, damage: str) -> None:
    # Python's surrogateescape refuses bytes under 0x80, which these have: the read raised
    # UnicodeDecodeError mid-file ("unexpected UnicodeDecodeError", exit 1, no line named).
    path = excel_csv(tmp_path / "unicode.csv", 5, "utf-16-le", special=0)
    data = codecs.BOM_UTF16_LE + path.read_bytes()
    if damage == "lone-surrogate":  # on line 4 (row 3): a high surrogate with no low one
        data = data.replace("row-3".encode("utf-16-le"), "row-".encode("utf-16-le") + b"\x00\xd8")
        line = 4
    else:  # a file cut one byte into a character
        data, line = data + b"x", 6  # the last line, its end cut
    path.write_bytes(data)
    with server_thread() as fake:
        for extra in ([], ["--dry-run"]):
            result = run(["import", str(path), *extra], fake.base_url)
            assert result.returncode == 2, result.stderr
            assert f"line {line} is not valid utf-16" in result.stderr, result.stderr
            assert "Nothing was sent" in result.stderr
            assert "Traceback" not in result.stderr
            assert "unexpected" not in result.stderr
        assert requests(fake) == 0


def test_bad_rows_are_reported_with_their_line_and_the_others_go_through(tmp_path: Path) -> None:
    rows = csv_rows(6)
    rows[1]["note"] = "x" * 200_000  # line 3: over csv's 128 KiB field limit
    rows[3]["note"] = "nul<NUL>byte"  # line 5 (Python 3.10's csv module cannot write a NUL)
    path = write_csv(tmp_path / "in.csv", rows)
    path.write_text(path.read_text(encoding="utf-8").replace("<NUL>", "\x00"), encoding="utf-8")
    deep = tmp_path / "in.jsonl"
    lines = [json.dumps({"lead_id": LEAD, "note": f"j-{i}"}) for i in range(1, 5)]
    lines[2] = '{"lead_id": "x", "custom_fields": ' + "[" * 100_000 + "]" * 100_000 + "}"
    deep.write_text("\n".join(lines) + "\n")
    with server_thread() as fake:
        result = run(["import", str(path)], fake.base_url)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "line 3: failed" in result.stdout
        assert "field larger than field limit" in result.stdout
        assert "line 5: failed" in result.stdout
        assert "NUL" in result.stdout
        assert set(fake.created_notes()) == {"row-1", "row-3", "row-5", "row-6"}
        result = run(["import", str(deep)], fake.base_url)
        assert result.returncode == 1, result.stderr
        assert "line 3: failed" in result.stdout
        assert "nested too deep" in result.stdout
        assert {"j-1", "j-2", "j-4"} <= set(fake.created_notes())


def test_unknown_columns_are_named_at_once_with_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "typos.csv"
    path.write_text(f"lead_id,vaule,confidance,cf_tier,note\n{LEAD},1,2,Gold,n\n")
    with server_thread() as fake:
        result = run(["import", str(path)], fake.base_url)
        assert result.returncode == 2
        err = result.stderr
        assert "'vaule': did you mean 'value'?" in err
        assert "'confidance': did you mean 'confidence'?" in err
        assert "'cf_tier': did you mean 'custom.cf_tier'?" in err
        assert err.count("error:") == 1
        assert requests(fake) == 0


# --- the server says no ---------------------------------------------------------------------------


def test_a_wrong_api_key_stops_at_once_with_one_message(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(300))
    journal = tmp_path / "j.jsonl"
    with server_thread(api_keys={"the_right_key"}) as fake:
        result = run(["import", str(path), "--journal", str(journal)], fake.base_url, key="bad")
        assert result.returncode == 3, result.stderr
        assert "$CLOSE_API_KEY" in result.stderr
        assert "401" not in result.stdout  # no line per row
        assert requests(fake) <= 60  # the first batch in flight, not 300
        again = run(
            ["import", str(path), "--journal", str(journal)], fake.base_url, "the_right_key"
        )
        assert again.returncode == 0, again.stderr
        each_created_once(fake, 300)


def test_a_base_url_that_refuses_connections_stops_early(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(300))
    with server_thread() as fake:
        url = fake.base_url
    started = time.monotonic()
    result = run(["import", str(path), "--concurrency", "10"], url)  # the server is gone
    assert result.returncode == 3, result.stderr
    assert "cannot reach" in result.stderr
    assert "--base-url" in result.stderr
    assert result.stdout.count("line ") == 0
    assert time.monotonic() - started < 15


# --- signals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_with_130_names_rows_in_flight_and_the_resume_command(
    tmp_path: Path, sig: signal.Signals
) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(400))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "20"]
    with server_thread(latency=0.02, hang_seconds=30) as fake:
        proc = start(args, fake.base_url)
        wait_for(lambda: list(states(journal)).count("created") >= 40, proc)
        fake.call(lambda s: s.fail_next("hang", times=2))  # two requests that will not finish
        wait_for(lambda: fake.call(lambda s: sum(r.fault == "hang" for r in s.requests)) == 2, proc)
        proc.send_signal(sig)  # stop sending; requests out get a grace period ...
        time.sleep(0.3)
        proc.send_signal(sig)  # ... which a second signal cuts short
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        assert "2 rows were in flight" in err
        in_flight = sorted(r["row"] for r in journal_records(journal) if r["state"] == "sending")
        last = {r["row"]: r["state"] for r in journal_records(journal)}
        cut = sorted(row for row, state in last.items() if state == "sending")
        assert len(cut) == 2
        assert f"lines {cut[0]}, {cut[1]}" in err
        assert in_flight
        resume = next(line for line in err.splitlines() if line.startswith("To resume: "))
        assert resume == "To resume: close-async " + " ".join(args)
        second = run(args, fake.base_url)
        assert second.returncode == 1  # the two cut rows are unknown, not re-sent
        notes = fake.created_notes()
        assert max(notes.values()) == 1
        assert set(notes) == {f"row-{i}" for i in range(1, 401)}  # the hung ones were created


def test_a_row_killed_while_waiting_out_a_429_is_sent_on_the_rerun(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(3))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "1"]
    with server_thread(window=20.0) as fake:  # a scripted 429 asks for the rest of the window
        fake.call(lambda s: s.fail_next("429"))
        proc = start(args, fake.base_url)
        wait_for(lambda: "waiting" in states(journal), proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert [r["state"] for r in journal_records(journal)] == ["sending", "waiting"]
        again = run(args, fake.base_url)
        assert again.returncode == 0, again.stderr  # nothing unknown
        each_created_once(fake, 3)


def test_a_row_killed_while_backing_off_from_a_refused_connection_is_sent_on_the_rerun(
    tmp_path: Path,
) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(2))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "1"]
    with server_thread() as gone:
        url = gone.base_url
    proc = start(args, url)
    kill_while_last_is(journal, "waiting", proc)
    assert list(states(journal))[-1] == "waiting"
    with server_thread() as fake:
        again = run(args, fake.base_url)
        assert again.returncode == 0, again.stderr
        each_created_once(fake, 2)


# --- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root: otherwise skipped, as the README says)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_journal_disk_stops_with_exit_4_and_loses_nothing(tiny_disk: Path) -> None:
    path = write_csv(tiny_disk.parent / "in.csv", csv_rows(1500))
    journal = tiny_disk / "j.jsonl"
    filler = tiny_disk / "filler"
    filler.write_bytes(bytes(512 * 1024 - 100 * 1024))  # 100 KiB left: the reserve, ~400 records
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "20"]
    with server_thread() as fake:
        first = run(args, fake.base_url)
        assert first.returncode == 4, first.stderr
        assert "Traceback" not in first.stderr
        assert "disk is full" in first.stderr
        assert "Free some space, then resume" in first.stderr
        created_before = sum(fake.created_notes().values())
        assert 0 < created_before < 1500
        filler.unlink()
        second = run(args, fake.base_url)
        assert second.returncode == 0, second.stdout + second.stderr  # no unknown row
        each_created_once(fake, 1500)
