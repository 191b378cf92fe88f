"""Private helpers of :mod:`close_async.testing`: the endpoints besides the create.

Self-contained (aiohttp + msgspec + stdlib) so the fake server never depends on the rest of the
package. ``FakeCloseServer`` authenticates and rate-limits every request the same way, then
hands the ones below to :meth:`Routes.answer` (the create, with its faults, stays in the server):

=======  ============================  ======================================================
method   path (under ``/api/v1``)      answer
=======  ============================  ======================================================
GET      ``/opportunity/``             the list (see ``opportunity_list``)
GET      ``/opportunity/{id}/``        the opportunity; 404 Close's body if unknown or deleted
PUT      ``/opportunity/{id}/``        a PATCH, the full object back (``..._write``); 404
DELETE   ``/opportunity/{id}/``        ``{}``; 404 once gone
POST     ``/lead/``                    the new Lead (see ``lead``)
GET      ``/lead/{id}/``               the lead with its live ``opportunities``; 404 if unknown
=======  ============================  ======================================================

Bodies that are not JSON objects answer 400 as for the create. Each (method, resource) is its
own rate-limit group (``endpoint_group``), as Close limits per endpoint group.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .lead import build_lead, validate_lead
from .opportunity_list import MAX_LIMIT, ListError, list_opportunities
from .opportunity_write import (
    NOT_FOUND,
    update_opportunity,
    validate_update,
)
from .store import Store

__all__ = ["ROUTES", "Routes", "endpoint_group", "known_path"]

OPPORTUNITIES = "/api/v1/opportunity/"
OPPORTUNITY = "/api/v1/opportunity/{id}/"
LEADS = "/api/v1/lead/"
LEAD = "/api/v1/lead/{id}/"

#: (method, path template) of every endpoint :class:`Routes` answers.
ROUTES = (
    ("GET", OPPORTUNITIES),
    ("GET", OPPORTUNITY),
    ("PUT", OPPORTUNITY),
    ("DELETE", OPPORTUNITY),
    ("POST", LEADS),
    ("GET", LEAD),
)
_LEAD_NOT_FOUND = {"error": "Empty query: Lead matching query does not exist."}
_INVALID_JSON = {"error": "Invalid JSON"}
_NOT_AN_OBJECT = {"error": "Invalid JSON: expected an object"}

_decode = msgspec.json.Decoder().decode


_KNOWN_PATH = re.compile(r"/api/v1/(opportunity|lead)/([^/]+/)?")


def known_path(path: str) -> bool:
    """Whether ``path`` is an endpoint of the fake (so a wrong method there is a 405)."""
    return _KNOWN_PATH.fullmatch(path) is not None


def endpoint_group(method: str, path: str) -> str:
    """The rate-limit group of a request: ``"GET opportunity"``, ``"POST lead"``, ..."""
    resource = path.removeprefix("/api/v1/").partition("/")[0]
    return f"{method} {resource}"


def _valid(
    body: bytes, validate: Callable[[dict[str, Any]], dict[str, str]]
) -> dict[str, Any] | tuple[int, Any]:
    """The JSON object of a body if ``validate`` finds no field errors, else the 400 answer."""
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return 400, _INVALID_JSON
    if not isinstance(data, dict):
        return 400, _NOT_AN_OBJECT
    errors = validate(data)
    return (400, {"errors": [], "field-errors": errors}) if errors else data


class Routes:
    """Answers the endpoints of ``ROUTES`` over one server's :class:`Store`."""

    def __init__(self, store: Store, *, max_limit: int = MAX_LIMIT, max_skip: int | None) -> None:
        self.store = store
        self.max_limit = max_limit
        self.max_skip = max_skip

    def answer(
        self, method: str, template: str, object_id: str, query: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        """(status, JSON-able body) of one authenticated, admitted request."""
        if template == OPPORTUNITIES:
            try:
                listing = list_opportunities(
                    self.store.listable(query.get("lead_id")),
                    query,
                    max_limit=self.max_limit,
                    max_skip=self.max_skip,
                )
            except ListError as exc:
                return 400, exc.body
            return 200, listing
        if template == LEADS:
            return self._create_lead(body)
        if template == LEAD:
            lead = self.store.lead_with_opportunities(object_id)
            return (404, _LEAD_NOT_FOUND) if lead is None else (200, lead)
        opportunity = self.store.opportunities.get(object_id)
        if opportunity is None:
            return 404, NOT_FOUND
        if method == "GET":
            return 200, opportunity
        if method == "DELETE":
            self.store.delete_opportunity(object_id)
            return 200, {}
        return self._update(opportunity, body)

    def _update(self, opportunity: dict[str, Any], body: bytes) -> tuple[int, Any]:
        data = _valid(body, validate_update)
        if isinstance(data, tuple):
            return data
        lead = self.store.leads.get(data.get("lead_id") or "")
        lead_name = "Sample Lead" if lead is None else lead["display_name"]
        from_lead = opportunity["lead_id"]
        update_opportunity(
            opportunity,
            data,
            lead_name=lead_name if "lead_id" in data else None,
            now=self.store.timestamp(),
        )
        if opportunity["lead_id"] != from_lead:
            self.store.moved(opportunity["id"], from_lead)
        return 200, opportunity

    def _create_lead(self, body: bytes) -> tuple[int, Any]:
        data = _valid(body, validate_lead)
        if isinstance(data, tuple):
            return data
        store = self.store
        lead = store.add_lead(build_lead(data, store.organization_id, now=store.timestamp()))
        return 200, lead
