"""The ``close-async`` command: create one opportunity, import a file, or run the demo.

Needs the ``cli`` extra (click): ``pip install 'close-async[cli]'``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the extra installed
    raise SystemExit(
        "close-async: the command line needs click: pip install 'close-async[cli]'"
    ) from None
import msgspec

from ._client import AsyncCloseClient
from ._constants import API_KEY_ENV, BASE_URL_ENV, CUSTOM_PREFIX, DEFAULT_BASE_URL, __version__
from ._exceptions import CloseError, InvalidInputError
from ._importer import EXIT_JOURNAL, ImportSummary, Stop, run_import, stop_report
from ._journal import Journal, JournalError, JournalLockedError, is_disk_full
from ._opportunities import DEFAULT_CONCURRENCY
from ._preflight import PreflightError, check_input, check_paths

_EPILOG = (
    f"Credentials come from ${API_KEY_ENV} (an API key). Exit codes: 0 everything was "
    "created, 1 some rows failed or have an unknown outcome, 2 usage errors (nothing sent), "
    "3 stopped early (API key refused, server unreachable), 4 the journal could not be "
    "written (disk full), 130 interrupted (Ctrl-C, SIGTERM)."
)


@click.group(epilog=_EPILOG)
@click.version_option(__version__, prog_name="close-async")
@click.option(
    "--base-url",
    envvar=BASE_URL_ENV,
    default=DEFAULT_BASE_URL,
    show_default=True,
    help="The API root (also $CLOSE_BASE_URL).",
)
@click.pass_context
def main(ctx: click.Context, base_url: str) -> None:
    """Create Close opportunities from the command line, fast and without duplicates."""
    ctx.obj = {"base_url": base_url}


def _client(ctx: click.Context) -> AsyncCloseClient:
    if not os.environ.get(API_KEY_ENV):
        raise click.UsageError(f"set ${API_KEY_ENV} to your Close API key")
    try:
        return AsyncCloseClient(base_url=ctx.obj["base_url"])
    except CloseError as exc:
        raise click.UsageError(str(exc)) from None


def _custom(values: tuple[str, ...]) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected cf_<id>=value", param_hint="--custom")
        custom[key.strip().removeprefix(CUSTOM_PREFIX)] = value
    return custom


@main.command()
@click.option("--lead-id", help="The lead (without one, Close creates an 'Untitled' lead).")
@click.option("--value", type=int, help="The value in cents: 500000 is $5,000.00.")
@click.option("--value-period", type=click.Choice(["one_time", "monthly", "annual"]))
@click.option("--confidence", type=click.IntRange(0, 100), help="0 to 100.")
@click.option("--note")
@click.option("--status-id", help="Defaults to the organization's first status.")
@click.option("--contact-id")
@click.option("--user-id")
@click.option("--custom", multiple=True, metavar="cf_ID=VALUE", help="A custom field; repeatable.")
@click.pass_context
def create(ctx: click.Context, /, custom: tuple[str, ...], **fields: Any) -> None:
    """Create one opportunity and print it as JSON."""
    given = {k: v for k, v in fields.items() if v is not None}
    client = _client(ctx)

    async def run() -> bytes:
        async with client:
            opp = await client.opportunities.create(**given, custom=_custom(custom))
        return msgspec.json.format(msgspec.json.encode(opp))

    try:
        click.echo(asyncio.run(run()).decode())
    except InvalidInputError as exc:
        raise click.UsageError(str(exc)) from None
    except CloseError as exc:
        hint = " (it may have been created: check before retrying)"
        click.echo(f"error: {exc}{hint if exc.may_have_succeeded else ''}", err=True)
        sys.exit(1)


@main.command(name="import", epilog=_EPILOG)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
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
)
@click.option("--retry-unknown", is_flag=True, help="Re-send rows whose outcome is unknown.")
@click.option("--dry-run", is_flag=True, help="Validate every row; send nothing.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write each row's outcome here (JSON Lines); with --journal, every run's outcomes.",
)
@click.option("--fsync", is_flag=True, help="fsync the journal as it grows (power-cut safe).")
@click.option(
    "--encoding",
    help="The file's text encoding (default UTF-8; a byte order mark wins), e.g. cp1252.",
)
@click.pass_context
def import_(
    ctx: click.Context,
    file: Path,
    journal: Path | None,
    concurrency: int,
    retry_unknown: bool,
    dry_run: bool,
    output: Path | None,
    fsync: bool,
    encoding: str | None,
) -> None:
    """Create one opportunity per row of FILE (.csv, or JSON Lines otherwise).

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
    client = None if dry_run else _client(ctx)
    code = asyncio.run(
        _import(client, file, journal, concurrency, retry_unknown, dry_run, output, fsync, encoding)
    )
    sys.exit(code)


async def _import(
    client: AsyncCloseClient | None,
    file: Path,
    journal_path: Path | None,
    concurrency: int,
    retry_unknown: bool,
    dry_run: bool,
    output_path: Path | None,
    fsync: bool,
    encoding: str | None,
) -> int:
    stop = Stop()
    journal = None
    output: Any = None
    with stop.on_signals():
        try:
            check_paths(file, journal_path, output_path)
            if journal_path and not dry_run:
                journal = Journal(journal_path, fsync=fsync, input=file)
            check_input(file, encoding=encoding, journal=journal)
            if output_path is not None and journal is None and not dry_run:
                output = output_path.open("w", encoding="utf-8")
            progress = Progress(_count_rows(file))
            try:
                if client is not None:
                    async with client:
                        summary = await run_import(
                            client, file, journal=journal, concurrency=concurrency,
                            retry_unknown=retry_unknown, output=output, progress=progress,
                            encoding=encoding, stop=stop,
                        )  # fmt: skip
                else:
                    summary = await run_import(
                        None, file, journal=None, concurrency=concurrency, dry_run=True,
                        progress=progress, encoding=encoding,
                    )  # fmt: skip
            finally:
                progress.finish()
        except (PreflightError, JournalLockedError, InvalidInputError) as exc:
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
                journal.close()
            if output is not None:
                output.close()
    if journal is not None and output_path is not None:
        try:
            journal.export(output_path)  # every row's outcome, earlier runs' included
        except OSError as exc:
            click.echo(f"error: cannot write --output {output_path}: {exc}", err=True)
    print_summary(summary, dry_run=dry_run, journal=journal_path)
    for line in stop_report(summary, journal=journal_path):
        click.echo(line, err=True)
    return summary.exit_code


def _count_rows(path: Path) -> int:
    with path.open("rb") as f:
        lines = sum(1 for line in f if line.strip())
    return max(0, lines - 1) if path.suffix.lower() == ".csv" else lines


class Progress:
    """A bar on a terminal; otherwise a plain line every few seconds."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._shown = 0
        self._last = 0.0
        if self.tty:
            self._bar = click.progressbar(length=total, label="importing", file=sys.stderr)
            self._bar.__enter__()

    def __call__(self, summary: ImportSummary) -> None:
        done = summary.created + summary.skipped + len(summary.failed) + len(summary.unknown)
        if self._bar is not None:
            self._bar.update(done - self._shown)
            self._shown = done
        elif time.monotonic() - self._last >= 2.0 or done == self.total:
            self._last = time.monotonic()
            click.echo(
                f"progress: {done}/{self.total} rows, {summary.created} created, "
                f"{len(summary.failed)} failed, {len(summary.unknown)} unknown",
                err=True,
            )

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def print_summary(summary: ImportSummary, *, dry_run: bool, journal: Path | None) -> None:
    echo = click.echo
    if dry_run:
        echo(f"dry run: {summary.rows} rows, {len(summary.failed)} invalid; nothing was sent")
    else:
        rate = summary.created / summary.seconds if summary.seconds else 0.0
        echo(
            f"{summary.rows} rows: {summary.created} created now, {summary.skipped} already "
            f"created, {len(summary.failed)} failed, {len(summary.unknown)} unknown "
            f"({summary.seconds:.1f} s, {rate:.0f} created/s)"
        )
    for line, reason in summary.failed:
        echo(f"  line {line}: failed: {reason}")
    if summary.unknown:
        echo(
            f"{len(summary.unknown)} rows may or may not have been created (their request left"
            " and no definite answer came back). They were not re-sent, to avoid duplicates:"
        )
        for line, reason in summary.unknown:
            echo(f"  line {line}: unknown: {reason}")
        again = f" --journal {journal}" if journal else ""
        echo(f"Check them in Close, or re-run with{again} --retry-unknown to send them again.")


@main.command()
@click.option("--rows", type=click.IntRange(1, 100_000), default=2000, show_default=True)
@click.option("--limit", type=click.IntRange(1), default=400, show_default=True)
@click.option("--window", type=click.FloatRange(0.05), default=1.0, show_default=True)
def demo(rows: int, limit: int, window: float) -> None:
    """Import generated opportunities into an embedded fake Close server: no account needed."""
    from ._demo import run_demo

    sys.exit(asyncio.run(run_demo(rows=rows, limit=limit, window=window)))


if __name__ == "__main__":  # pragma: no cover
    main()
