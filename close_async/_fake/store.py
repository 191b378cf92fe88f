"""Private helpers of :mod:`close_async.testing`: what ``FakeCloseServer`` holds right now.

Self-contained (stdlib only) so the fake server never depends on the rest of the package.

The :class:`Store` keeps the live opportunities and leads (``server.opportunities``,
``server.leads``: id -> the object as a GET would answer it), and when each opportunity becomes
visible to the list endpoint: ``list_lag`` seconds after its create on the server's clock
(``loop.time()`` unless a ``clock`` is injected: it must never go back). Reads by id see an
object at once, as on Close; deletes and updates are seen at once by every read.
``date_created`` timestamps are wall-clock UTC with microseconds, strictly increasing in
creation order (a tie is bumped by 1 µs), so ordering by ``date_created`` is ordering by
creation.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .lead import build_lead
from .opportunity import build_opportunity

__all__ = ["RequestRecord", "Store"]

_UTC = _dt.timezone.utc
_MICROSECOND = _dt.timedelta(microseconds=1)


@dataclass(slots=True, eq=False)
class RequestRecord:
    """One request received by ``FakeCloseServer`` (appended on arrival)."""

    method: str
    """The HTTP method, upper case as sent (``"POST"``, ``"GET"``, ...)."""
    path: str
    """The URL path without the query string, e.g. ``"/api/v1/opportunity/"``."""
    api_key: str | None
    """The key of ``Basic base64(key:)`` or the token of ``Bearer TOKEN`` as presented (even
    when rejected with a 401); None when the ``Authorization`` header is absent or unreadable."""
    body: bytes
    """The raw request body (``b""`` when there is none)."""
    at: float
    """``loop.time()`` on arrival, before ``latency`` is slept."""
    headers: Mapping[str, str] = field(repr=False, default_factory=dict)
    """The request headers as received (``Authorization`` included)."""
    status: int | None = None
    """The status answered; None while in flight or when the connection was dropped."""
    fault: str | None = None
    """The fault of ``FAULTS`` this create consumed (queued by ``fail_next`` or drawn from
    the ``FaultPlan``); None when it got none (and for every request that is not a create)."""


class Store:
    """Live opportunities and leads of one server, with list visibility times."""

    def __init__(self, organization_id: str, list_lag: float, clock: Callable[[], float]) -> None:
        self.organization_id = organization_id
        self.list_lag = list_lag
        self.clock = clock
        self.opportunities: dict[str, dict[str, Any]] = {}
        self.leads: dict[str, dict[str, Any]] = {}
        self._listed_from: dict[str, float] = {}  # opportunity id -> clock() when listable
        self._by_lead: dict[str, dict[str, None]] = {}  # lead id -> its opportunities' ids
        self._last = _dt.datetime.min.replace(tzinfo=_UTC)

    def clear(self) -> None:
        self.opportunities.clear()
        self.leads.clear()
        self._listed_from.clear()
        self._by_lead.clear()

    def timestamp(self) -> str:
        """Now in UTC as Close writes it, later than every timestamp handed out before."""
        now = max(_dt.datetime.now(_UTC), self._last + _MICROSECOND)
        self._last = now
        return now.isoformat(timespec="microseconds")

    def create_opportunity(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create from a *valid* payload; return the object as answered (a copy is kept).

        Without ``lead_id`` an "Untitled" lead is created (and kept), as Close does; a known
        ``lead_id`` lends its ``display_name`` to ``lead_name``; an unknown one is accepted.
        """
        now = self.timestamp()
        lead_id = data.get("lead_id")
        if lead_id is None:
            lead = self.add_lead(build_lead({}, self.organization_id, now=now))
            data = {**data, "lead_id": lead["id"]}
        known = self.leads.get(data["lead_id"])
        lead_name = "Sample Lead" if known is None else known["display_name"]
        opportunity = build_opportunity(data, self.organization_id, lead_name=lead_name, now=now)
        self.opportunities[opportunity["id"]] = dict(opportunity)
        self._listed_from[opportunity["id"]] = self.clock() + self.list_lag
        self._by_lead.setdefault(data["lead_id"], {})[opportunity["id"]] = None
        return opportunity

    def add_lead(self, lead: dict[str, Any]) -> dict[str, Any]:
        self.leads[lead["id"]] = lead
        return lead

    def delete_opportunity(self, opportunity_id: str) -> bool:
        """Forget an opportunity; False when there was none with that id."""
        opportunity = self.opportunities.pop(opportunity_id, None)
        if opportunity is None:
            return False
        del self._listed_from[opportunity_id]
        del self._by_lead[opportunity["lead_id"]][opportunity_id]
        return True

    def moved(self, opportunity_id: str, from_lead: str) -> None:
        """Re-file an opportunity whose ``lead_id`` an update changed."""
        del self._by_lead[from_lead][opportunity_id]
        lead_id = self.opportunities[opportunity_id]["lead_id"]
        self._by_lead.setdefault(lead_id, {})[opportunity_id] = None

    def listable(self, lead_id: str | None = None) -> list[dict[str, Any]]:
        """The opportunities the list endpoint sees now (of ``lead_id``), in creation order.

        Creation order is the order they become listable (one lag, a monotonic clock), so the
        hidden ones are the newest: a copy of the values, then a walk back from the end only
        over those. A lead's come from an index, sorted by ``date_created`` (creation order,
        even after an update moved one): a reconcile's read of one lead among 10,000
        opportunities then costs its few rows, not a pass over all (~2-3 ms).
        """
        if lead_id is None:
            rows = list(self.opportunities.values())
        else:
            ids = self._by_lead.get(lead_id, {})
            rows = sorted((self.opportunities[i] for i in ids), key=_date_created)
        now, listed_from = self.clock(), self._listed_from
        end = len(rows)
        while end and listed_from[rows[end - 1]["id"]] > now:
            end -= 1
        return rows if end == len(rows) else rows[:end]

    def lead_with_opportunities(self, lead_id: str) -> dict[str, Any] | None:
        """A lead as ``GET /lead/{id}/`` answers it (its live opportunities inside)."""
        lead = self.leads.get(lead_id)
        if lead is None:
            return None
        mine = [self.opportunities[i] for i in self._by_lead.get(lead_id, {})]
        return {**lead, "opportunities": sorted(mine, key=_date_created)}


def _date_created(opportunity: dict[str, Any]) -> str:
    return str(opportunity["date_created"])
