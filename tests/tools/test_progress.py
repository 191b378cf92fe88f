"""The import's progress line, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from close_async._tools.importer import ImportSummary
from close_async._tools.progress import Progress, duration
from tests.support.cli import csv_rows, server_thread, write_csv


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def bar(total: int, **options: Any) -> tuple[Progress, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    options = {"tty": True, "width": 100, **options}
    return Progress(total, stream=stream, clock=clock, **options), stream, clock


def screen(stream: io.StringIO) -> str:
    """What the terminal shows last: the text after the last carriage return."""
    return stream.getvalue().rsplit("\r", 1)[-1]


def test_duration_reads_like_a_clock() -> None:
    assert [duration(s) for s in (0, 7.4, 754, 3723)] == ["0:00", "0:07", "12:34", "1:02:03"]


def test_bar_shows_counts_rate_and_eta() -> None:
    progress, stream, clock = bar(2000)
    summary = ImportSummary()
    progress(summary)
    assert "0/2000" in screen(stream)
    assert "--/s  ETA --" in screen(stream)  # no rate before a second has passed
    for step in range(1, 41):  # 50 rows per 0.25 s: 200/s
        clock.now += 0.25
        summary.created += 48
        summary.failed += [(0, "x")]
        summary.unknown += [(0, "y")]
        progress(summary)
        if step == 20:
            assert "1000/2000" in screen(stream)
            assert "200/s  ETA 0:05" in screen(stream)
            inside = screen(stream)[1 : screen(stream).index("]")]
            assert inside.count("#") == inside.count("-") > 10  # half done
    shown = screen(stream)
    assert "2000/2000  1920 created, 40 failed, 40 unknown  200/s  ETA 0:00" in shown
    assert shown.startswith("[####")
    assert "-" not in shown.split("]")[0]


def test_rate_ignores_rows_skipped_from_an_earlier_run() -> None:
    progress, stream, clock = bar(10_000)
    summary = ImportSummary(skipped=5000)  # a resume: 5,000 rows skipped in no time
    progress(summary)
    for _ in range(20):
        clock.now += 0.5
        summary.created += 50  # 100/s
        progress(summary)
    shown = screen(stream)
    assert "6000/10000" in shown
    assert "100/s  ETA 0:40" in shown  # 4,000 rows left at 100/s
    assert "5000 already created" in shown


def test_rate_is_measured_over_the_last_ten_seconds() -> None:
    progress, _, clock = bar(100_000)
    summary = ImportSummary()
    progress(summary)
    for _ in range(100):  # 1,000/s for 10 s ...
        clock.now += 0.1
        summary.created += 100
        progress(summary)
    for _ in range(100):  # ... then a 10 s pause for a rate limit
        clock.now += 0.1
        progress(summary)
    rate = progress.rate()
    assert rate is not None
    assert rate < 20  # not 500/s, the average since the start


def test_bar_fits_the_terminal_and_redraws_at_most_ten_times_a_second() -> None:
    progress, stream, clock = bar(50_000, width=60)
    summary = ImportSummary(created=12_345, failed=[(2, "x")] * 1234)
    for _ in range(100):
        clock.now += 0.01  # 1 s in all
        progress(summary)
    draws = stream.getvalue().split("\r")[1:]
    assert 9 <= len(draws) <= 11
    assert all(len(draw) <= 59 for draw in draws)
    narrow, narrow_stream, _ = bar(50_000, width=30)
    narrow(summary)
    assert "[" not in screen(narrow_stream)  # no room for a bar: the counts first
    assert len(screen(narrow_stream)) == 29


def test_finish_draws_the_last_counts_and_ends_the_line() -> None:
    progress, stream, clock = bar(3)
    summary = ImportSummary()
    progress(summary)
    summary.created = 3
    clock.now += 0.01  # too soon for a redraw
    progress(summary)
    assert "0/3" in screen(stream)
    progress.finish()
    assert stream.getvalue().endswith("\n")
    assert "3/3" in screen(stream)
    assert "300/s  ETA 0:00" in screen(stream)  # shorter than a second: its average
    progress.finish()  # twice is harmless
    assert stream.getvalue().count("\n") == 1


def test_plain_lines_off_a_terminal_and_nothing_when_quiet() -> None:
    progress, stream, clock = bar(10, tty=False)
    summary = ImportSummary()
    for _ in range(10):
        clock.now += 0.5
        summary.created += 1
        progress(summary)
    progress.finish()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) == 4  # at once, every 2 s, and the last
    assert lines[-1] == "progress: 10/10 rows, 10 created, 0 failed, 0 unknown, 2/s, ETA 0:00"
    quiet, quiet_stream, _ = bar(10, quiet=True)
    quiet(summary)
    quiet.finish()
    assert quiet_stream.getvalue() == ""


def import_on_a_terminal(
    tmp_path: Path, *extra: str, columns: int | None = None
) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """``close-async import`` of 20 rows with stderr on a pseudo-terminal (``columns`` wide, or
    of no size set) and stdout a pipe: the process, and what the terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    path = write_csv(tmp_path / "in.csv", csv_rows(20))
    with server_thread() as fake:
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        env.update(CLOSE_API_KEY="api_tty", CLOSE_BASE_URL=fake.base_url)
        leader, follower = pty.openpty()
        if columns is not None:
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        with os.fdopen(leader, "rb", buffering=0) as terminal:
            proc = subprocess.run(
                [sys.executable, "-m", "close_async", "import", str(path), *extra],
                env=env, stdout=subprocess.PIPE, stderr=follower, timeout=60,
            )  # fmt: skip
            os.close(follower)
            seen = b""
            while True:
                try:
                    chunk = terminal.read(4096)
                except OSError:  # EIO: the terminal's other side is closed
                    break
                if not chunk:
                    break
                seen += chunk
    return proc, seen.decode()


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_the_real_command_draws_a_bar_only_on_a_terminal(tmp_path: Path) -> None:
    proc, text = import_on_a_terminal(tmp_path)
    assert proc.returncode == 0
    assert "\r[" in text
    assert "20/20  20 created, 0 failed, 0 unknown" in text
    assert "progress:" not in text
    assert b"20 rows: 20 created now" in proc.stdout  # the summary still on stdout


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_the_bar_fits_the_width_of_its_own_terminal_when_stdout_is_a_pipe(tmp_path: Path) -> None:
    """``--json > file`` is common: the bar on stderr is sized from stderr's terminal."""
    proc, text = import_on_a_terminal(tmp_path, "--json", columns=50)
    assert proc.returncode == 0
    draws = [d for d in text.split("\r") if "/20" in d]
    assert any("20/20" in d for d in draws), text
    assert max(len(d.rstrip("\n")) for d in draws) <= 49, draws
