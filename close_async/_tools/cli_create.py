"""``close-async create``: one opportunity from the command line, printed as JSON.

``--lead-id`` is required unless ``--new-lead`` says to let Close create an "Untitled" lead: a
forgotten lead id must not make one silently.
"""

from __future__ import annotations

import sys
from typing import Any

from .._constants import CUSTOM_PREFIX, VALUE_PERIODS
from .cli_common import click, connection_options, make_client


def _custom(values: tuple[str, ...]) -> dict[str, Any]:
    custom: dict[str, Any] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: expected cf_<id>=value", param_hint="--custom")
        custom[key.strip().removeprefix(CUSTOM_PREFIX)] = value
    return custom


@click.command()
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
@connection_options(group=False)
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
    client = make_client()

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
