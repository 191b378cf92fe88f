"""A format-2 journal an earlier version went on with: that version resumes a journal holding
no sent row (it does not read the format) and appends SHA-256 digests under the format-2 header.
This version must resume it on its own file, not refuse it as another file's ("pick another
--journal" would send every created row twice)."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.cli import LEAD, server_thread, write_csv
from tests.tools.test_import_safety import requests, run

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock")


def test_a_format_2_journal_an_earlier_version_went_on_with_resumes_on_its_own_file(
    tmp_path: Path,
) -> None:
    rows = [{"lead_id": LEAD, "value": str(i), "note": f"row-{i}"} for i in range(1, 4)]
    source = write_csv(tmp_path / "in.csv", rows)
    lines: list[dict[str, object]] = [{"journal": 2, "input": str(source.resolve())}]
    for line in (2, 3, 4):  # this version's first run: the values were not integers then
        lines.append({"row": line, "state": "invalid", "error": "value='x': must be an integer"})
    for line, row in zip((2, 3, 4), rows, strict=True):  # an earlier version, the fixed file
        text = "\x1f".join([LEAD, row["value"], row["note"]])
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        sent_at = "2026-12-02T06:39:48.095+00:00"
        lines.append({"row": line, "state": "sending", "digest": digest, "sent_at": sent_at})
    for line in (2, 3, 4):
        lines.append({"row": line, "state": "created", "id": f"oppo_{line}"})
    journal = tmp_path / "j.jsonl"
    journal.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))
    with server_thread() as fake:
        result = run(["import", str(source), "--journal", str(journal)], fake.base_url)
        assert result.returncode == 0, result.stderr
        assert requests(fake) == 0
        assert fake.created_notes() == Counter()
