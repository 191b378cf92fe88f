"""The ``close-async`` command: create one opportunity, import a file, run the demo, or serve
a fake Close API.

Needs the ``cli`` extra (click): ``pip install 'close-async[cli]'``.

``--base-url`` and ``--api-key`` are accepted before or after the command's name: each command
that talks to Close declares them too, and its own value wins over the group's (kept in the root
context's ``obj``). The SDK proper (aiohttp, msgspec) is imported inside the commands, so that
``--version``, ``--help`` and shell completion import click alone.
"""

from __future__ import annotations

import sys

from .._constants import __version__
from .cli_common import EPILOG, click, connection_options
from .cli_create import create
from .cli_import import import_
from .serve import fake_server


@click.group(epilog=EPILOG)
@click.version_option(__version__, "--version", "-V", prog_name="close-async")
@connection_options(group=True)
def main() -> None:
    """Create Close opportunities from the command line, fast and without duplicates.

    \b
    Shell completion (bash; zsh and fish alike, see docs/cli.md):
      eval "$(_CLOSE_ASYNC_COMPLETE=bash_source close-async)"
    """


main.add_command(create)
main.add_command(import_)


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
