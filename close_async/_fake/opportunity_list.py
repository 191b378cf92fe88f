"""Private helpers of :mod:`close_async.testing`: ``GET /opportunity/``, the list endpoint.

Self-contained (stdlib only) so the fake server never depends on the rest of the package.

Query parameters, as Close takes them:

* filters, combined with AND: ``lead_id``, ``status_id``, ``status_type``, ``status_label``,
  ``user_id``, ``contact_id``, ``value_period``, and ``id__in`` / ``<field>__in`` (comma
  separated) for each of them; ``date_created``, ``date_updated`` and ``date_won`` with
  ``__gte``, ``__gt``, ``__lte``, ``__lt``: ISO 8601 dates or datetimes, a naive one read as
  UTC. An unencoded ``+`` in an offset arrives as a space and is refused (400 naming the
  parameter), as a real server's query parser would turn it. Other parameters are ignored.
* ``_order_by``: ``date_created``, ``date_updated``, ``value``, ``confidence``, each optionally
  prefixed by ``-`` (descending: the ascending order reversed, ties too; ``None`` values come
  first ascending). Default: ``-date_created`` (newest
  first), which is *not* stable while rows are added; pass ``_order_by=date_created`` to page.
* ``_skip`` (default 0) and ``_limit`` (default and maximum ``max_limit``, 100 as Close's
  opportunity list; ``0`` answers only the aggregates). ``_skip`` above ``max_skip`` (None: no
  cap) answers 400, as Close does past its per-resource cap.
* ``_fields``: comma-separated field names; each object then carries only those.

The answer: ``{"has_more", "total_results", "data", "count_by_value_period",
"total_value_one_time", "total_value_monthly", "total_value_annual", "total_value_annualized",
"expected_value_one_time", "expected_value_monthly", "expected_value_annual",
"expected_value_annualized"}``; the aggregates cover every match, not one page (values in cents,
``None`` counted as 0; expected values are value times confidence / 100, summed then floored).
Only opportunities created at least ``list_lag`` seconds ago are listed (see the store).
"""

from __future__ import annotations

import datetime as _dt
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MAX_LIMIT", "ListError", "list_opportunities"]

#: Close's largest ``_limit`` for the opportunity list.
MAX_LIMIT = 100

_EQUAL = (
    "id",
    "lead_id",
    "status_id",
    "status_type",
    "status_label",
    "user_id",
    "contact_id",
    "value_period",
)
_DATES = ("date_created", "date_updated", "date_won")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}
_ORDERS = ("date_created", "date_updated", "value", "confidence")
_PERIODS = ("one_time", "monthly", "annual")
_UTC = _dt.timezone.utc


class ListError(Exception):
    """A bad list request: ``body`` is the 400 answer's JSON object."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.body = body


def _field_error(name: str, message: str) -> ListError:
    return ListError({"errors": [], "field-errors": {name: message}})


def _parse_when(name: str, text: str) -> _dt.datetime:
    """A filter's date/datetime as an aware UTC datetime (naive: UTC)."""
    try:
        if len(text) == 10:
            when = _dt.datetime.combine(_dt.date.fromisoformat(text), _dt.time())
        else:
            when = _dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text)
    except ValueError:
        raise _field_error(name, "Not a valid datetime.") from None
    return when.replace(tzinfo=_UTC) if when.tzinfo is None else when.astimezone(_UTC)


def _stamp(when: _dt.datetime) -> str:
    """As the fake writes timestamps (6 digits always), so that strings compare as instants."""
    return when.isoformat(timespec="microseconds")


def _int(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        number = int(text)
    except ValueError:
        raise _field_error(name, "Not a valid integer.") from None
    if number < 0:
        raise _field_error(name, "Must be at least 0.")
    return number


Predicate = Callable[[dict[str, Any]], bool]


def _equal(field: str, value: str) -> Predicate:
    return lambda opportunity: opportunity.get(field) == value


def _among(field: str, values: frozenset[str]) -> Predicate:
    return lambda opportunity: opportunity.get(field) in values


def _compare(field: str, compare: Callable[[Any, Any], bool], bound: str) -> Predicate:
    def test(opportunity: dict[str, Any]) -> bool:
        value = opportunity.get(field)
        return value is not None and compare(value, bound)

    return test


def _predicates(query: Mapping[str, str]) -> list[Predicate]:
    tests: list[Predicate] = []  # date bounds last: equality is more selective, and cheaper
    for name, text in sorted(query.items(), key=lambda item: item[0].split("__")[0] in _DATES):
        field, _, op = name.partition("__")
        if field in _EQUAL and op == "":
            tests.append(_equal(field, text))
        elif field in _EQUAL and op == "in":
            tests.append(_among(field, frozenset(text.split(","))))
        elif field in _DATES and op in _OPERATORS:
            when = _parse_when(name, text)
            # The fake writes every timestamp as UTC with microseconds, so strings compare
            # as instants (and date_won is a date): no parse per object.
            bound = when.date().isoformat() if field == "date_won" else _stamp(when)
            tests.append(_compare(field, _OPERATORS[op], bound))
    return tests


def _order(query: Mapping[str, str], data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = query.get("_order_by", "-date_created")
    field = order.removeprefix("-")
    if field not in _ORDERS:
        raise _field_error("_order_by", f'"{order}" is not a valid choice.')
    descending = order.startswith("-")
    if field == "date_created":  # the store's order already: strictly increasing timestamps
        return data[::-1] if descending else data
    # Stable sorts: equal keys keep creation order (reversed first when descending).
    rows = data[::-1] if descending else data
    return sorted(
        rows, key=lambda o: (o.get(field) is not None, o.get(field) or 0), reverse=descending
    )


def _aggregates(matches: list[dict[str, Any]]) -> dict[str, Any]:
    count = dict.fromkeys(_PERIODS, 0)
    total = dict.fromkeys(_PERIODS, 0)
    weighted = dict.fromkeys(_PERIODS, 0)  # value * confidence, divided once at the end
    for opportunity in matches:
        period = opportunity["value_period"]
        value = opportunity["value"] or 0
        count[period] += 1
        total[period] += value
        weighted[period] += value * opportunity["confidence"]
    expected = {period: weighted[period] // 100 for period in _PERIODS}
    result: dict[str, Any] = {"count_by_value_period": count}
    for period in _PERIODS:
        result[f"total_value_{period}"] = total[period]
        result[f"expected_value_{period}"] = expected[period]
    result["total_value_annualized"] = total["one_time"] + 12 * total["monthly"] + total["annual"]
    result["expected_value_annualized"] = (
        weighted["one_time"] + 12 * weighted["monthly"] + weighted["annual"]
    ) // 100
    return result


def _created_since(rows: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    """``rows`` (creation order, so ``date_created`` order) from a lower ``date_created`` bound
    on: a bisection, so a reconcile's "created since" read does not test every row."""
    for name, find in (("date_created__gte", bisect_left), ("date_created__gt", bisect_right)):
        text = query.get(name)
        if text is not None:
            bound = _stamp(_parse_when(name, text))
            rows = rows[find(rows, bound, key=_date_created) :]
    return rows


def _date_created(opportunity: dict[str, Any]) -> str:
    return str(opportunity["date_created"])


def list_opportunities(
    listable: list[dict[str, Any]],
    query: Mapping[str, str],
    *,
    max_limit: int = MAX_LIMIT,
    max_skip: int | None = None,
) -> dict[str, Any]:
    """The list answer for ``query`` over ``listable`` (creation order); raises ListError."""
    skip = _int(query, "_skip", 0)
    limit = _int(query, "_limit", max_limit)
    if limit > max_limit:
        raise ListError({"error": f"The maximum _limit for this resource is {max_limit}."})
    if max_skip is not None and skip > max_skip:
        message = (
            f"The maximum _skip for this resource is {max_skip}. Narrow the query, e.g. by a "
            "date_created range, to see more."
        )
        raise ListError({"error": message})
    matches = _created_since(listable, query)
    for test in _predicates(query):  # one pass per filter: the first leaves few rows
        matches = [o for o in matches if test(o)]
    ordered = _order(query, matches)
    page = ordered[skip : skip + limit]
    fields = query.get("_fields")
    if fields:
        wanted = fields.split(",")
        page = [{name: o[name] for name in wanted if name in o} for o in page]
    answer: dict[str, Any] = {
        "has_more": skip + len(page) < len(matches),
        "total_results": len(matches),
        "data": page,
    }
    answer.update(_aggregates(matches))
    return answer
