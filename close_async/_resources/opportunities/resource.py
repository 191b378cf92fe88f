"""``client.opportunities``: the opportunity resource.

``Opportunities`` creates (``create``, and ``stream_create``/``create_many`` for many items at
once, one failed item never stopping the others) and tells what became of a create whose outcome
is unknown (``reconcile``); ``list``, ``get``, ``update`` and ``delete`` come from its base,
``stored.StoredOpportunities``. A create whose outcome is unknown is not retried by default
(docs/errors.md); its error carries ``sent_at``, which ``reconcile`` takes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Container, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from ..._constants import DEFAULT_CONCURRENCY
from ..._exceptions import CloseError, DecodeError, InvalidInputError
from ..bulk import Batch, Gate, run_pool, unexpected
from .codec import decode_opportunity, encode_create
from .reconcile import (
    DEFAULT_SETTLE,
    Excluded,
    Lister,
    RecentIds,
    Reconciled,
    SentClock,
    reconcile,
)
from .requests import (
    CreateOpportunity,
    CreateOpportunityFields,
    Item,
    to_create,
)
from .responses import Opportunity
from .stored import PATH, OpportunityT, StoredOpportunities

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11 (PEP 692)

    from ..._transport.base import Transport

_UNSET: Any = msgspec.UNSET
logger = logging.getLogger("close_async")


class Opportunities(StoredOpportunities):
    """Create opportunities, and read, change and delete them. Reached as
    ``client.opportunities``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport  # only its send() and redact(): a resource never holds more
        self.created_ids = RecentIds()
        """The ids of the last 10,000 opportunities this client created: ``reconcile`` never
        takes one of them for the outcome of another create."""

    async def create(
        self,
        item: CreateOpportunity | None = None,
        /,
        *,
        response_type: type[OpportunityT] = Opportunity,  # type: ignore[assignment]
        **fields: Unpack[CreateOpportunityFields],
    ) -> OpportunityT:
        """Create one opportunity; returns it as Close stored it.

        Pass either a ``CreateOpportunity`` or its fields as keywords. ``value`` is in cents;
        ``custom`` maps custom field ids (``cf_...``) to values. Fields not given are not sent;
        ``None`` is sent as null. Invalid input raises ``InvalidInputError`` before anything
        is sent. ``response_type`` may be a subclass of ``Opportunity`` declaring typed
        custom fields.
        """
        if fields.get("custom", {}) is None:  # accepted before the fields were one list
            del fields["custom"]
        if item is None:
            item = CreateOpportunity(**fields)
        elif not isinstance(item, CreateOpportunity):
            raise InvalidInputError("item", item, "must be a CreateOpportunity")
        elif fields:
            raise InvalidInputError("item", item, "pass a CreateOpportunity or keywords, not both")
        return await self._send(item, response_type=response_type)

    def stream_create(
        self,
        items: Iterable[Item] | AsyncIterable[Item],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        response_type: type[OpportunityT] = Opportunity,  # type: ignore[assignment]
        on_send: Callable[[int], Awaitable[None] | None] | None = None,
        on_sent: Callable[[int, bool], None] | None = None,
        on_result: Callable[[int, OpportunityT | CloseError], None] | None = None,
    ) -> AsyncIterator[tuple[int, OpportunityT | CloseError]]:
        """Create one opportunity per item, yielding ``(index, result)`` as each finishes.

        For inputs too big to hold: items are read only as workers free up, so memory stays
        bounded by ``concurrency``. A failed item yields its ``CloseError`` instead of
        raising (check ``may_have_succeeded``). Items are ``CreateOpportunity`` or dicts in
        Close's wire format (flat ``custom.cf_*`` keys allowed). ``on_send(index)`` is called
        each time an item's request really leaves (after any wait for the rate limit), which is
        what a journal needs to tell "never sent" from "outcome unknown"; then
        ``on_sent(index, True)`` once a body byte of that attempt is written to the socket, or
        ``on_sent(index, False)`` if the attempt ended having created nothing (never written,
        or a 429). ``on_result(index, result)`` is called by the worker the moment an item's
        result is known, before it waits its turn to be yielded: a consumer cancelled with
        results still queued can still account for them.

        Nothing about one item stops the others (an exception outside the error tree becomes
        that item's ``CloseError``), except a 401 or 402, which holds for the whole organization:
        the items not yet sent then fail with a copy of it, without being sent.
        """

        batch = Batch()

        async def work(index: int, item: Item) -> OpportunityT | CloseError:
            # Never raises: whatever happens to one item is its result, and the others go on.
            try:
                create = to_create(item)
            except CloseError as exc:
                return exc
            except Exception as exc:
                return self._unexpected(exc, sent=False)
            if batch.refused is not None:
                return batch.refusal()
            gate = Gate(batch, on_send, index, on_sent)
            clock = SentClock(gate.attempt_sent if on_sent is not None else None)
            try:
                return await self._send(
                    create, response_type=response_type, on_send=gate, on_sent=clock
                )
            except CloseError as exc:
                if gate.refused is not None:
                    return gate.refused
                batch.note(exc)
                return exc
            except Exception as exc:
                return clock.stamp(self._unexpected(exc, sent=gate.sent))

        async def work_and_tell(index: int, item: Item) -> OpportunityT | CloseError:
            result = await work(index, item)
            assert on_result is not None
            on_result(index, result)
            return result

        job = work if on_result is None else work_and_tell
        return run_pool(items, job, concurrency=concurrency)

    async def create_many(
        self,
        items: Iterable[Item] | AsyncIterable[Item],
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        response_type: type[OpportunityT] = Opportunity,  # type: ignore[assignment]
        on_result: Callable[[int, OpportunityT | CloseError], None] | None = None,
    ) -> list[OpportunityT | CloseError]:
        """Create one opportunity per item; results in input order, a failed item holding its
        error instead of raising, so one bad row loses nothing.

        At most ``concurrency`` creates run at once. ``on_result(index, result)`` is called as
        each finishes (to drive a progress display). For inputs too big to keep every result,
        use ``stream_create``.
        """
        results: dict[int, OpportunityT | CloseError] = {}
        stream = self.stream_create(items, concurrency=concurrency, response_type=response_type)
        async for index, result in stream:
            results[index] = result
            if on_result is not None:
                on_result(index, result)
        return [results[i] for i in range(len(results))]

    async def reconcile(
        self,
        item: Item,
        *,
        sent_at: dt.datetime | None,
        settle: float = DEFAULT_SETTLE,
        wait: bool = True,
        exclude: Container[str] = (),
    ) -> Reconciled:
        """What became of a create whose outcome is unknown (an error with
        ``may_have_succeeded``): ``created`` (with ``.opportunity``), ``absent`` (safe to send
        again), ``ambiguous`` or, with ``wait=False`` before ``settle`` has passed, ``pending``.

        ``item`` is what was sent, ``sent_at`` the error's ``.sent_at`` (None, or a naive
        datetime, raises ``InvalidInputError``). ``absent`` only comes
        once ``settle`` seconds have passed since ``sent_at`` (Close's list lags its writes) and
        two reads found nothing; ``wait=True`` polls until a verdict, ``wait=False`` looks once.
        Opportunities this client created, and the ids in ``exclude``, never match. See the
        reconcile page of the docs for what is guaranteed."""
        create = to_create(item)
        return await reconcile(
            self._lister(),
            create,
            sent_at=sent_at,
            settle=settle,
            wait=wait,
            exclude=Excluded(exclude, self.created_ids),
        )

    def _lister(self) -> Lister:
        """``list``, as reconcile reads candidates (a seam for tests)."""
        return self.list

    async def _send(
        self,
        item: CreateOpportunity,
        *,
        response_type: type[OpportunityT],
        on_send: Callable[[], Awaitable[None] | None] | None = None,
        on_sent: Callable[[bool], None] | None = None,
    ) -> OpportunityT:
        """Encode, send with retries, decode: the create pipeline shared by create and bulk.

        An error that may have created something carries ``sent_at`` (see ``SentClock``)."""
        body = encode_create(item)
        self._warn_untitled(item)
        clock = on_sent if isinstance(on_sent, SentClock) else SentClock(on_sent)
        try:
            raw = await self._transport.send("POST", PATH, body, on_send=on_send, on_sent=clock)
        except CloseError as exc:
            clock.stamp(exc)
            raise
        try:
            opportunity = decode_opportunity(raw, response_type)
        except DecodeError as exc:
            exc.may_have_succeeded = True  # Close answered 2xx: it did create something
            self._transport.redact(exc)
            clock.stamp(exc)
            raise
        self.created_ids.add(opportunity.id)
        return opportunity

    def _unexpected(self, exc: Exception, *, sent: bool) -> CloseError:
        return self._transport.redact(unexpected(exc, sent=sent))

    # Whether this client has said that a create without lead_id makes an "Untitled" lead.
    _untitled_warned = False

    def _warn_untitled(self, item: CreateOpportunity) -> None:
        if self._untitled_warned or item.lead_id not in (_UNSET, None):
            return
        self._untitled_warned = True
        logger.warning(
            "an opportunity created without lead_id makes Close create a new lead for it, shown "
            'as "Untitled": create the lead first (close.leads.create(name=...)) and pass its '
            "id as lead_id (said once per client)"
        )
