"""When an import stops early, and what it then says.

The run stops, sending nothing more, when:

- the server refuses the API key (401) or the plan (402), redirects (the base URL is wrong),
  asks (429) for a longer wait than the client's ``max_retry_wait``, or cannot be reached at
  all (the first connection failure before any success, else 10 in a row): ``stop_reason``
  says why, once, instead of one message per row (exit 3); the results that failed the same
  way after it (``same_stop``) are held back, not listed per row;
- the journal cannot be written (disk full): exit 4;
- ``Stop`` is triggered (``Stop.on_signals``: Ctrl-C, SIGTERM): the first call stops sending,
  the second cuts the requests still out (exit 130).

``stop_report`` is what a stopped run prints: why, the rows in flight when cut (they may have
been created), the rows the journal could not take, and the command that resumes it (with the
value of ``--api-key`` never shown).

``settle_or_stop`` runs ``--reconcile`` (``import_reconcile``) until it is done or ``Stop`` is
triggered: the rows it had not settled then stay unknown (exit 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .._client import AsyncCloseClient
from .._constants import API_KEY_ENV
from .._exceptions import APIConnectionError, AuthenticationError, RateLimitError, RedirectError
from .import_reconcile import UnknownRow, settle_unknown
from .import_summary import EXIT_INTERRUPTED, EXIT_JOURNAL, EXIT_STOPPED, ImportSummary
from .journal import Journal

# After this many connection failures in a row (or the first, before any success): stop.
_UNREACHABLE_AFTER = 10


class Stop:
    """Ask a running import to stop: the first call stops sending, the second cuts requests."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.soft = asyncio.Event()
        self.hard = asyncio.Event()

    def __call__(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.soft.set()
        else:
            self.hard.set()

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        """Route SIGINT and SIGTERM here while the block runs (inside the event loop)."""
        loop = asyncio.get_running_loop()
        names = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}
        try:
            for sig, name in names.items():
                loop.add_signal_handler(sig, self, name)
        except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C stays KeyboardInterrupt
            names = {}
        try:
            yield
        finally:
            for sig in names:
                loop.remove_signal_handler(sig)


def stop_reason(result: object, client: AsyncCloseClient, failures: int | None) -> str | None:
    """Why no further row should be sent after ``result``, or None."""
    if isinstance(result, AuthenticationError):
        return f"the server refused the API key ({result}): check ${API_KEY_ENV}"
    if getattr(result, "status_code", None) == 402:
        return f"the organization's plan refused the request ({result})"
    cap = client.retry_policy.max_retry_wait
    if isinstance(result, RateLimitError) and (result.retry_after or 0) > cap:
        return (
            f"the server asks to wait {result.retry_after:.0f} s before more requests (over"
            f" the {cap:g} s the client waits out): run the same command again after that"
        )
    if isinstance(result, RedirectError):
        to = _base_url(result.location or "", client.base_url)
        return f"the base URL redirects to {to}: use --base-url {to}"
    connection = isinstance(result, APIConnectionError) and not result.may_have_succeeded
    if connection and (failures is None or failures + 1 >= _UNREACHABLE_AFTER):
        return f"cannot reach {client.base_url} ({result}): check --base-url"
    return None


def same_stop(result: object, stopped: str) -> bool:
    """A result that failed the way the stop said (the rest of the 401s): not listed per row."""
    if isinstance(result, RedirectError):
        return "the base URL redirects" in stopped
    if isinstance(result, RateLimitError):
        return "the server asks to wait" in stopped
    return (isinstance(result, AuthenticationError) and API_KEY_ENV in stopped) or (
        isinstance(result, APIConnectionError)
        and not result.may_have_succeeded
        and "cannot reach" in stopped
    )


def _base_url(location: str, base_url: str) -> str:
    """The base URL a redirect points to: ``location`` less the path we asked for under it."""
    path = "opportunity/"  # the only endpoint the import uses
    if location.endswith(path) and base_url.endswith("/"):
        return location[: -len(path)]
    return location or "(no Location)"


def stop_report(
    summary: ImportSummary, *, journal: Path | None, argv: list[str] | None = None
) -> list[str]:
    """What a stopped run says: why, the rows in flight, and the command to resume."""
    if summary.stopped is None:
        return []
    lines = [f"stopped: {summary.stopped}."]
    if summary.in_flight:
        lines.append(
            f"{len(summary.in_flight)} rows were in flight when cut (their request had left, so"
            f" they may or may not have been created): {_lines(summary.in_flight)}"
        )
    if summary.unrecorded:
        lines.append(
            "not in the journal (it could not be written); a resume calls them unknown: "
            + ", ".join(f"line {line}: {what}" for line, what in summary.unrecorded[:20])
        )
    held = f"{summary.not_sent} rows read were held back or refused (not created); " * bool(
        summary.not_sent
    )
    lines.append(f"{held}rows after line {summary.last_line}, if any, were not read.")
    command = "close-async " + _shell_command(sys.argv[1:] if argv is None else argv)
    if journal is None and summary.created == 0 and not summary.in_flight:
        lines.append("Nothing was created: run the same command again once that is fixed.")
    elif journal is None:
        lines.append(
            "There was no --journal: running the same command again sends every row again."
            " Add --journal FILE to make an import resumable."
        )
    else:
        fix = {EXIT_STOPPED: "Fix that, then resume", EXIT_JOURNAL: "Free some space, then resume"}
        lines.append(f"{fix.get(summary.stop_code, 'To resume')}: {command}")
        if _KEY_SHOWN in command:
            lines.append(f"(the API key is not shown: set ${API_KEY_ENV} to it, then run that)")
    return lines


_KEY_OPTION = "--api-key"
_KEY_SHOWN = f'"${API_KEY_ENV}"'  # left to the shell to expand, never the key itself


def _shell_command(argv: list[str]) -> str:
    """``argv`` for a shell, with the value of ``--api-key`` (either spelling) masked."""
    words: list[str] = []
    masked = False
    for arg in argv:
        if masked:
            words.append(_KEY_SHOWN)
        elif arg.startswith(_KEY_OPTION + "="):
            words.append(f"{_KEY_OPTION}={_KEY_SHOWN}")
        else:
            words.append(shlex.quote(arg))
        masked = arg == _KEY_OPTION and not masked
    return " ".join(words)


def _lines(lines: list[int], most: int = 30) -> str:
    shown = ", ".join(str(n) for n in sorted(lines)[:most])
    more = f" and {len(lines) - most} more" if len(lines) > most else ""
    return f"lines {shown}{more}"


async def settle_or_stop(
    client: AsyncCloseClient,
    unknowns: list[UnknownRow],
    journal: Journal | None,
    summary: ImportSummary,
    note: Callable[..., None],
    settle: float,
    concurrency: int,
    stop: Stop | None,
) -> None:
    """--reconcile, until it is done or ``stop`` (the rows it had not settled stay unknown)."""
    work = asyncio.ensure_future(
        settle_unknown(
            client, unknowns, journal=journal, summary=summary, note=note, settle=settle,
            concurrency=concurrency,
        )
    )  # fmt: skip
    if stop is None:
        await work
        return
    soft = asyncio.ensure_future(stop.soft.wait())
    await asyncio.wait({work, soft}, return_when=asyncio.FIRST_COMPLETED)
    soft.cancel()
    if not work.done():
        summary.stopped, summary.stop_code = f"interrupted by {stop.reason}", EXIT_INTERRUPTED
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work
    else:
        work.result()
