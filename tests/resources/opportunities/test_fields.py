"""The create field list is written once as a TypedDict (the keywords of ``create``) and once as
the ``CreateOpportunity`` Struct: these tests keep the two equal, and the value periods derived."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, get_args, get_type_hints

import msgspec
import pytest

from close_async import CreateOpportunity, InvalidInputError
from close_async._constants import VALUE_PERIODS, ValuePeriod
from close_async._resources.opportunities.requests import CreateOpportunityFields


def _members(tp: Any) -> frozenset[Any]:
    """The members of a union (``X | Y`` or ``Union[X, Y]``), or ``{tp}``; ``UnsetType`` dropped
    (in the Struct it means "not given", which for keywords is leaving the keyword out)."""
    args = get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    return frozenset(a for a in args if a is not msgspec.UnsetType)


def test_the_keyword_fields_are_the_struct_fields_in_the_same_order() -> None:
    assert list(get_type_hints(CreateOpportunityFields)) == list(
        CreateOpportunity.__struct_fields__
    )


def test_every_keyword_field_has_the_struct_fields_type_less_unset() -> None:
    keywords = get_type_hints(CreateOpportunityFields)
    struct = get_type_hints(CreateOpportunity)
    for name in CreateOpportunity.__struct_fields__:
        assert _members(keywords[name]) == _members(struct[name]), name


def test_every_keyword_field_is_optional() -> None:
    assert CreateOpportunityFields.__required_keys__ == frozenset()
    assert CreateOpportunityFields.__optional_keys__ == frozenset(
        CreateOpportunity.__struct_fields__
    )


def test_value_periods_are_derived_from_the_literal() -> None:
    assert typing.get_origin(ValuePeriod) is Literal
    assert VALUE_PERIODS == get_args(ValuePeriod) == ("one_time", "monthly", "annual")


@pytest.mark.parametrize("period", VALUE_PERIODS)
def test_every_value_period_is_accepted(period: str) -> None:
    assert CreateOpportunity(value_period=period).value_period == period  # type: ignore[arg-type]


def test_a_value_period_outside_the_literal_is_refused_naming_them_all() -> None:
    with pytest.raises(InvalidInputError, match="one_time, monthly, annual") as caught:
        CreateOpportunity(value_period="weekly")  # type: ignore[arg-type]
    assert caught.value.field == "value_period"
