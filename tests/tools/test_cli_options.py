"""The command line people expect, tried as a real process: options anywhere, ``--api-key``,
``python -m close_async``, ``fake-server``, ``create`` without a lead, ``--json``, ``--quiet``,
``-`` for stdin, an empty file, a ``--version`` that does not import aiohttp, help everywhere.

The FakeCloseServer of most tests runs on a background thread of the test process
(``server_thread``), so that its record is checked directly; ``fake-server`` runs as its own
process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import msgspec
import pytest
from click.testing import CliRunner

from close_async import __version__
from close_async._tools.cli import main
from close_async.testing import DIALECTS, LEAD_MISSING
from tests.support.cli import LEAD, csv_rows, invoke, server_thread, write_csv

DEAD_URL = "http://127.0.0.1:9/api/v1/"  # the discard port: nothing listens


def run(
    args: list[str], *, key: str | None = "api_shell", input: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``python -m close_async ARGS`` with $CLOSE_API_KEY = ``key`` (unset if None)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOSE_")}
    environ.update({"CLOSE_API_KEY": key} if key else {}, **env)
    command = [sys.executable, "-m", "close_async", *args]
    return subprocess.run(
        command, env=environ, input=input, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLOSE_API_KEY", raising=False)
    monkeypatch.delenv("CLOSE_BASE_URL", raising=False)


# --- options anywhere, --api-key, python -m ------------------------------------------------------


def test_options_work_before_or_after_the_command(tmp_path: Path) -> None:
    after = write_csv(tmp_path / "after.csv", csv_rows(2, tag="after"))
    before = write_csv(tmp_path / "before.csv", csv_rows(2, tag="before"))
    with server_thread() as fake:
        url = fake.base_url
        script = shutil.which("close-async", path=str(Path(sys.executable).parent))
        assert script, "the console script is installed beside the interpreter"
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOSE_")}
        first = subprocess.run(
            [script, "import", str(after), "--base-url", url, "--api-key", "api_after"],
            env=environ, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        second = run(
            ["--base-url", url, "--api-key", "api_before", "import", str(before)], key=None
        )
        assert second.returncode == 0, second.stderr
        # The command's own option wins over the group's and over the environment.
        third = run(
            ["--base-url", DEAD_URL, "create", "--new-lead", "--base-url", url],
            CLOSE_BASE_URL=DEAD_URL,
        )
        assert third.returncode == 0, third.stderr
        keys = fake.call(lambda s: [(r.api_key, r.status) for r in s.requests])
    assert keys == [("api_after", 200)] * 2 + [("api_before", 200)] * 2 + [("api_shell", 200)]


def test_api_key_option_beside_the_environment(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", csv_rows(1))
    with server_thread() as fake:
        url = fake.base_url
        assert run(["import", str(path), "--base-url", url], key="api_env").returncode == 0
        again = ["create", "--new-lead", "--base-url", url, "--api-key", "api_option"]
        assert run(again, key="api_env").returncode == 0
        keys = fake.call(lambda s: [r.api_key for r in s.requests])
        missing = run(["import", str(path), "--base-url", url], key=None)
        assert missing.returncode == 2
        assert "CLOSE_API_KEY" in missing.stderr
        assert "--api-key" in missing.stderr
        assert fake.call(lambda s: len(s.requests)) == 2
    assert keys == ["api_env", "api_option"]


def test_python_dash_m_runs_the_command() -> None:
    helped = run(["--help"])
    assert helped.returncode == 0
    assert helped.stdout.startswith("Usage: close-async [OPTIONS] COMMAND")
    for command in ("create", "import", "demo", "fake-server"):
        assert command in helped.stdout
    version = run(["--version"])
    assert (version.returncode, version.stdout) == (0, f"close-async, version {__version__}\n")


def test_version_and_completion_do_not_import_aiohttp() -> None:
    """``--version`` and shell completion import click and the CLI alone, not the SDK proper."""
    check = """
import os, sys
import close_async._tools.cli as cli
try:
    cli.main(prog_name="close-async")
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
heavy = sorted(m for m in ("aiohttp", "msgspec", "asyncio") if m in sys.modules)
assert not heavy, heavy
"""
    version = subprocess.run(
        [sys.executable, "-c", check, "--version"], capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"close-async, version {__version__}\n"
    environ = {
        **os.environ,
        "_CLOSE_ASYNC_COMPLETE": "bash_complete",
        "COMP_WORDS": "close-async im",
        "COMP_CWORD": "1",
    }
    completion = subprocess.run(
        [sys.executable, "-c", check], env=environ, capture_output=True, text=True, timeout=60
    )
    assert completion.returncode == 0, completion.stderr
    assert completion.stdout.split() == ["plain,import"]
    script = subprocess.run(
        [sys.executable, "-m", "close_async"],
        env={**os.environ, "_CLOSE_ASYNC_COMPLETE": "bash_source"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "_CLOSE_ASYNC_COMPLETE=bash_complete" in script.stdout


def test_every_option_of_every_command_has_help() -> None:
    def walk(command: click.Command, name: str) -> list[str]:
        missing = [
            f"{name} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not (param.help or "").strip()
        ]
        for sub_name, sub in getattr(command, "commands", {}).items():
            missing += walk(sub, f"{name} {sub_name}")
        return missing

    assert walk(main, "close-async") == []
    assert set(main.commands) == {"create", "import", "demo", "fake-server"}


# --- create ---------------------------------------------------------------------------------------


def test_create_without_lead_id_sends_nothing() -> None:
    with server_thread() as fake:
        url = fake.base_url
        plain = run(["create", "--value", "500", "--base-url", url])
        assert plain.returncode == 2
        assert "--lead-id" in plain.stderr
        assert "--new-lead" in plain.stderr
        both = invoke(["create", "--lead-id", LEAD, "--new-lead"], base_url=url)
        assert both.exit_code == 2
        assert "exclude each other" in both.output
        assert fake.call(lambda s: len(s.requests)) == 0
        new = invoke(["create", "--new-lead", "--note", "untitled on purpose"], base_url=url)
        assert new.exit_code == 0, new.output
        [request] = fake.call(lambda s: list(s.requests))
    assert msgspec.json.decode(request.body) == {"note": "untitled on purpose"}


# --- import: --json, --quiet, stdin, empty input, line order ------------------------------------


def mixed_rows(tmp_path: Path) -> Path:
    """Six rows: line 2 refused by the server (its lead does not exist), lines 4 and 6 invalid."""
    rows = csv_rows(5)
    rows[0]["lead_id"] = LEAD_MISSING
    rows[2]["value"] = "12.50"
    rows.append({"lead_id": LEAD, "confidence": "150", "note": "row-6"})
    return write_csv(tmp_path / "mixed.csv", rows)


def test_json_summary_on_stdout_human_lines_on_stderr(tmp_path: Path) -> None:
    path = mixed_rows(tmp_path)
    journal = tmp_path / "j.jsonl"
    # The server holds each request 50 ms: the invalid rows, found as they are read, are
    # recorded before the server's answer to line 2.
    with server_thread(latency=0.05) as fake:
        args = ["import", str(path), "--json", "--journal", str(journal), "--base-url"]
        result = run([*args, fake.base_url])
        created = fake.created_notes()
    assert result.returncode == 1
    summary = msgspec.json.decode(result.stdout)  # stdout is exactly one JSON document
    assert summary["rows"] == 6
    assert summary["created"] == 3 == len(created)
    assert [f["line"] for f in summary["failed"]] == [2, 4, 7]
    assert "lead" in summary["failed"][0]["error"]
    assert summary["failed"][1]["error"] == "value='12.50': must be an integer"
    assert summary["unknown"] == []
    assert summary["journal"] == str(journal)
    assert (summary["exit_code"], summary["dry_run"], summary["skipped"]) == (1, False, 0)
    assert "6 rows: 3 created now" in result.stderr
    failed = [int(n) for n in re.findall(r"line (\d+): failed", result.stderr)]
    assert failed == [2, 4, 7]  # in line order, not in the order they were found


def test_quiet_prints_nothing_unless_something_went_wrong(tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", csv_rows(3))
    with server_thread() as fake:
        quiet = run(["import", str(good), "--quiet", "--base-url", fake.base_url])
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
        assert len(fake.created_notes()) == 3
        bad = run(["import", str(mixed_rows(tmp_path)), "-q", "--base-url", fake.base_url])
    assert bad.returncode == 1
    assert "progress" not in bad.stderr
    assert "6 rows: 3 created now" in bad.stdout
    assert "line 4: failed: value='12.50'" in bad.stdout


def test_dash_reads_csv_or_jsonl_from_stdin(tmp_path: Path) -> None:
    text = write_csv(tmp_path / "in.csv", csv_rows(3, tag="csv")).read_text(encoding="utf-8")
    jsonl = "".join(f'{{"lead_id": "{LEAD}", "note": "jsonl-{i}"}}\n' for i in range(2))
    with server_thread() as fake:
        url = fake.base_url
        assert run(["import", "-", "--base-url", url], input=text).returncode == 0
        result = run(["import", "-", "--json", "--base-url", url], input="\ufeff" + jsonl)
        assert result.returncode == 0, result.stderr
        assert msgspec.json.decode(result.stdout)["created"] == 2
        assert sorted(fake.created_notes()) == ["csv-1", "csv-2", "csv-3", "jsonl-0", "jsonl-1"]


def test_a_named_pipe_is_read_once_and_every_row_is_created(tmp_path: Path) -> None:
    """A FIFO (or ``<(cmd)``) can be read only once; the import reads its input twice."""
    text = write_csv(tmp_path / "src.csv", csv_rows(40, tag="fifo")).read_text(encoding="utf-8")
    fifo = tmp_path / "deals.csv"
    os.mkfifo(fifo)
    with server_thread() as fake:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOSE_")}
        environ["CLOSE_API_KEY"] = "api_shell"
        command = [sys.executable, "-m", "close_async", "import", str(fifo)]
        with subprocess.Popen(
            [*command, "--base-url", fake.base_url], env=environ, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ) as proc:  # fmt: skip
            with fifo.open("w", encoding="utf-8") as writer:  # blocks until the command opens it
                writer.write(text)
            try:
                _, err = proc.communicate(timeout=30)
            finally:  # before the fix the command waited forever to open the pipe again
                proc.kill()
        assert proc.returncode == 0, err
        notes = sorted(fake.created_notes())
    assert notes == sorted(f"fifo-{i}" for i in range(1, 41))


def test_dash_with_standard_input_closed_is_a_usage_error() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CLOSE_")}
    command = [sys.executable, "-m", "close_async", "import", "-", "--dry-run"]
    result = subprocess.run(
        command, env=environ, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=60, preexec_fn=lambda: os.close(0),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "standard input is closed" in result.stderr
    assert "Traceback" not in result.stderr


def test_progress_counts_csv_records_not_lines(tmp_path: Path) -> None:
    """A quoted cell with a newline (Excel notes) is one row, not two."""
    rows = [{"lead_id": LEAD, "note": f"first line {i}\nsecond line"} for i in range(30)]
    path = write_csv(tmp_path / "multiline.csv", rows)
    with server_thread() as fake:
        result = run(["import", str(path), "--json", "--base-url", fake.base_url])
        assert fake.call(lambda s: len(s.created)) == 30
    assert result.returncode == 0, result.stderr
    assert msgspec.json.decode(result.stdout)["created"] == 30
    assert "progress: 30/30 rows" in result.stderr


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("empty.csv", "", "it is empty"),
        ("blank.jsonl", "\n  \n", "it is empty"),
        ("header.csv", "lead_id,value\n", "only a header row"),
        ("-", "", "it is empty"),
    ],
)
def test_an_empty_input_says_so_and_exits_2(
    tmp_path: Path, name: str, content: str, what: str
) -> None:
    path = tmp_path / name
    if name != "-":
        path.write_text(content, encoding="utf-8")
    shown = "standard input" if name == "-" else str(path)
    with server_thread() as fake:
        arg = name if name == "-" else str(path)
        result = run(["import", arg, "--base-url", fake.base_url], input=content)
        dry = run(["import", arg, "--dry-run"], key=None, input=content)
        assert fake.call(lambda s: len(s.requests)) == 0
    for outcome in (result, dry):
        assert outcome.returncode == 2
        assert outcome.stderr == f"error: nothing to import: {shown} has no rows ({what})\n"
        assert outcome.stdout == ""


def test_summary_is_wrapped_to_the_terminal_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from close_async._tools.cli_summary import print_summary
    from close_async._tools.importer import ImportSummary

    reason = "HTTP 400: the lead does not exist or was merged into another lead long ago"
    summary = ImportSummary(rows=3, created=1, failed=[(9, reason), (3, "x")], seconds=1.0)
    monkeypatch.setenv("COLUMNS", "41")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    print_summary(summary, dry_run=False, journal=None)
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 40
    first = lines.index("  line 3: failed: x")  # line order; the summary line above it
    assert lines[0].startswith("3 rows: 1 created now,")
    assert all(line.startswith("    ") for line in lines[1:first])
    assert lines[first + 1].startswith("  line 9: failed: HTTP 400")
    assert all(line.startswith("      ") for line in lines[first + 2 :])
    assert " ".join(" ".join(lines[first + 1 :]).split()) == f"line 9: failed: {reason}"


# --- fake-server --------------------------------------------------------------------------------


def start_fake_server(*options: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "close_async", "fake-server", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # flushed at once: no wait for more output or the exit
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1/\n", first), proc.communicate()
    return proc, first.strip()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_fake_server_serves_until_sigterm(tmp_path: Path) -> None:
    proc, url = start_fake_server("--rate-limit", "20", "--window", "0.1", "--fail", "504")
    try:
        path = write_csv(tmp_path / "in.csv", csv_rows(30))
        result = run(["import", str(path), "--base-url", url, "--concurrency", "5"])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert result.returncode == 1  # the 504: unknown outcome, named
    assert "30 rows: 29 created now, 0 already created, 0 failed, 1 unknown" in result.stdout
    assert len(re.findall(r"line \d+: unknown: HTTP 504", result.stdout)) == 1
    assert "Traceback" not in err
    assert "20 requests per 0.1 s per API key; next creates fail with 504" in err
    # The server's own record: every row reached it once (besides 429s); 29 created.
    stopped = re.search(
        r"stopped: (\d+) requests, 29 opportunities created, (\d+) answered 429", err
    )
    assert stopped, err
    assert int(stopped[1]) - int(stopped[2]) == 30
    assert out == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_fake_server_stops_on_ctrl_c_without_a_traceback() -> None:
    proc, _ = start_fake_server("--port", "0")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "stopped: 0 requests, 0 opportunities created, 0 answered 429" in err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_fake_server_stopped_while_it_starts_exits_0_quietly(
    monkeypatch: pytest.MonkeyPatch, signum: signal.Signals
) -> None:
    """A signal in the first ~0.2 s (while aiohttp imports) used to end in a traceback (SIGINT)
    or an unclean death (SIGTERM): here it arrives while the server is being built."""
    import close_async.testing

    def signalled(**options: object) -> None:
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(close_async.testing, "FakeCloseServer", signalled)
    before = signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(main, ["fake-server"])
    finally:
        signal.signal(signal.SIGTERM, before)
    assert result.exit_code == 0, result.output
    assert result.exception is None


def test_fake_server_options_are_checked() -> None:
    runner = CliRunner()
    bad_dialect = runner.invoke(main, ["fake-server", "--dialect", "yaml"])
    assert bad_dialect.exit_code == 2
    assert "unknown dialect 'yaml'" in bad_dialect.output
    bad_fault = runner.invoke(main, ["fake-server", "--fail", "explode"])
    assert bad_fault.exit_code == 2
    assert "unknown fault 'explode'" in bad_fault.output
    assert runner.invoke(main, ["fake-server", "--rate-limit", "0"]).exit_code == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = runner.invoke(main, ["fake-server", "--port", port])
    assert busy.exit_code == 2
    assert "--port" in busy.output
    assert "cannot listen" in busy.output
    helped = " ".join(runner.invoke(main, ["fake-server", "--help"]).output.split())
    for dialect in DIALECTS:  # the help's list of dialects is the server's own
        assert dialect in helped
