"""``close-async demo``: the main job end to end against the embedded fake server."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from close_async._tools.cli import main
from close_async._tools.demo import run_demo


def check_report(out: str, rows: int) -> None:
    assert f"importing {rows} generated rows from a CSV with --reconcile" in out
    assert f"created       {rows - 2} of {rows} rows" in out
    assert re.search(r"^429s {10}2 answered by the server", out, re.MULTILINE)
    assert "duplicates    0" in out
    assert "bad rows      2, reported and skipped" in out
    assert "line 8: confidence=150: must be between 0 and 100" in out
    assert "line 14: value='12.50': must be an integer" in out
    assert "reconciled    3 rows" in out
    assert out.count("-> found oppo_") == 2  # dropped, 500 after create: the server made them
    assert out.count("-> absent after the settle: sent again, created oppo_") == 1  # the 504
    assert out.count("(the fake server holds 1 opportunity for it)") == 3
    assert "unknown       0" in out
    assert f"{rows - 2} rows skipped as already created, 0 requests sent, 0 unknown" in out
    assert out.rstrip().endswith("demo finished: everything accounted for.")


async def test_run_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_demo(rows=300, limit=200, window=0.25)
    out, err = capsys.readouterr()
    assert code == 0
    check_report(out, 300)
    assert "progress: 300/300 rows, 298 created, 2 failed, 0 unknown" in err


def test_demo_command() -> None:
    result = CliRunner().invoke(
        main, ["demo", "--rows", "300", "--limit", "200", "--window", "0.25"], env={}
    )
    assert result.exit_code == 0, result.output
    check_report(result.stdout, 300)


def test_demo_needs_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.setenv("CLOSE_BASE_URL", "http://127.0.0.1:9/unused/")
    result = CliRunner().invoke(
        main, ["demo", "--rows", "120", "--limit", "200", "--window", "0.25"]
    )
    assert result.exit_code == 0, result.output
    check_report(result.stdout, 120)


def test_demo_options_are_checked() -> None:
    assert CliRunner().invoke(main, ["demo", "--rows", "0"]).exit_code == 2
    assert CliRunner().invoke(main, ["demo", "--window", "0.01"]).exit_code == 2
