"""Many requests at once: a bounded pool of workers, and the batch rules they share.

Memory stays bounded by ``concurrency``, not by the input: items are pulled from the input only
when a worker is free, and finished results wait in a queue of ``concurrency`` places.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from typing import Any, TypeVar

from .._exceptions import (
    APIStatusError,
    AuthenticationError,
    CloseError,
    InvalidInputError,
    PermissionDeniedError,
    RedirectError,
)

T = TypeVar("T")


async def _aiter(items: Iterable[T] | AsyncIterable[T]) -> AsyncGenerator[T, None]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


async def run_pool(
    items: Iterable[T] | AsyncIterable[T],
    work: Callable[[int, T], Awaitable[Any]],
    *,
    concurrency: int,
) -> AsyncIterator[tuple[int, Any]]:
    """Yield ``(index, work(index, item))`` as each finishes, ``concurrency`` at a time.

    ``work`` must not raise for a failed item: it returns the failure. Closing the iterator early
    cancels the work still running.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidInputError("concurrency", concurrency, "must be an integer >= 1")
    source = _aiter(items)
    pull = asyncio.Lock()  # an async generator must not be advanced by two tasks at once
    done: asyncio.Queue[tuple[int, Any] | _Failed | None] = asyncio.Queue(maxsize=concurrency)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        try:
            while True:
                async with pull:
                    try:
                        item = await source.__anext__()
                    except StopAsyncIteration:
                        break
                    index, next_index = next_index, next_index + 1
                await done.put((index, await work(index, item)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the input's own iterator failed: stop everything
            await done.put(_Failed(exc))
            return
        await done.put(None)

    workers = [asyncio.ensure_future(worker()) for _ in range(concurrency)]
    running = len(workers)
    try:
        while running:
            entry = await done.get()
            if entry is None:
                running -= 1
            elif isinstance(entry, _Failed):
                raise entry.exc
            else:
                yield entry
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await source.aclose()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class Batch:
    """What the items of one bulk call share: whether the organization itself was refused.

    A 401 (the key is refused), a 402 (the plan does not allow it) or a redirect (the base URL
    points elsewhere: never followed, so every item would get it) holds for every item: once one
    comes back, each item not yet sent fails with a copy of it (``may_have_succeeded`` False)
    instead of sending thousands of requests that would all be refused the same way: at once if
    it had not started, at its turn if it was waiting for a limiter. Items already in flight
    keep their own answers.
    """

    def __init__(self) -> None:
        self.refused: APIStatusError | None = None

    def note(self, error: CloseError) -> None:
        if self.refused is None and _org_wide(error):
            assert isinstance(error, APIStatusError)
            self.refused = error

    def refusal(self) -> APIStatusError:
        """A fresh error like the refusal, for an item that was not sent because of it."""
        first = self.refused
        assert first is not None
        return type(first)(
            f"not sent: an earlier request of this batch was refused ({first.message})",
            status_code=first.status_code,
            headers=first.headers,
            body=first.raw_body,
            may_have_succeeded=False,
        )


def _org_wide(error: CloseError) -> bool:
    return isinstance(error, (AuthenticationError, RedirectError)) or (
        isinstance(error, PermissionDeniedError) and error.status_code == 402
    )


class Gate:
    """The ``on_send`` hook of one bulk item: called by the client just before the request
    leaves (after every wait), it refuses to send once the batch was refused, and records
    whether the request may have left (for an honest ``may_have_succeeded``)."""

    __slots__ = ("batch", "hook", "index", "on_sent", "refused", "sent")

    def __init__(
        self,
        batch: Batch,
        hook: Callable[[int], Awaitable[None] | None] | None,
        index: int,
        on_sent: Callable[[int, bool], None] | None = None,
    ) -> None:
        self.batch = batch
        self.hook = hook
        self.index = index
        self.on_sent = on_sent
        self.refused: APIStatusError | None = None
        self.sent = False

    def __call__(self) -> Awaitable[None] | None:
        if self.batch.refused is not None:
            self.refused = self.batch.refusal()
            raise self.refused
        pending = self.hook(self.index) if self.hook is not None else None
        self.sent = True
        return pending

    def attempt_sent(self, sent: bool) -> None:
        """The client's word on the current attempt (see ``AsyncCloseClient.request``)."""
        if self.on_sent is not None:
            self.on_sent(self.index, sent)


def unexpected(exc: Exception, *, sent: bool) -> CloseError:
    """A ``CloseError`` for an exception outside the error tree, so that a bulk call keeps every
    other result: ``may_have_succeeded`` is True when the request may have left."""
    when = "after the request may have left" if sent else "before sending"
    error = CloseError(
        f"unexpected error {when}: {type(exc).__name__}: {exc}", may_have_succeeded=sent
    )
    error.__cause__ = exc
    return error
