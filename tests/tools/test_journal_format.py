"""Journal formats: 1 (SHA-256 row digests, every journal before format 2) still resumes as it
was written; 2 (CRC-32 + Adler-32) is what a new journal is; a later one is refused.

The runs are the real command (its own interpreter) against a FakeCloseServer on a thread,
checked at the server's own record.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import csv_rows, journal_records, server_thread, write_csv
from tests.tools.test_import_safety import requests, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock")


def sha256_digests(path: Path) -> dict[int, str]:
    """Line -> what a journal of format 1 records for that CSV row: 16 hex of the SHA-256 of
    its cells joined by U+001F."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        digests = {}
        for cells in reader:
            text = "\x1f".join(cells)
            digests[reader.line_num] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return digests


def old_journal(path: Path, source: Path, created: dict[int, str], in_flight: int) -> Path:
    """A journal as a version before format 2 wrote it, killed with ``in_flight`` out."""
    digests = sha256_digests(source)
    lines = [{"journal": 1, "input": str(source.resolve())}]
    for line, id in created.items():
        lines.append({"row": line, "state": "sending", "digest": digests[line]})
        lines.append({"row": line, "state": "created", "id": id})
    lines.append({"row": in_flight, "state": "sending", "digest": digests[in_flight]})
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))
    return path


def test_a_journal_of_format_1_resumes_comparing_and_writing_sha256_digests(
    tmp_path: Path,
) -> None:
    source = write_csv(tmp_path / "in.csv", csv_rows(5))
    journal = old_journal(tmp_path / "j.jsonl", source, {2: "oppo_a", 3: "oppo_b"}, in_flight=4)
    with server_thread() as fake:
        result = run(["import", str(source), "--journal", str(journal)], fake.base_url)
        assert result.returncode == 1, result.stderr  # line 4 is unknown: not sent again
        assert fake.created_notes() == Counter({"row-4": 1, "row-5": 1})  # lines 5 and 6
    assert json.loads(journal.read_text().splitlines()[0])["journal"] == 1  # still format 1
    digests = sha256_digests(source)
    sent = [r for r in journal_records(journal) if r["state"] == "sending"][3:]
    assert [(r["row"], r["digest"]) for r in sent] == [(5, digests[5]), (6, digests[6])]


def test_a_journal_of_format_1_from_another_file_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    source = write_csv(tmp_path / "in.csv", csv_rows(5))
    other = write_csv(tmp_path / "other.csv", csv_rows(5, tag="other"))
    journal = old_journal(tmp_path / "j.jsonl", source, {2: "oppo_a", 3: "oppo_b"}, in_flight=4)
    with server_thread() as fake:
        result = run(["import", str(other), "--journal", str(journal)], fake.base_url)
        assert result.returncode == 2
        assert "line 2 (and 2 more) differs" in result.stderr
        assert requests(fake) == 0


def test_a_new_journal_is_of_format_2_and_resumes(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", csv_rows(3))
    journal = tmp_path / "j.jsonl"
    with server_thread() as fake:
        first = run(["import", str(source), "--journal", str(journal)], fake.base_url)
        assert first.returncode == 0, first.stderr
        header = json.loads(journal.read_text().splitlines()[0])
        assert header == {"journal": 2, "input": str(source.resolve())}
        digests = {r["digest"] for r in journal_records(journal) if r["state"] == "sending"}
        assert len(digests) == 3
        assert not digests & set(sha256_digests(source).values())
        again = run(["import", str(source), "--journal", str(journal)], fake.base_url)
        assert again.returncode == 0, again.stderr
        assert fake.created_notes() == Counter({f"row-{i}": 1 for i in range(1, 4)})


def test_a_journal_of_a_later_format_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", csv_rows(3))
    journal = tmp_path / "j.jsonl"
    text = '{"journal":3,"input":null}\n{"row":2,"state":"sending","digest":"x"}\n'
    journal.write_text(text)
    with server_thread() as fake:
        for _ in range(2):  # the lock was let go: the second run is refused the same way
            result = run(["import", str(source), "--journal", str(journal)], fake.base_url)
            assert result.returncode == 2
            assert "is of format 3, written by a newer close-async" in result.stderr
        assert requests(fake) == 0
    assert journal.read_text() == text
    assert not journal.with_name(journal.name + ".reserve").exists()
