"""Every row of a Close list endpoint, page after page, in a stable order, past the ``_skip`` cap.

The spec:

* Pages are read with ``_skip``/``_limit`` in ``_order_by=date_created`` order, until a page
  says ``has_more: false``. Offset paging over a set that changes while it is read duplicates
  and misses rows unless the order is stable: closeio-api #96 found ~8,000 duplicates in 45,000
  leads paged without one. Ordered by creation, rows created during the walk land at the end,
  after every row already read, and are read too when the walk gets there.
* Close refuses a ``_skip`` past a per-resource maximum (its pagination page: "a maximum
  ``_skip`` limit which varies per resource", a 400 past it; the figure is not published). So
  before the next page would reach ``MAX_SKIP``, the walk starts again at ``_skip=0`` with
  ``date_created__gte`` = the last ``date_created`` it yielded, and skips the rows it has
  already yielded: those created before that instant, and those at that very instant whose ids
  it remembers (only those: memory stays one page at most).
* Filter values are checked and written before anything is sent (``encode_filters``): an
  unknown filter, a naive ``datetime`` or a value of the wrong type raises
  ``InvalidInputError`` naming the filter.
* A page is a ``Page`` (``data``, ``has_more``, ``total_results``); a resource may subclass it
  for its own aggregates. Rows stay raw (``msgspec.Raw``) until the resource's own decoder
  reads them, which is what keeps opportunities' flat ``custom.*`` keys.

Not guaranteed: a row deleted while the walk is before it shifts the offsets, and the row after
it can then be missed until the next range restart; re-list (or use ``date_updated``) when that
matters. Close's list also lags its writes by tens of seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import msgspec

from .._exceptions import MSGSPEC_DECODE_ERRORS, CloseError, DecodeError, InvalidInputError

if TYPE_CHECKING:
    from .._transport.base import Transport

T = TypeVar("T")

#: Close does not publish its ``_skip`` cap. A restart costs no extra request (the next page is
#: read from ``_skip=0`` in a narrower range instead) and re-reads only the rows created at the
#: boundary instant, so a low cap is nearly free while a cap above Close's would break the walk.
MAX_SKIP = 1_000
DEFAULT_PAGE_SIZE = 100
#: Close's documented ``_limit`` default and the most its list endpoints return at once.
MAX_PAGE_SIZE = 100
ORDER_BY = "date_created"

FilterKind = Literal["str", "list", "date", "bool"]


class Page(msgspec.Struct, kw_only=True):
    """One page of a list response: the raw rows and whether more follow.

    ``total_results`` counts every match (regardless of paging) where Close sends it."""

    data: list[msgspec.Raw] = []
    has_more: bool = False
    total_results: int | None = None


PageT = TypeVar("PageT", bound=Page)


def encode_filters(filters: Mapping[str, Any], kinds: Mapping[str, FilterKind]) -> dict[str, str]:
    """The query parameters for ``filters``; ``InvalidInputError`` naming the first bad one.

    ``str``: a non-empty string. ``list`` (the ``__in`` filters): a string or a list/tuple of
    non-empty strings, sent comma-separated. ``date``: a ``date``, a tz-aware ``datetime``
    (ISO 8601 with its offset) or a string. ``bool``: ``True``/``False``. ``None`` is refused
    rather than dropped: a filter that silently vanished would widen the listing to everything.
    """
    query: dict[str, str] = {}
    for name, value in filters.items():
        kind = kinds.get(name)
        if kind is None:
            known = ", ".join(sorted(kinds))
            raise InvalidInputError(name, value, f"is not a list filter (known: {known})")
        query[name] = _encode_filter(name, value, kind)
    return query


def _encode_filter(name: str, value: Any, kind: FilterKind) -> str:
    if kind == "bool":
        if not isinstance(value, bool):
            raise InvalidInputError(name, value, "must be True or False")
        return "true" if value else "false"
    if kind == "date":
        if isinstance(value, dt.datetime):
            if value.utcoffset() is None:  # Close would read it as UTC: silently shifted
                raise InvalidInputError(name, value, "must be timezone-aware")
            return value.isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, str) and value:
            return value
        raise InvalidInputError(name, value, "must be a date, an aware datetime or a string")
    if kind == "list" and isinstance(value, (list, tuple)):
        if not value or not all(isinstance(v, str) and v for v in value):
            raise InvalidInputError(name, value, "must be a non-empty list of non-empty strings")
        return ",".join(value)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(name, value, "must be a non-empty string")
    return value


def check_page_size(page_size: object) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidInputError("page_size", page_size, "must be an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInputError("page_size", page_size, f"must be between 1 and {MAX_PAGE_SIZE}")
    return page_size


class Pager(AsyncIterator[T], Generic[T, PageT]):
    """An async iterator over every row matching ``query`` (see the module's spec).

    ``page`` is the last page read (None before the first): its ``total_results`` and any
    aggregates the resource's page type declares. Nothing is sent before the first
    ``__anext__``."""

    def __init__(
        self,
        transport: Transport,
        path: str,
        query: Mapping[str, str],
        decode: Callable[[bytes], T],
        *,
        page_type: type[PageT],
        page_size: int = DEFAULT_PAGE_SIZE,
        max_skip: int | None = None,
    ) -> None:
        self.page: PageT | None = None
        self._transport = transport
        self._path = path
        self._query = dict(query)
        self._decode = decode
        self._page_decoder = _page_decoder(page_type)
        self._page_size = page_size
        # At least two pages: the first page of a range must be followed by a second.
        self._max_skip = max(MAX_SKIP if max_skip is None else max_skip, 2 * page_size)
        self._rows = self._walk()

    def __aiter__(self) -> Pager[T, PageT]:
        return self

    async def __anext__(self) -> T:
        return await self._rows.__anext__()

    async def aclose(self) -> None:
        """Stop the walk (as leaving an ``async for`` early does, once collected)."""
        await self._rows.aclose()

    async def _walk(self) -> AsyncGenerator[T, None]:
        query = self._query
        size = self._page_size
        skip = 0
        since: dt.datetime | None = None  # the range's start, after a restart
        seen_at_since: frozenset[str] = frozenset()
        last: dt.datetime | None = None  # the newest date_created yielded so far
        at_last: set[str] = set()  # ids yielded whose date_created is `last`
        while True:
            page = await self._read({**query, "_skip": str(skip), "_limit": str(size)})
            for raw in page.data:
                row = self._decode(bytes(raw))
                row_id: str = getattr(row, "id", "")
                created: dt.datetime | None = getattr(row, "date_created", None)
                if (since is not None and created is not None) and (
                    created < since or (created == since and row_id in seen_at_since)
                ):
                    continue  # yielded before the restart
                if created is not None:
                    if last is None or created > last:
                        last, at_last = created, set()
                    if created == last:
                        at_last.add(row_id)
                yield row
            if not page.has_more:
                return
            if not page.data:
                raise CloseError(f"{self._path}: a page with no rows said has_more: true")
            if skip + 2 * size <= self._max_skip:
                skip += size
                continue
            # The next page would pass the cap: restart the range where the walk is.
            if last is None or last == since:
                raise CloseError(
                    f"{self._path}: more than {self._max_skip} rows created at {last} cannot "
                    "be paged past Close's _skip cap; narrow the filters"
                )
            since, seen_at_since = last, frozenset(at_last)
            query.pop("date_created__gt", None)  # superseded: `since` is later
            query["date_created__gte"] = since.isoformat()
            skip = 0

    async def _read(self, query: Mapping[str, str]) -> PageT:
        raw = await self._transport.send("GET", self._path, params={**query, "_order_by": ORDER_BY})
        try:
            page: PageT = self._page_decoder.decode(raw)
        except MSGSPEC_DECODE_ERRORS as exc:
            error = DecodeError(f"response is not a page of {self._path}: {exc}", body=raw)
            raise self._transport.redact(error) from exc
        self.page = page
        return page


_PAGE_DECODERS: dict[type[Page], msgspec.json.Decoder[Any]] = {Page: msgspec.json.Decoder(Page)}


def _page_decoder(page_type: type[Page]) -> msgspec.json.Decoder[Any]:
    """The decoder for a page type: built once per type (at import for every resource's own
    page type, which registers it with ``page_decoder_for``)."""
    decoder = _PAGE_DECODERS.get(page_type)
    if decoder is None:
        decoder = _PAGE_DECODERS[page_type] = msgspec.json.Decoder(page_type)
    return decoder


def page_decoder_for(page_type: type[PageT]) -> type[PageT]:
    """Build ``page_type``'s decoder now (a class decorator for a resource's page type)."""
    _page_decoder(page_type)
    return page_type
