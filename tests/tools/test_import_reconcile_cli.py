"""``close-async import --reconcile`` as a real process: killed with SIGKILL mid-import, then re-run
with ``--reconcile``: every row created exactly once, at the fake server's own record."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import (
    LEAD,
    cli_process,
    invoke,
    journal_records,
    server_thread,
    write_csv,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")


def test_a_sigkilled_import_rerun_with_reconcile_creates_every_row_exactly_once(
    tmp_path: Path,
) -> None:
    n = 300
    note = {line: f"reconcile-kill row {line - 1}" for line in range(2, n + 2)}
    line_of = {text: line for line, text in note.items()}
    rows = [{"lead_id": LEAD, "value": str(line), "note": note[line]} for line in note]
    path = write_csv(tmp_path / "in.csv", rows)
    journal = tmp_path / "journal.jsonl"
    args = ["import", str(path), "--journal", str(journal), "--concurrency", "20"]
    # Requests held 50 ms, 30 per 0.1 s: the run takes about a second; the list lags 0.3 s.
    options = {"latency": 0.05, "rate_limit": 30, "window": 0.1, "hang_seconds": 1.0}
    with server_thread(**options, list_lag=0.3) as fake:
        env = {**os.environ, "CLOSE_API_KEY": "api_kill", "CLOSE_BASE_URL": fake.base_url}
        proc = subprocess.Popen(
            cli_process(args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        try:
            while created(journal) < 60:
                assert time.monotonic() < deadline, "the import never got going"
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.01)
            # Requests certainly out at the kill: two created (then held), one dropped unmade.
            fake.call(lambda s: s.fail_next("hang", times=2))
            fake.call(lambda s: s.fail_next("drop_before_create"))
            while fake.call(lambda s: sum(r.fault is not None for r in s.requests)) < 3:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        time.sleep(0.2)  # what reached the server before the kill is processed

        records = journal_records(journal)
        last = {r["row"]: r for r in records}
        in_flight = {row for row, r in last.items() if r["state"] == "sending"}
        assert len(in_flight) >= 3
        assert all(last[row].get("sent_at") for row in in_flight)
        created_before = fake.created_notes()
        assert max(created_before.values()) == 1

        rerun = subprocess.run(
            cli_process([*args, "--reconcile", "--settle", "0.8"]),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert fake.created_notes() == Counter(note.values())  # each row once, none lost
        final = {r["row"]: r for r in journal_records(journal)}
        assert {r["state"] for r in final.values()} == {"created"}
        ids = fake.call(lambda s: {str(o["note"]): o["id"] for o in s.created})
        assert all(final[line]["id"] == ids[note[line]] for line in final)
        settled = {int(m) for m in re.findall(r"line (\d+): ", rerun.stdout)}
        assert in_flight <= settled  # each named with what reconcile did
        assert "reconcile: " in rerun.stdout
        assert "0 unknown" in rerun.stdout
        made_before = {line_of[text] for text in created_before}
        found = {row for row in in_flight if "found oppo_" in _said(rerun.stdout, row)}
        assert found == in_flight & made_before  # found exactly those the server had made


def created(journal: Path) -> int:
    records = journal_records(journal) if journal.exists() else []
    return sum(r["state"] == "created" for r in records)


def _said(out: str, line: int) -> str:
    match = re.search(rf"^  line {line}: (.*)$", out, re.MULTILINE)
    return match.group(1) if match else ""


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_settle_that_is_not_finite_is_refused_before_anything_is_sent(
    tmp_path: Path, value: str
) -> None:
    path = write_csv(tmp_path / "in.csv", [{"lead_id": LEAD, "value": "1", "note": "a"}])
    args = ["import", str(path), "--journal", str(tmp_path / "j"), "--reconcile"]
    with server_thread() as fake:
        result = invoke([*args, "--settle", value], fake.base_url)
        assert result.exit_code == 2, result.output
        assert fake.call(lambda s: len(s.requests)) == 0
