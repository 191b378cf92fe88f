"""docs/reconcile.md's first example type-checks as a user would run it (``mypy --strict``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.test_docs import ROOT, python_blocks


def test_the_reconcile_example_passes_mypy_strict(tmp_path: Path) -> None:
    lines = python_blocks(ROOT / "docs" / "reconcile.md")[0].code.splitlines()
    imports = [line for line in lines if line.startswith(("from ", "import "))]
    body = textwrap.indent("\n".join(line for line in lines if line not in imports), "    ")
    example = tmp_path / "example.py"
    example.write_text(
        "\n".join(imports)
        + "\n\n\nasync def main() -> None:\n"
        + body
        + "\n        print(opp.id)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(example)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + example.read_text()
