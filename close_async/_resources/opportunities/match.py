"""What "the opportunity we sent" looks like in a list: the matching rule of ``reconcile``.

A ``Probe`` holds one create as it went on the wire (``encode_create``: exactly the fields sent,
``None`` as null, custom fields as flat ``custom.cf_*`` keys) and says, for an ``Opportunity``
read back from Close, whether it is that create. Every field sent must be equal, after the
rewrites Close is known or likely to make, so that a real match is never missed for a cosmetic
difference (a miss would be called ``absent`` and sent again: a duplicate):

- strings are compared trimmed, with ``\\r\\n`` read as ``\\n``; a null or empty ``note`` equals an
  empty one (Close answers ``""``);
- a null ``confidence`` equals 0, a null ``value_period`` equals ``one_time`` (Close's defaults);
  a null ``lead_id`` (Close makes a lead), ``status_id``, ``user_id`` or ``created_by`` is not
  compared (Close fills in its own);
- ``date_won`` is a date in responses: a date-time sent matches its date in its own zone or UTC;
  a ``date_created`` sent matches within a second (or the same day, for a date);
- an empty custom value (null, ``""``, ``[]``) equals a missing key (responses omit empty custom
  fields); lists compare as multisets (Close may reorder choices), a scalar equals a list of just
  it, numbers and numeric strings compare as numbers (``"5"`` and ``5.0``);
- attachments compare by their file names (Close rewrites URLs); ``custom_fields`` (deprecated)
  is not compared.

The window: candidates created at or after ``sent_at`` less ``skew`` (our clock and Close's
differ); when ``date_created`` itself was sent, Close stores that instead, so the window is
around it. ``filters()`` gives the list filters that ask Close for no more than that.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec

from ..._constants import CUSTOM_PREFIX
from .codec import encode_create
from .requests import CreateOpportunity
from .responses import Opportunity

_decoder = msgspec.json.Decoder(dict[str, Any])
_key_encoder = msgspec.json.Encoder(order="sorted")
_UTC = dt.timezone.utc
_FILLED_BY_CLOSE = frozenset({"lead_id", "status_id", "user_id", "created_by"})
_DEFAULTS: dict[str, Any] = {"note": "", "confidence": 0, "value_period": "one_time"}
_NOT_COMPARED = frozenset({"custom_fields"})
_CREATED_TOLERANCE = dt.timedelta(seconds=1)


class Probe:
    """One create as sent, and the test of whether an opportunity read back is it."""

    __slots__ = ("created", "key", "lead_id", "user_id", "wire")

    def __init__(self, item: CreateOpportunity) -> None:
        self.wire: dict[str, Any] = _decoder.decode(encode_create(item))
        #: Equal for creates that no server could tell apart: those share their candidates.
        self.key = _key_encoder.encode(self.wire)
        self.lead_id: str | None = self.wire.get("lead_id")
        self.user_id: str | None = self.wire.get("user_id")
        created = self.wire.get("date_created")
        self.created: dt.datetime | dt.date | None = _moment(created) if created else None

    def since(self, sent_at: dt.datetime, skew: float) -> dt.datetime:
        """The earliest ``date_created`` a candidate may have."""
        if isinstance(self.created, dt.datetime):
            return self.created - _CREATED_TOLERANCE
        if isinstance(self.created, dt.date):
            return dt.datetime.combine(self.created, dt.time(), _UTC) - dt.timedelta(days=1)
        return sent_at - dt.timedelta(seconds=skew)

    def filters(self, sent_at: dt.datetime, skew: float) -> dict[str, Any]:
        """Close's list filters for the candidates (the matching itself is done here)."""
        filters: dict[str, Any] = {"date_created__gte": self.since(sent_at, skew)}
        if isinstance(self.created, dt.datetime):
            filters["date_created__lte"] = self.created + _CREATED_TOLERANCE
        elif isinstance(self.created, dt.date):
            day = dt.datetime.combine(self.created, dt.time(), _UTC)
            filters["date_created__lte"] = day + dt.timedelta(days=2)
        if self.lead_id is not None:
            filters["lead_id"] = self.lead_id
        elif self.user_id is not None:
            filters["user_id"] = self.user_id  # no lead: the key's own creates, by their user
        return filters

    def matches(self, opp: Opportunity, since: dt.datetime) -> bool:
        """Whether ``opp`` is this create: in the window, and every sent field equal."""
        if opp.date_created is not None and opp.date_created < since:
            return False
        return all(_same(name, sent, opp) for name, sent in self.wire.items())

    def differences(self, opp: Opportunity) -> Iterator[str]:
        """The sent fields ``opp`` differs in (to explain a miss)."""
        return (name for name, sent in self.wire.items() if not _same(name, sent, opp))


def _same(name: str, sent: Any, opp: Opportunity) -> bool:
    if name.startswith(CUSTOM_PREFIX):
        got = opp.custom.get(name[len(CUSTOM_PREFIX) :])
        if _empty(sent) or _empty(got):
            return _empty(sent) and _empty(got)
        return bool(_custom(sent) == _custom(got))
    if name in _NOT_COMPARED:
        return True
    got = getattr(opp, name, None)
    if sent is None:
        if name in _FILLED_BY_CLOSE:
            return True
        return got is None or (name in _DEFAULTS and got == _DEFAULTS[name])
    if name == "date_won":
        return got is not None and got in _dates(sent)
    if name == "date_created":
        return got is not None and _near(_moment(sent), got)
    if name == "attachments":
        files = Counter(_text(a.get("filename")) for a in sent if isinstance(a, dict))
        return files == Counter(_text(getattr(a, "filename", None)) for a in got or ())
    if name in _DEFAULTS and got is None:  # a response that leaves out a field at its default
        return bool(sent == _DEFAULTS[name])
    if isinstance(sent, str):
        return isinstance(got, str) and _text(sent) == _text(got)
    return bool(sent == got) and type(sent) is type(got)


def _text(value: Any) -> Any:
    return value.replace("\r\n", "\n").strip() if isinstance(value, str) else value


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _custom(value: Any) -> Any:
    """A custom value in a form equal for what Close may have rewritten (see the docstring)."""
    if isinstance(value, list):
        items = [_custom(v) for v in value]
        if len(items) == 1:
            return items[0]
        return ("list", tuple(sorted(items, key=repr)))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), repr(_custom(v))) for k, v in value.items())))
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = _text(value)
        try:
            return float(text)
        except ValueError:
            return text
    return value


def _moment(value: Any) -> dt.datetime | dt.date:
    """A ``date_created``/``date_won`` as sent (ISO text) as a date or an aware date-time."""
    text = str(value)
    if len(text) == 10:
        return dt.date.fromisoformat(text)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_UTC)


def _dates(sent: Any) -> set[dt.date]:
    moment = _moment(sent)
    if isinstance(moment, dt.datetime):
        return {moment.date(), moment.astimezone(_UTC).date()}
    return {moment}


def _near(sent: dt.datetime | dt.date, got: dt.datetime) -> bool:
    if isinstance(sent, dt.datetime):
        return abs(got - sent) <= _CREATED_TOLERANCE
    return sent in (got.date(), got.astimezone(_UTC).date())
