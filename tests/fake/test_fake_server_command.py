"""``close-async fake-server``'s options for the list lag, the list cap and random faults."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

import close_async.testing
from close_async._tools.cli import main
from close_async.testing import FaultPlan


class Built(Exception):
    """Raised by the stand-in FakeCloseServer with the options it was given."""


def built_with(monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, object]:
    def capture(**options: object) -> None:
        raise Built(options)

    monkeypatch.setattr(close_async.testing, "FakeCloseServer", capture)
    result = CliRunner().invoke(main, ["fake-server", *args])
    assert isinstance(result.exception, Built), result.output
    options = result.exception.args[0]
    assert isinstance(options, dict)
    return options


def test_lag_cap_and_fault_rates_reach_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    options = built_with(
        monkeypatch,
        "--list-lag", "2", "--max-skip", "250", "--late-seconds", "45",
        "--fault-rate", "drop_after_create=0.01", "--fault-rate", "error_after_create=0.005",
        "--fault-seed", "7",
    )  # fmt: skip
    assert options["list_lag"] == 2.0
    assert options["max_skip"] == 250
    assert options["late_seconds"] == 45.0
    assert options["faults"] == FaultPlan(drop_after_create=0.01, error_after_create=0.005, seed=7)


def test_without_those_options_the_server_keeps_its_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    options = built_with(monkeypatch)
    assert (options["list_lag"], options["max_skip"], options["late_seconds"]) == (0.0, None, 60.0)
    assert "faults" not in options


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        pytest.param("drop_after_create", "is not NAME=RATE", id="no_rate"),
        pytest.param("explode=0.1", "explode", id="unknown_name"),
        pytest.param("drop_after_create=2", "between 0 and 1", id="out_of_range"),
    ],
)
def test_a_bad_fault_rate_is_a_usage_error(rate: str, message: str) -> None:
    result = CliRunner().invoke(main, ["fake-server", "--fault-rate", rate])
    assert result.exit_code == 2
    assert "--fault-rate" in result.output
    assert message in result.output


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_the_served_fake_plays_the_fault_plan() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "close_async", "fake-server", "--fault-rate",
         "drop_before_create=1", "--list-lag", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        request = urllib.request.Request(
            url + "opportunity/", data=b"{}", headers={"Authorization": "Bearer k"}
        )
        with pytest.raises((urllib.error.URLError, http.client.HTTPException, OSError)):
            urllib.request.urlopen(request, timeout=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "random create faults: drop_before_create 1 (seed 0); the list lags 0.5 s" in err
    assert "stopped: 1 requests, 0 opportunities created" in err
