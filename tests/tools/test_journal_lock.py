"""One journal file, one import: the lock belongs to the file, however its path is spelled."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from close_async._tools.journal import Journal, JournalLockedError


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
