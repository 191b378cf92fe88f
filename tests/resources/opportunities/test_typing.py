"""What a mypy --strict user of the public API sees: the types calls return, and errors that
name the argument at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

SNIPPET = """\
import msgspec
from close_async import AsyncCloseClient, Opportunity

class Tiered(Opportunity, kw_only=True):
    tier: str = msgspec.field(default="", name="custom.cf_tier")

async def main(period: str) -> None:
    async with AsyncCloseClient() as close:
        reveal_type(await close.opportunities.create(lead_id="lead_1", value_period="monthly"))
        reveal_type(await close.opportunities.create(lead_id="lead_1", response_type=Tiered))
        reveal_type(await close.opportunities.create_many([{"lead_id": "lead_1"}]))
        async for _, result in close.opportunities.stream_create([], response_type=Tiered):
            reveal_type(result)
        await close.opportunities.create(lead_id="lead_1", value_period=period)  # line 14
"""


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


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    return run_mypy(tmp_path_factory.mktemp("typing"), SNIPPET)


def test_create_is_typed_by_its_response_type_and_opportunity_without_one(
    checked: tuple[list[str], list[str]],
) -> None:
    revealed, _ = checked
    assert revealed == [
        '"close_async._resources.opportunities.responses.Opportunity"',
        '"snippet.Tiered"',
        '"list[close_async._resources.opportunities.responses.Opportunity'
        ' | close_async._exceptions.CloseError]"',
        '"snippet.Tiered | close_async._exceptions.CloseError"',
    ]


def test_a_plain_str_as_value_period_is_an_error_naming_the_parameter(
    checked: tuple[list[str], list[str]],
) -> None:
    _, errors = checked
    assert len(errors) == 1, errors
    assert "snippet.py:14:" in errors[0], errors
    assert 'Argument "value_period"' in errors[0], errors
    assert "Literal['one_time', 'monthly', 'annual']" in errors[0], errors
