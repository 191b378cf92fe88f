"""Shared by the counting benchmarks (``bulk_cpu.py``, ``import_cpu.py --server``): CPU counted in
instructions by ``valgrind --tool=callgrind``, a figure the load of a shared machine does not move.

The measured child runs under callgrind and stops twice on a handshake: ``ready`` after its
warm-up (the parent zeroes the counters, ``callgrind_control --zero``), ``done`` after the
measured work (the parent reads them, ``callgrind_control -e Ir``). Only that work is counted.

Under callgrind the child runs ~50x slower, so each pooled connection sits idle for seconds
between two uses: past close-async's assumed server keep-alive (2 s), which then retires it and
opens a new one for nearly every request (counts of one tree varied 1.7M-2.1M per create so).
At the native rate a connection idles for milliseconds; ``keep_connections()`` makes the child
keep them for an hour, as it would natively.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

# The connection keep-alive while counting (see the module docstring).
SLOW_KEEPALIVE = 3600.0
_COUNTER = re.compile(rb"Th 1\s+([\d,]+)")  # callgrind_control -e Ir: "Th 1  617,692,155"


def can_count() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def keep_connections() -> None:
    """In a counted child: keep pooled connections as long as they would live natively."""
    from close_async._transport import body

    body.ASSUMED_SERVER_KEEPALIVE = SLOW_KEEPALIVE


def handshake(word: str) -> None:
    """In a counted child: tell the parent ``word`` and wait for its go."""
    print(word, flush=True)
    sys.stdin.readline()


def instructions(command: list[str]) -> int:
    """Instructions of ``command`` (a Python child) between its ``ready`` and ``done``."""
    child = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same run, instruction for instruction
    )
    assert child.stdin is not None
    assert child.stdout is not None
    control = ["callgrind_control", str(child.pid)]

    def step(expected: bytes, *action: str) -> bytes:
        line = child.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != expected:
            child.kill()
            raise RuntimeError(f"the counted child said {line!r}, not {expected!r}")
        out = subprocess.run([*control, *action], capture_output=True, check=True).stdout
        child.stdin.write(b"go\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        return out

    step(b"ready", "--zero")
    counters = step(b"done", "-e", "Ir")
    child.communicate(timeout=900)
    if child.returncode != 0:
        raise RuntimeError(f"the counted child failed ({child.returncode}): {command}")
    found = _COUNTER.search(counters)
    if found is None:
        raise RuntimeError(f"no instruction count from callgrind_control: {counters!r}")
    return int(found.group(1).replace(b",", b""))
