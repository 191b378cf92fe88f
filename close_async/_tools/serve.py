"""``close-async fake-server``: FakeCloseServer from the shell, until stopped.

Its base URL is the first line of stdout (flushed), so a script can read it; what it serves is
described on stderr, and so are its counts when it stops. SIGINT and SIGTERM stop it cleanly.
Every option of the command is the FakeCloseServer keyword of the same name: a new server option
is one more ``click.option`` here.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..testing import FakeCloseServer


@click.command(name="fake-server")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    help="The port on 127.0.0.1 (default: a free one).",
)
@click.option(
    "--rate-limit",
    type=click.IntRange(1),
    help="Requests per window per API key (default: no limit, no rate-limit headers).",
)
@click.option(
    "--window",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="The rate limit's fixed window, in seconds.",
)
@click.option(
    "--dialect",
    default="modern",
    show_default=True,
    help="How rate limits are announced: modern, semicolon, legacy_nested, legacy_flat, "
    "html or none (close_async.testing.DIALECTS).",
)
@click.option(
    "--latency",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Seconds each request is held before it is answered.",
)
@click.option(
    "--fail",
    "faults",
    multiple=True,
    metavar="FAULT",
    help="Answer the next create with FAULT (500, 504, 429, drop, 500_after_create, hang, ... "
    "see close_async.testing.FAULTS); repeatable, played in order.",
)
@click.option(
    "--list-lag",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="Seconds before a new opportunity shows in the list (reads by id see it at once).",
)
@click.option(
    "--max-skip",
    type=click.IntRange(0),
    help="The largest _skip the list accepts; beyond, 400 as Close (default: no cap).",
)
@click.option(
    "--late-seconds",
    type=click.FloatRange(0),
    default=60.0,
    show_default=True,
    help="How long a late_create fault holds a create before it makes it.",
)
@click.option(
    "--fault-rate",
    "rates",
    multiple=True,
    metavar="NAME=RATE",
    help="A random create fault and its rate (0-1): drop_after_create, drop_before_create, "
    "error_after_create, error_before_create, create_after_timeout (close_async.testing."
    "FaultPlan); repeatable.",
)
@click.option(
    "--fault-seed",
    type=int,
    default=0,
    show_default=True,
    help="The seed of the --fault-rate draws.",
)
def fake_server(
    faults: tuple[str, ...], rates: tuple[str, ...], fault_seed: int, **options: Any
) -> None:
    """Serve FakeCloseServer on 127.0.0.1 until stopped (Ctrl-C or SIGTERM; exit 0).

    The first line of stdout is its base URL; any API key works.

    \b
    Example:
      close-async fake-server --rate-limit 100 > url.txt &
      close-async import deals.csv --base-url "$(head -1 url.txt)" --api-key test
    """
    import signal

    # Until the loop's own handlers are in place (aiohttp takes ~0.2 s to import), SIGTERM is
    # turned into KeyboardInterrupt and both end the command quietly with exit 0.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        _run(faults, _with_plan(rates, fault_seed, options))


def _with_plan(rates: tuple[str, ...], seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``faults=FaultPlan(...)`` built from ``--fault-rate NAME=RATE``."""
    if not rates:
        return options
    from ..testing import FaultPlan

    plan: dict[str, float] = {}
    for item in rates:
        name, _, rate = item.partition("=")
        try:
            plan[name] = float(rate)
        except ValueError:
            message = f"{item!r} is not NAME=RATE"
            raise click.BadParameter(message, param_hint="--fault-rate") from None
    try:
        return {**options, "faults": FaultPlan(**plan, seed=seed)}
    except (TypeError, ValueError) as exc:  # an unknown name, a rate out of range
        raise click.BadParameter(str(exc), param_hint="--fault-rate") from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(faults: tuple[str, ...], options: dict[str, Any]) -> None:
    import asyncio

    from ..testing import FakeCloseServer  # aiohttp: imported only to serve

    try:
        server = FakeCloseServer(**options)
        for fault in faults:
            server.fail_next(fault)
    except ValueError as exc:  # a dialect or fault FakeCloseServer does not know
        raise click.UsageError(str(exc)) from None
    limit = options["rate_limit"]
    pace = f"{limit} requests per {options['window']:g} s per API key" if limit else "no limit"
    scripted = f"; next creates fail with {', '.join(faults)}" if faults else ""
    plan = options.get("faults")
    if plan is not None:
        rates = ", ".join(f"{name} {rate:g}" for name, rate in plan.rates() if rate)
        scripted += f"; random create faults: {rates} (seed {plan.seed})"
    if options["list_lag"]:
        scripted += f"; the list lags {options['list_lag']:g} s"
    asyncio.run(_serve(server, f"FakeCloseServer: {pace}{scripted}; any API key works"))


async def _serve(server: FakeCloseServer, description: str) -> None:
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C raises instead
            loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        message = f"cannot listen on it: {exc.strerror}"
        raise click.BadParameter(message, param_hint="--port") from None
    try:
        click.echo(server.base_url)  # click.echo flushes: a pipe reader sees it at once
        click.echo(f"{description}; Ctrl-C stops it", err=True)
        await stop.wait()
    finally:
        await server.close()
    click.echo(
        f"stopped: {len(server.requests)} requests, {len(server.created)} opportunities "
        f"created, {server.count_429} answered 429",
        err=True,
    )
