"""``client.opportunities`` on opportunities already in Close: ``list``, ``get``, ``update``,
``delete``.

``StoredOpportunities`` is the base of ``resource.Opportunities``, which adds the creates. Each
call checks its input before anything is sent (``operations``), sends one request through the
transport (which retries it: these are all idempotent), and decodes the answer with the shared
decoder; a ``DecodeError`` is redacted like the transport's own errors. ``delete`` takes a 404
to a retry, after an earlier attempt may have deleted the opportunity, for a success.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..._exceptions import DecodeError, NotFoundError
from ..pagination import DEFAULT_PAGE_SIZE, Pager, check_page_size, encode_filters
from .codec import decode_opportunity
from .operations import OPPORTUNITY_FILTERS, OpportunityPage, check_id, encode_update
from .requests import CreateOpportunityFields
from .responses import Opportunity

if TYPE_CHECKING:
    from typing_extensions import (
        TypeVar,  # a default (PEP 696) before Python 3.13
        Unpack,  # typing's own from Python 3.11 (PEP 692)
    )

    from ..._transport.base import Transport

    # One signature per method, not overloads: a mypy error then names the parameter at fault
    # (overloads say only "No overload variant matches"), and the default keeps a call without
    # response_type typed as Opportunity rather than Never.
    OpportunityT = TypeVar("OpportunityT", bound=Opportunity, default=Opportunity)
else:
    from typing import TypeVar

    OpportunityT = TypeVar("OpportunityT", bound=Opportunity)

PATH = "opportunity/"


class StoredOpportunities:
    """``list``, ``get``, ``update`` and ``delete`` of ``client.opportunities``."""

    _transport: Transport  # only its send() and redact(): a resource never holds more

    def list(
        self, *, page_size: int = DEFAULT_PAGE_SIZE, **filters: Any
    ) -> Pager[Opportunity, OpportunityPage]:
        """Every opportunity matching ``filters``, page after page, oldest first.

        ``filters`` are Close's list filters (``lead_id``, ``status_id``, ``user_id``,
        ``status_type``, ``date_created__gte``/``__lte``, ``status_id__in`` ...; dates as a
        ``date``, a tz-aware ``datetime`` or a string). An unknown filter or a bad value raises
        ``InvalidInputError`` here, before anything is sent. Pages of ``page_size`` rows are
        read as the iteration needs them, in ``date_created`` order, past Close's ``_skip``
        cap. The iterator's ``.page`` is the last page read, with Close's aggregates
        (``total_results``, ``total_value_monthly`` ...).
        """
        query = encode_filters(filters, OPPORTUNITY_FILTERS)
        size = check_page_size(page_size)
        return Pager(
            self._transport, PATH, query, _decode_row, page_type=OpportunityPage, page_size=size
        )

    async def get(
        self,
        id: str,
        /,
        *,
        response_type: type[OpportunityT] = Opportunity,  # type: ignore[assignment]
    ) -> OpportunityT:
        """The opportunity ``id``. ``NotFoundError`` if there is none."""
        path = f"{PATH}{check_id(id)}/"
        return self._decode(await self._transport.send("GET", path), response_type)

    async def update(
        self,
        id: str,
        /,
        *,
        response_type: type[OpportunityT] = Opportunity,  # type: ignore[assignment]
        **fields: Unpack[CreateOpportunityFields],
    ) -> OpportunityT:
        """Change the given fields of opportunity ``id``; returns it as Close stored it.

        The fields are ``create``'s, with its checks; only those given are sent (Close's PUT
        acts as a PATCH), ``None`` sends null, and ``custom={"cf_x": None}`` unsets a custom
        field. Nothing to change raises ``InvalidInputError``. A PUT carries absolute values,
        so the client retries it after a timeout or a 5xx: sending it twice sets the same
        values twice.
        """
        path = f"{PATH}{check_id(id)}/"
        body = encode_update(fields)
        return self._decode(await self._transport.send("PUT", path, body), response_type)

    async def delete(self, id: str, /) -> None:
        """Delete opportunity ``id``. ``NotFoundError`` if it never existed.

        DELETE is retried after a timeout or a 5xx; a 404 to a retry, after an earlier attempt
        of this call reached the server without a definite answer, means that attempt deleted
        it: that is a success, not an error.
        """
        path = f"{PATH}{check_id(id)}/"
        # Writes of this call's request to a socket, not known to have deleted nothing. One
        # attempt may write twice: aiohttp itself re-sends an idempotent request once when its
        # connection drops (ClientSession._request, "retry_persistent_connection").
        earlier = current = 0  # in the attempts before this one; in this one

        def on_send() -> None:
            nonlocal earlier, current
            earlier, current = earlier + current, 0

        def on_sent(sent: bool) -> None:  # True: written once more; False: it deleted nothing
            nonlocal current
            current = current + 1 if sent else max(current - 1, 0)

        try:
            await self._transport.send("DELETE", path, on_send=on_send, on_sent=on_sent)
        except NotFoundError:
            # The 404 answered the last write: any write before it may have deleted it.
            if earlier + current > 1:
                return
            raise

    def _decode(self, raw: bytes, response_type: type[OpportunityT]) -> OpportunityT:
        try:
            return decode_opportunity(raw, response_type)
        except DecodeError as exc:
            raise self._transport.redact(exc) from None


def _decode_row(raw: bytes) -> Opportunity:
    return decode_opportunity(raw)
