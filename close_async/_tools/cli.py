"""The ``close-async`` command: create one opportunity, import a file, run the demo, or serve
a fake Close API.

Needs the ``cli`` extra (click): ``pip install 'close-async[cli]'``.

``--base-url`` and ``--api-key`` are accepted before or after the command's name: each command
that talks to Close declares them too, and its own value wins over the group's (kept in the root
context's ``obj``). The SDK proper (aiohttp, msgspec) is imported inside the commands, so that
``--version``, ``--help`` and shell completion import click alone.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the extra installed
    raise SystemExit(
        "close-async: the command line needs click: pip install 'close-async[cli]'"
    ) from None

from .._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    CUSTOM_PREFIX,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    VALUE_PERIODS,
    __version__,
)
from .progress import Progress, terminal_width
from .serve import fake_server

if TYPE_CHECKING:
    from .._client import AsyncCloseClient
    from .importer import ImportSummary

F = TypeVar("F", bound=Callable[..., Any])
_EPILOG = (
    f"Credentials come from ${API_KEY_ENV} (an API key) or --api-key. Exit codes: 0 everything "
    "was created, 1 some rows failed or have an unknown outcome, 2 usage errors (nothing sent), "
    "3 stopped early (API key refused, server unreachable), 4 the journal could not be written "
    "(disk full), 130 interrupted (Ctrl-C, SIGTERM)."
)


def _keep(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Keep an option's value in the root context's ``obj``, unless it was not given."""
    if value is not None and param.name:
        ctx.find_root().ensure_object(dict)[param.name] = value


def _connection_options(*, group: bool) -> Callable[[F], F]:
    """``--base-url`` and ``--api-key``: on the group with their environment variables and
    default, on a command without (so that they only override what the group found)."""

    def decorate(f: F) -> F:
        key = click.option(
            "--api-key",
            metavar="KEY",
            envvar=API_KEY_ENV if group else None,
            expose_value=False,
            callback=_keep,
            help=f"Your Close API key (default ${API_KEY_ENV}, which is safer: other users of "
            "the machine can see a command line).",
        )
        url = click.option(
            "--base-url",
            metavar="URL",
            envvar=BASE_URL_ENV if group else None,
            default=DEFAULT_BASE_URL if group else None,
            expose_value=False,
            callback=_keep,
            help=f"The API root (default ${BASE_URL_ENV}, or {DEFAULT_BASE_URL}).",
        )
        return url(key(f))

    return decorate


def _option(name: str) -> Any:
    """An option kept by :func:`_keep` (None if not given)."""
    return click.get_current_context().find_root().ensure_object(dict).get(name)


@click.group(epilog=_EPILOG)
@click.version_option(__version__, "--version", "-V", prog_name="close-async")
@_connection_options(group=True)
def main() -> None:
    """Create Close opportunities from the command line, fast and without duplicates.

    \b
    Shell completion (bash; zsh and fish alike, see docs/cli.md):
      eval "$(_CLOSE_ASYNC_COMPLETE=bash_source close-async)"
    """


def _client(ctx: click.Context) -> AsyncCloseClient:
    from .._client import AsyncCloseClient
    from .._exceptions import CloseError

    api_key = _option("api_key")
    if not api_key:
        raise click.UsageError(f"set ${API_KEY_ENV} to your Close API key (or pass --api-key)")
    try:
        return AsyncCloseClient(api_key, base_url=_option("base_url"))
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
@click.option("--lead-id", help="The lead to add it to (required, unless --new-lead).")
@click.option(
    "--new-lead", is_flag=True, help="Instead of --lead-id: Close creates an 'Untitled' lead."
)
@click.option("--value", type=int, help="The value in cents: 500000 is $5,000.00.")
@click.option(
    "--value-period",
    type=click.Choice(VALUE_PERIODS),
    help="How often the value is paid.",
)
@click.option("--confidence", type=click.IntRange(0, 100), help="0 to 100.")
@click.option("--note", help="Free text shown on the opportunity.")
@click.option("--status-id", help="Defaults to the organization's first status.")
@click.option("--contact-id", help="A contact of the lead.")
@click.option("--user-id", help="The owner (defaults to the API key's user).")
@click.option("--custom", multiple=True, metavar="cf_ID=VALUE", help="A custom field; repeatable.")
@_connection_options(group=False)
@click.pass_context
def create(ctx: click.Context, /, custom: tuple[str, ...], new_lead: bool, **fields: Any) -> None:
    """Create one opportunity and print it as JSON."""
    import asyncio

    import msgspec

    from .._exceptions import CloseError, InvalidInputError

    if new_lead == bool(fields["lead_id"]):
        raise click.UsageError(
            "--lead-id and --new-lead exclude each other"
            if new_lead
            else "which lead? Pass --lead-id LEAD, or --new-lead to let Close create an "
            "'Untitled' lead for this opportunity"
        )
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
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    expose_value=False,
    callback=_keep,
    help="No progress; no summary either when every row was created.",
)
@click.option(
    "--json",
    is_flag=True,
    expose_value=False,
    callback=_keep,
    help="Print a JSON summary on stdout (the human one goes to stderr).",
)
@_connection_options(group=False)
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

    client = None if dry_run else _client(ctx)
    with _input(file) as path:
        code = asyncio.run(
            _import(
                client, path, journal, concurrency, retry_unknown, dry_run, output, fsync,
                encoding, name="standard input" if str(file) == "-" else str(file),
            )
        )  # fmt: skip
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
    *,
    name: str,
) -> int:
    from .._exceptions import InvalidInputError
    from .importer import EXIT_JOURNAL, Stop, run_import, stop_report
    from .journal import Journal, JournalError, JournalLockedError, is_disk_full
    from .preflight import PreflightError, check_input, check_paths

    stop = Stop()
    journal = None
    output: Any = None
    ran = False
    with stop.on_signals():
        try:
            check_paths(file, journal_path, output_path)
            if journal_path and not dry_run:
                journal = Journal(journal_path, fsync=fsync, input=file)
            rows = check_input(file, encoding=encoding, journal=journal)
            if rows == 0:
                click.echo(
                    f"error: nothing to import: {name} has no rows ({_empty(file)})", err=True
                )
                return 2
            if output_path is not None and journal is None and not dry_run:
                output = output_path.open("w", encoding="utf-8")
            progress = Progress(rows, quiet=bool(_option("quiet")))
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
            ran = True
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
                if ran and output_path is not None:
                    try:  # under the lock: no other import appends while we read
                        journal.export(output_path)  # every row's outcome, earlier runs' too
                    except OSError as exc:
                        click.echo(f"error: cannot write --output {output_path}: {exc}", err=True)
                journal.close()
            if output is not None:
                output.close()
    json_summary = bool(_option("json"))
    if json_summary:
        click.echo(summary_json(summary, dry_run=dry_run, journal=journal_path))
    if summary.exit_code or not _option("quiet"):
        print_summary(summary, dry_run=dry_run, journal=journal_path, err=json_summary)
    for line in stop_report(summary, journal=journal_path):
        click.echo(line, err=True)
    return summary.exit_code


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


@main.command()
@click.option(
    "--rows",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="How many generated rows to import.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=400,
    show_default=True,
    help="The fake server's rate limit: requests per window per API key.",
)
@click.option(
    "--window",
    type=click.FloatRange(0.05),
    default=1.0,
    show_default=True,
    help="The rate limit's window, in seconds.",
)
def demo(rows: int, limit: int, window: float) -> None:
    """Import generated opportunities into an embedded fake Close server: no account needed."""
    import asyncio

    from .demo import run_demo

    sys.exit(asyncio.run(run_demo(rows=rows, limit=limit, window=window)))


main.add_command(fake_server)


if __name__ == "__main__":  # pragma: no cover
    main()
