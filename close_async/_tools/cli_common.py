"""What every ``close-async`` command shares: the connection options and the client they build.

``--base-url`` and ``--api-key`` are accepted before or after the command's name: each command
that talks to Close declares them too, and its own value wins over the group's (kept in the root
context's ``obj``). Nothing here imports the SDK proper (aiohttp, msgspec): ``--version``,
``--help`` and shell completion import click alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

try:
    import click as click  # re-exported: the commands import click from here, after this guard
except ImportError:  # pragma: no cover - exercised only without the extra installed
    raise SystemExit(
        "close-async: the command line needs click: pip install 'close-async[cli]'"
    ) from None

from .._constants import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL

if TYPE_CHECKING:
    from .._client import AsyncCloseClient

F = TypeVar("F", bound=Callable[..., Any])
EPILOG = (
    f"Credentials come from ${API_KEY_ENV} (an API key) or --api-key. Exit codes: 0 everything "
    "was created, 1 some rows failed or have an unknown outcome, 2 usage errors (nothing sent), "
    "3 stopped early (API key refused, server unreachable), 4 the journal could not be written "
    "(disk full), 130 interrupted (Ctrl-C, SIGTERM)."
)


def keep(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """Keep an option's value in the root context's ``obj``, unless it was not given."""
    if value is not None and param.name:
        ctx.find_root().ensure_object(dict)[param.name] = value


def connection_options(*, group: bool) -> Callable[[F], F]:
    """``--base-url`` and ``--api-key``: on the group with their environment variables and
    default, on a command without (so that they only override what the group found)."""

    def decorate(f: F) -> F:
        key = click.option(
            "--api-key",
            metavar="KEY",
            envvar=API_KEY_ENV if group else None,
            expose_value=False,
            callback=keep,
            help=f"Your Close API key (default ${API_KEY_ENV}, which is safer: other users of "
            "the machine can see a command line).",
        )
        url = click.option(
            "--base-url",
            metavar="URL",
            envvar=BASE_URL_ENV if group else None,
            default=DEFAULT_BASE_URL if group else None,
            expose_value=False,
            callback=keep,
            help=f"The API root (default ${BASE_URL_ENV}, or {DEFAULT_BASE_URL}).",
        )
        return url(key(f))

    return decorate


def option(name: str) -> Any:
    """An option kept by :func:`keep` (None if not given)."""
    return click.get_current_context().find_root().ensure_object(dict).get(name)


def make_client() -> AsyncCloseClient:
    """The client the connection options describe; a usage error without an API key."""
    from .._client import AsyncCloseClient
    from .._exceptions import CloseError

    api_key = option("api_key")
    if not api_key:
        raise click.UsageError(f"set ${API_KEY_ENV} to your Close API key (or pass --api-key)")
    try:
        return AsyncCloseClient(api_key, base_url=option("base_url"))
    except CloseError as exc:
        raise click.UsageError(str(exc)) from None
