"""What ``close-async import`` prints at the end: the human summary, or a JSON one.

The human summary lists failed and unknown rows in line order, wrapped to the width of the
terminal it is printed on (not wrapped into a pipe or a file); ``--json`` puts a machine-readable
summary on stdout and the human lines on stderr.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from .cli_common import click
from .progress import terminal_width

if TYPE_CHECKING:
    from .import_summary import ImportSummary


def summary_json(summary: ImportSummary, *, dry_run: bool, journal: Path | None) -> str:
    """The summary as one JSON object: every ImportSummary field (failed and unknown rows as
    ``{"line", "error"}`` in line order) plus ``dry_run``, ``journal`` and ``exit_code``."""
    import dataclasses

    import msgspec

    data = dataclasses.asdict(summary)
    for key in ("failed", "unknown"):
        data[key] = [{"line": n, "error": e} for n, e in sorted(getattr(summary, key))]
    data["seconds"] = round(summary.seconds, 3)
    data.update(dry_run=dry_run, journal=journal and str(journal), exit_code=summary.exit_code)
    return msgspec.json.encode(data, enc_hook=str).decode()  # str: a Path, say


def print_summary(
    summary: ImportSummary, *, dry_run: bool, journal: Path | None, err: bool = False
) -> None:
    """The human summary, rows in line order, wrapped to the terminal's width (if it is one)."""
    stream = sys.stderr if err else sys.stdout
    width = terminal_width(stream) - 1 if stream.isatty() else 0

    def echo(text: str) -> None:
        if width and len(text) > width:  # continuation lines indented under the text
            indent = " " * (len(text) - len(text.lstrip()) + 4)
            text = textwrap.fill(
                text, width, subsequent_indent=indent, break_long_words=False,
                break_on_hyphens=False,
            )  # fmt: skip
        click.echo(text, err=err)

    if dry_run:
        echo(f"dry run: {summary.rows} rows, {len(summary.failed)} invalid; nothing was sent")
    else:
        rate = summary.created / summary.seconds if summary.seconds else 0.0
        echo(
            f"{summary.rows} rows: {summary.created} created now, {summary.skipped} already "
            f"created, {len(summary.failed)} failed, {len(summary.unknown)} unknown "
            f"({summary.seconds:.1f} s, {rate:.0f} created/s)"
        )
        if summary.settled:
            echo(
                f"reconcile: {summary.reconciled} unknown rows found created, {summary.resent}"
                " found absent and sent again:"
            )
        for line, what in summary.settled:
            echo(f"  line {line}: {what}")
    for line, reason in sorted(summary.failed):
        echo(f"  line {line}: failed: {reason}")
    if summary.unknown:
        echo(
            f"{len(summary.unknown)} rows may or may not have been created (their request left"
            " and no definite answer came back). They were not re-sent, to avoid duplicates:"
        )
        for line, reason in sorted(summary.unknown):
            echo(f"  line {line}: unknown: {reason}")
        again = f" --journal {journal}" if journal else ""
        click.echo(  # not wrapped: it holds a command to copy
            f"Check them in Close, or re-run with{again} --retry-unknown to send them again.",
            err=err,
        )
        click.echo(f"Or re-run with{again} --reconcile to look them up in Close first.", err=err)
