"""The ``close-async`` command line, through click's CliRunner and as a real process.

The FakeCloseServer it talks to runs on a loop in a background thread (tests/support/cli.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from close_async import __version__
from close_async._tools.cli import main
from close_async.testing import LEAD_MISSING
from tests.support.cli import (
    LEAD,
    cli_process,
    csv_rows,
    invoke,
    journal_records,
    server_thread,
    write_csv,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSE_BASE_URL", raising=False)


# --- help, version, credentials ----------------------------------------------------------------


def test_help_texts() -> None:
    top = invoke(["--help"])
    assert top.exit_code == 0
    for text in ("CLOSE_API_KEY", "--base-url", "CLOSE_BASE_URL", "create", "import", "demo"):
        assert text in top.output
    flat = " ".join(top.output.split())
    assert "Exit codes: 0" in flat
    assert "1 some rows failed or have an unknown outcome" in flat
    assert "2 usage errors" in flat

    imp = " ".join(invoke(["import", "--help"]).output.split())
    for text in ("--journal", "--retry-unknown", "--dry-run", "--concurrency", "CLOSE_API_KEY"):
        assert text in imp
    assert "custom.cf_" in imp
    assert "Exit codes" in imp

    create = " ".join(invoke(["create", "--help"]).output.split())
    assert "cents" in create
    assert "--custom cf_ID=VALUE" in create

    demo = invoke(["demo", "--help"])
    assert demo.exit_code == 0
    assert "no account" in demo.output


def test_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


@pytest.mark.parametrize("command", [["create", "--lead-id", LEAD], ["import", "IN"]])
def test_missing_api_key_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(1))
    command = [str(path) if c == "IN" else c for c in command]
    result = invoke(command, base_url="http://127.0.0.1:9/api/v1/", key=None)
    assert result.exit_code == 2
    assert "CLOSE_API_KEY" in result.output


# --- create --------------------------------------------------------------------------------------


def test_create_prints_the_opportunity() -> None:
    with server_thread() as fake:
        result = invoke(
            [
                "create",
                "--lead-id",
                LEAD,
                "--value",
                "500000",
                "--value-period",
                "monthly",
                "--confidence",
                "50",
                "--note",
                "Enterprise plan",
                "--custom",
                "cf_tier=Gold",
                "--custom",
                "custom.cf_formula=a=b",
            ],
            base_url=fake.base_url,
        )
        assert result.exit_code == 0, result.output
        printed = msgspec.json.decode(result.stdout)
        [created] = fake.call(lambda s: list(s.created))
        [request] = fake.call(lambda s: list(s.requests))
    assert msgspec.json.decode(request.body) == {
        "lead_id": LEAD,
        "value": 500000,
        "value_period": "monthly",
        "confidence": 50,
        "note": "Enterprise plan",
        "custom.cf_tier": "Gold",
        "custom.cf_formula": "a=b",
    }
    assert printed["id"] == created["id"]
    assert printed["id"].startswith("oppo_")
    assert printed["lead_id"] == LEAD
    assert printed["value"] == 500000
    assert printed["note"] == "Enterprise plan"
    assert "Gold" in result.stdout
    assert request.headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--custom", "cf_tier"], "--custom"),
        (["--custom", "tier=Gold"], "cf_"),
        (["--confidence", "101"], "--confidence"),
        (["--value", "12.5"], "--value"),
        (["--value-period", "weekly"], "--value-period"),
    ],
)
def test_create_bad_options_send_nothing(args: list[str], message: str) -> None:
    with server_thread() as fake:
        result = invoke(["create", "--lead-id", LEAD, *args], base_url=fake.base_url)
        assert result.exit_code == 2
        assert message in result.output
        assert fake.call(lambda s: len(s.requests)) == 0


def test_create_errors_exit_1() -> None:
    with server_thread() as fake:
        missing = invoke(["create", "--lead-id", LEAD_MISSING], base_url=fake.base_url)
        assert missing.exit_code == 1
        assert missing.stderr.startswith("error:")
        assert "may have been created" not in missing.stderr
        fake.call(lambda s: s.fail_next("drop"))
        dropped = invoke(["create", "--lead-id", LEAD], base_url=fake.base_url)
        assert dropped.exit_code == 1
        assert "may have been created" in dropped.stderr
        assert dropped.stdout == ""


def test_base_url_option_and_environment() -> None:
    with server_thread() as fake:
        # From $CLOSE_BASE_URL.
        env = invoke(["create", "--new-lead", "--note", "env"], base_url=fake.base_url)
        assert env.exit_code == 0
        # --base-url wins over the environment.
        result = CliRunner().invoke(
            main,
            ["--base-url", fake.base_url, "create", "--new-lead", "--note", "option"],
            env={"CLOSE_API_KEY": "k", "CLOSE_BASE_URL": "http://127.0.0.1:9/nothing/"},
        )
        assert result.exit_code == 0, result.output
        assert sorted(fake.created_notes()) == ["env", "option"]
    bad = invoke(["--base-url", "ftp://example.com/", "create", "--new-lead", "--note", "x"])
    assert bad.exit_code == 2
    assert "base_url" in bad.output


# --- import --------------------------------------------------------------------------------------


def test_import_all_created_exit_0(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(30))
    journal = tmp_path / "j.jsonl"
    output = tmp_path / "out.jsonl"
    with server_thread() as fake:
        args = ["import", str(path), "--journal", str(journal), "--concurrency", "4"]
        result = invoke([*args, "--output", str(output)], base_url=fake.base_url)
        assert result.exit_code == 0, result.output
        assert "30 rows: 30 created now, 0 already created, 0 failed, 0 unknown" in result.stdout
        assert fake.created_notes() == Counter(f"row-{i}" for i in range(1, 31))
        # Not a terminal: plain progress lines on stderr, the last one complete.
        assert "progress: 30/30 rows, 30 created, 0 failed, 0 unknown" in result.stderr
        assert "\r" not in result.stderr
        outcomes = [msgspec.json.decode(line) for line in output.read_bytes().splitlines()]
        created = {o["row"]: o["id"] for o in outcomes if o["state"] == "created"}
        assert sorted(created) == list(range(2, 32))

        again = invoke(args, base_url=fake.base_url)
        assert again.exit_code == 0
        assert "0 created now, 30 already created" in again.stdout
        assert fake.call(lambda s: len(s.requests)) == 30


def test_import_bad_rows_exit_1(tmp_path: Path) -> None:
    rows = csv_rows(6)
    rows[1]["value"] = "12.50"
    rows[3]["confidence"] = "150"
    rows[4]["lead_id"] = LEAD_MISSING
    path = write_csv(tmp_path / "in.csv", rows)
    with server_thread() as fake:
        result = invoke(["import", str(path), "--concurrency", "2"], base_url=fake.base_url)
        assert result.exit_code == 1
        assert "6 rows: 3 created now" in result.stdout
        assert "line 3: failed: value='12.50'" in result.stdout
        assert "line 5: failed: confidence=150" in result.stdout
        assert re.search(r"line 6: failed: .*lead", result.stdout)
        assert sorted(fake.created_notes()) == ["row-1", "row-3", "row-6"]


def test_import_unknown_rows_are_named_and_retried_on_request(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(5))
    journal = tmp_path / "j.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "1"]
    with server_thread() as fake:
        fake.call(lambda s: s.fail_next("500_after_create"))
        first = invoke(args, base_url=fake.base_url)
        assert first.exit_code == 1
        assert "1 rows may or may not have been created" in first.stdout
        assert "line 2: unknown: HTTP 500" in first.stdout
        assert f"--journal {journal} --retry-unknown" in first.stdout

        second = invoke(args, base_url=fake.base_url)
        assert second.exit_code == 1
        assert "line 2: unknown" in second.stdout
        assert fake.call(lambda s: len(s.requests)) == 5

        third = invoke([*args, "--retry-unknown"], base_url=fake.base_url)
        assert third.exit_code == 0, third.output
        assert "1 created now, 4 already created" in third.stdout
        assert fake.created_notes()["row-1"] == 2  # the 500 had created it: the user's call


def test_import_usage_errors_exit_2(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(3))
    journal = tmp_path / "j.jsonl"
    with server_thread() as fake:
        url = fake.base_url
        assert invoke(["import", str(path), "--journal", str(journal)], base_url=url).exit_code == 0
        write_csv(path, csv_rows(3, tag="other"))  # not the file this journal recorded
        mismatch = invoke(["import", str(path), "--journal", str(journal)], base_url=url)
        assert mismatch.exit_code == 2
        assert "error:" in mismatch.stderr
        assert "is not from" in mismatch.stderr
        assert invoke(["import", str(tmp_path / "nope.csv")], base_url=url).exit_code == 2
        assert invoke(["import", str(path), "--concurrency", "0"], base_url=url).exit_code == 2
        assert invoke(["import"], base_url=url).exit_code == 2
        assert fake.call(lambda s: len(s.requests)) == 3


def test_import_dry_run(tmp_path: Path) -> None:
    rows = csv_rows(4)
    rows[2]["value_period"] = "weekly"
    path = write_csv(tmp_path / "in.csv", rows)
    good = write_csv(tmp_path / "good.csv", csv_rows(4))
    journal = tmp_path / "j.jsonl"
    with server_thread() as fake:
        # No API key needed, nothing sent, no journal written.
        result = invoke(
            ["import", str(path), "--dry-run", "--journal", str(journal)],
            base_url=fake.base_url,
            key=None,
        )
        assert result.exit_code == 1
        assert "dry run: 4 rows, 1 invalid; nothing was sent" in result.stdout
        assert "line 4: failed: value_period='weekly'" in result.stdout
        ok = invoke(["import", str(good), "--dry-run"], base_url=fake.base_url, key=None)
        assert ok.exit_code == 0
        assert "dry run: 4 rows, 0 invalid" in ok.stdout
        assert fake.call(lambda s: len(s.requests)) == 0
    assert not journal.exists()


def test_import_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"lead_id": "%s", "note": "a", "custom.cf_tags": ["x"]}\n\n{"note": "b"}\n' % LEAD,  # noqa: UP031
        encoding="utf-8",
    )
    with server_thread() as fake:
        result = invoke(["import", str(path)], base_url=fake.base_url)
        assert result.exit_code == 0, result.output
        assert sorted(fake.created_notes()) == ["a", "b"]
        bodies = [msgspec.json.decode(r.body) for r in fake.call(lambda s: list(s.requests))]
    assert {"lead_id": LEAD, "note": "a", "custom.cf_tags": ["x"]} in bodies


# --- killed with SIGKILL and re-run ------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_import_then_rerun(tmp_path: Path) -> None:
    n = 600
    marker = {i + 1: f"kill-test row {i}" for i in range(1, n + 1)}  # line -> unique note
    line_of = {note: line for line, note in marker.items()}
    path = write_csv(
        tmp_path / "in.csv",
        [{"lead_id": LEAD, "value": str(i), "note": marker[i + 1]} for i in range(1, n + 1)],
    )
    journal = tmp_path / "journal.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "20"]
    # Every request is held 50 ms; 30 per 0.1 s window: a full run takes about 2 s, and
    # rows always wait in the client's pacer for the next window.
    with server_thread(latency=0.05, rate_limit=30, window=0.1, hang_seconds=2.0) as fake:
        env = {**os.environ, "CLOSE_API_KEY": "api_kill", "CLOSE_BASE_URL": fake.base_url}
        proc = subprocess.Popen(
            cli_process(args),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        try:
            while True:
                assert time.monotonic() < deadline, "the import never got going"
                assert proc.poll() is None, proc.communicate()
                records = journal_records(journal) if journal.exists() else []
                if sum(r["state"] == "created" for r in records) >= 120:
                    break
                time.sleep(0.01)
            # Make sure some requests are certainly out at the kill, created by the server.
            fake.call(lambda s: s.fail_next("hang", times=3))
            while fake.call(lambda s: sum(r.fault == "hang" for r in s.requests)) < 3:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.2)  # requests that reached the server before the kill are processed

        records = journal_records(journal)
        last = {r["row"]: r["state"] for r in records}
        ever_sending = {r["row"] for r in records if r["state"] == "sending"}
        in_flight = {row for row, state in last.items() if state == "sending"}
        done = {row for row, state in last.items() if state == "created"}
        killed_created = fake.created_notes()
        killed_seen = {line_of[note] for note in fake.sent_notes()}
        assert set(last.values()) <= {"sending", "created"}
        assert killed_seen <= ever_sending  # no request left without its sending record
        assert {line_of[note] for note in killed_created} - done <= in_flight
        assert len(in_flight) >= 3  # the hanging ones at least
        assert len(done) < n
        assert max(killed_created.values()) == 1

        # Re-run with the same journal: the rest is created, the in-flight rows are named.
        fake.call(lambda s: s.requests.clear())
        rerun = subprocess.run(
            cli_process(args), env=env, capture_output=True, text=True, timeout=30
        )
        assert rerun.returncode == 1, rerun.stderr
        named = {int(m) for m in re.findall(r"line (\d+): unknown", rerun.stdout)}
        assert named == in_flight
        assert f"{len(in_flight)} unknown" in rerun.stdout
        assert "--retry-unknown" in rerun.stdout
        rerun_sent = {line_of[note] for note in fake.sent_notes()}
        assert not rerun_sent & (done | in_flight)  # nothing done or unknown was sent again
        after_rerun = fake.created_notes()
        assert max(after_rerun.values()) == 1  # no row created twice
        assert {line_of[note] for note in after_rerun} >= set(marker) - in_flight

        # --retry-unknown completes the unknown rows, and only them.
        fake.call(lambda s: s.requests.clear())
        retry = subprocess.run(
            cli_process([*args, "--retry-unknown"]),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert retry.returncode == 0, retry.stdout + retry.stderr
        assert f"{len(in_flight)} created now, {n - len(in_flight)} already created" in retry.stdout
        assert {line_of[note] for note in fake.sent_notes()} == in_flight
        final = fake.created_notes()

    # Across all runs: every row exists, and the only duplicates are rows that were unknown
    # and that the killed run had in fact created.
    assert set(final) == set(line_of)
    duplicated = {line_of[note] for note, count in final.items() if count > 1}
    assert max(final.values()) <= 2
    assert duplicated == {line for line in in_flight if marker[line] in killed_created}
    assert duplicated  # the hanging requests were created before the kill
