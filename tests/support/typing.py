"""Running mypy --strict on a snippet of user code, for the typing tests."""

from __future__ import annotations

from pathlib import Path


def run_mypy(tmp_path: Path, source: str) -> tuple[list[str], list[str]]:
    """mypy --strict on ``source``: its revealed types and its error lines."""
    from mypy import api as mypy_api  # in the dev extra, which the test command installs

    snippet = tmp_path / "snippet.py"
    snippet.write_text(source)
    out, err, _ = mypy_api.run(
        ["--strict", "--no-incremental", "--cache-dir", str(tmp_path / ".mypy"), str(snippet)]
    )
    # Older mypy releases spell list as builtins.list.
    revealed = [
        line.split("Revealed type is ")[1].replace("builtins.", "")
        for line in out.splitlines()
        if "Revealed" in line
    ]
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert revealed or errors, out + err
    return revealed, errors
