"""``close-async import``: the command's options and its run, from the checks to the summary.

The options arrive as one ``ImportOptions``: a new option is one ``click.option`` on
``import_`` and one field there. The import itself is ``_importer.run_import``; this module opens
the journal (waiting for another import to let go of it with ``--wait``), runs the checks before
anything is sent, and turns every failure into one message and an exit code, never a traceback.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._constants import DEFAULT_CONCURRENCY
from .cli_common import EPILOG, click, connection_options, keep, make_client, option
from .cli_summary import print_summary, summary_json
from .progress import Progress

if TYPE_CHECKING:
    from .._client import AsyncCloseClient
    from .importer import Stop
    from .journal import Journal


@dataclass(frozen=True)
class ImportOptions:
    """Every option of ``close-async import`` but the connection's (see ``cli_common``)."""

    journal: Path | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    retry_unknown: bool = False
    dry_run: bool = False
    output: Path | None = None
    fsync: bool = False
    encoding: str | None = None
    wait: bool = False
    wait_timeout: float | None = None
    reconcile: bool = False
    settle: float = 120.0
    name: str = ""  # the input as the user named it ("standard input" for -)

    @property
    def wait_seconds(self) -> float:
        """How long to wait for a journal in use: 0 (refuse at once) unless --wait."""
        if self.wait_timeout is not None:
            return self.wait_timeout
        return math.inf if self.wait else 0.0


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """``--settle``: FloatRange(0) lets ``nan`` and ``inf`` through; refused before anything."""
    if not math.isfinite(value):
        raise click.BadParameter(f"{value!r} is not a finite number of seconds")
    return value


@click.command(name="import", epilog=EPILOG)
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option(
    "--journal",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append-only record of each row's outcome; re-run with it to resume.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Creates in flight at once; the server's rate limit still applies.",
)
@click.option("--retry-unknown", is_flag=True, help="Re-send rows whose outcome is unknown.")
@click.option(
    "--reconcile",
    is_flag=True,
    help="Look up rows whose outcome is unknown: found ones are recorded as created, absent"
    " ones are sent again once (see docs/reconcile.md).",
)
@click.option(
    "--settle",
    type=click.FloatRange(0),
    callback=_finite,
    default=120.0,
    show_default=True,
    metavar="SECONDS",
    help="With --reconcile: how long after a row was sent Close's list can be trusted to show"
    " it (it lags writes by 30-60 s).",
)
@click.option("--dry-run", is_flag=True, help="Validate every row; send nothing.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write each row's outcome here (JSON Lines); with --journal, every run's outcomes.",
)
@click.option("--fsync", is_flag=True, help="fsync the journal as it grows (power-cut safe).")
@click.option(
    "--wait",
    is_flag=True,
    help="If another import holds the journal, wait for it to finish instead of refusing.",
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="Wait at most this long for the journal (implies --wait); then exit 2.",
)
@click.option(
    "--encoding",
    help="The file's text encoding (default UTF-8; a byte order mark wins), e.g. cp1252.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    expose_value=False,
    callback=keep,
    help="No progress; no summary either when every row was created.",
)
@click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=keep,
    help="Print a JSON summary on stdout (the human one goes to stderr).",
)
@connection_options(group=False)
def import_(file: Path, **given: Any) -> None:
    """Create one opportunity per row of FILE (.csv, or JSON Lines otherwise; - reads
    standard input: JSON Lines if it starts with {, CSV otherwise).

    CSV: a header row of field names (lead_id, value, value_period, confidence, note,
    status_id, date_won, ..., custom.cf_<id>); an empty cell is not sent; value and
    confidence are integers (value in cents); a custom cell starting with [ is a JSON list.
    Bad rows are reported with their line number and do not stop the others.

    Resumable: with --journal, kill it at any point and run the same command again;
    rows already created are skipped and nothing is ever sent twice on its own.

    \b
    Example:
      close-async import deals.csv --journal deals.journal --output results.jsonl
    """
    import asyncio

    name = "standard input" if str(file) == "-" else str(file)
    opts = ImportOptions(**given, name=name)
    client = None if opts.dry_run else make_client()
    with _input(file) as path:
        code = asyncio.run(_import(client, path, opts))
    sys.exit(code)


@contextlib.contextmanager
def _input(file: Path) -> Iterator[Path]:
    """FILE, or a temporary copy of what can be read only once: ``-`` (standard input), a pipe,
    ``<(cmd)``. The import reads its input more than once (the checks, then row by row)."""
    import stat

    if str(file) != "-" and stat.S_ISREG(file.stat().st_mode):
        yield file
        return
    import tempfile

    if str(file) == "-":
        if sys.stdin is None:
            raise click.UsageError("standard input is closed: nothing to read for -")
        source = sys.stdin.buffer
    else:
        source = file.open("rb")
    with source, tempfile.TemporaryDirectory(prefix="close-async-") as tmp:
        head = source.read(4096)
        suffix = file.suffix.lower()
        if not suffix:  # '-', or a pipe with no name to go by: JSON Lines start with {
            jsonl = head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{")
            suffix = ".jsonl" if jsonl else ".csv"
        path = Path(tmp, "input" + suffix)
        with path.open("wb") as f:
            f.write(head)
            shutil.copyfileobj(source, f)
        yield path


def _empty(path: Path) -> str:
    """Why a file with no rows has none: a CSV with its header alone, or nothing at all."""
    with path.open("rb") as f:
        header = path.suffix.lower() == ".csv" and any(line.strip() for line in f)
    return "only a header row" if header else "it is empty"


async def _import(client: AsyncCloseClient | None, file: Path, opts: ImportOptions) -> int:
    from .._exceptions import InvalidInputError
    from .importer import EXIT_INTERRUPTED, EXIT_JOURNAL, Stop, run_import, stop_report
    from .journal import JournalError, JournalFormatError, JournalLockedError, is_disk_full
    from .preflight import PreflightError, check_input, check_paths

    journal_path, output_path = opts.journal, opts.output

    stop = Stop()
    journal = None
    output: Any = None
    ran = False
    with stop.on_signals():
        try:
            check_paths(file, journal_path, output_path)
            if journal_path and not opts.dry_run:
                journal = await _open_journal(journal_path, opts, file, stop)
                if journal is None:
                    return EXIT_INTERRUPTED
            rows = check_input(file, encoding=opts.encoding, journal=journal)
            if rows == 0:
                click.echo(
                    f"error: nothing to import: {opts.name} has no rows ({_empty(file)})", err=True
                )
                return 2
            if output_path is not None and journal is None and not opts.dry_run:
                output = output_path.open("w", encoding="utf-8")
            progress = Progress(rows, quiet=bool(option("quiet")))
            try:
                if client is not None:
                    async with client:
                        summary = await run_import(
                            client, file, journal=journal, concurrency=opts.concurrency,
                            retry_unknown=opts.retry_unknown, output=output, progress=progress,
                            encoding=opts.encoding, stop=stop, reconcile=opts.reconcile,
                            settle=opts.settle,
                        )  # fmt: skip
                else:
                    summary = await run_import(
                        None, file, journal=None, concurrency=opts.concurrency, dry_run=True,
                        progress=progress, encoding=opts.encoding,
                    )  # fmt: skip
            finally:
                progress.finish()
            ran = True
        except (PreflightError, JournalLockedError, JournalFormatError, InvalidInputError) as exc:
            click.echo(f"error: {exc}", err=True)
            return 2
        except (JournalError, OSError) as exc:  # a journal or --output that cannot be written
            click.echo(f"error: {exc}", err=True)
            return EXIT_JOURNAL if is_disk_full(exc) or isinstance(exc, JournalError) else 2
        except Exception as exc:  # a bug of ours: still no traceback, and how to go on
            again = " The journal has every outcome so far: the same command resumes." * bool(
                journal
            )
            click.echo(f"error: unexpected {type(exc).__name__}: {exc}.{again}", err=True)
            return 1
        finally:
            if journal is not None:
                if ran and output_path is not None:
                    try:  # under the lock: no other import appends while we read
                        journal.export(output_path)  # every row's outcome, earlier runs' too
                    except OSError as exc:
                        click.echo(f"error: cannot write --output {output_path}: {exc}", err=True)
                journal.close()
            if output is not None:
                output.close()
    json_summary = bool(option("json"))
    if json_summary:
        click.echo(summary_json(summary, dry_run=opts.dry_run, journal=journal_path))
    if summary.exit_code or not option("quiet"):
        print_summary(summary, dry_run=opts.dry_run, journal=journal_path, err=json_summary)
    for line in stop_report(summary, journal=journal_path):
        click.echo(line, err=True)
    return summary.exit_code


async def _open_journal(path: Path, opts: ImportOptions, file: Path, stop: Stop) -> Journal | None:
    """The journal, locked for this run; with ``--wait``, once the import holding it has let go
    (said once on stderr). None when a signal came first (nothing was sent)."""
    import asyncio

    from .journal import open_journal

    def waiting(holder: str) -> None:
        limit = "" if math.isinf(opts.wait_seconds) else f" (at most {opts.wait_seconds:g} s)"
        if not option("quiet"):
            click.echo(
                f"waiting for the import that holds the journal {path} ({holder}) to finish"
                f"{limit}; Ctrl-C stops waiting (nothing sent yet)",
                err=True,
            )

    opening = asyncio.ensure_future(
        open_journal(path, wait=opts.wait_seconds, on_wait=waiting, fsync=opts.fsync, input=file)
    )
    stopped = asyncio.ensure_future(stop.soft.wait())
    await asyncio.wait({opening, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if opening.done():
        return opening.result()
    opening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await opening
    click.echo(
        f"interrupted by {stop.reason} while waiting for the journal: nothing was sent", err=True
    )
    return None
