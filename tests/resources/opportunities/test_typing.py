"""What a mypy --strict user of the public API sees: the types calls return, and errors that
name the argument at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.typing import run_mypy

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


FIELDS_SNIPPET = """\
from close_async import AsyncCloseClient

async def main() -> None:
    async with AsyncCloseClient() as close:
        await close.opportunities.create(lead_id="lead_1", confidence="high")  # line 5
        await close.opportunities.create(lead_id="lead_1", lead_idd="lead_2")  # line 6
"""


def test_create_keywords_come_from_the_field_list_and_mypy_names_the_one_at_fault(
    tmp_path: Path,
) -> None:
    _, errors = run_mypy(tmp_path, FIELDS_SNIPPET)
    assert len(errors) == 2, errors
    assert "snippet.py:5:" in errors[0], errors
    assert '"confidence"' in errors[0], errors
    assert "snippet.py:6:" in errors[1], errors
    assert '"lead_idd"' in errors[1], errors
