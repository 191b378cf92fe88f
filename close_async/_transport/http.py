"""``HTTPTransport``: the aiohttp session and the one request pipeline.

One attempt goes: connection slot -> user limiter -> header pacer -> HTTP -> classify. The retry
policy wraps attempts; waits in the limiter, the pacer or between retries are outside the
attempt's ``timeout``. ``AsyncCloseClient`` builds one from its options; resources hold it as a
``Transport`` (its ``send()`` and ``redact()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import TypeVar
from urllib.parse import urlencode

import aiohttp

from .. import _constants as const
from .._exceptions import CloseError
from .base import Params
from .body import KeepAlive
from .limiter import Limiter
from .outcome import IDEMPOTENT_METHODS, exchange, response_error
from .pacer import Pacer, Window
from .ratelimit import RateLimitInfo, parse_rate_limit, retry_after
from .redact import redact_error
from .retry import RetryPolicy
from .slots import Slots

T = TypeVar("T")
_CLOSED = "the AsyncCloseClient was closed while this request "
E = TypeVar("E", bound=CloseError)


class HTTPTransport:
    """The request pipeline over one aiohttp session: slots, limiter, pacer, retries, errors.

    Owns the session unless one is given (``session=``: then never closed here). Options are
    checked by ``AsyncCloseClient``, which builds this; ``retry_policy`` and ``limiter`` may be
    replaced between requests.
    """

    def __init__(
        self,
        *,
        authorization: str,
        base_url: str,
        timeout: float,
        retry_policy: RetryPolicy,
        limiter: Limiter | None,
        pacer: Pacer | None,
        max_connections: int,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self._authorization = authorization
        self.base_url = base_url
        self.timeout = timeout
        self.retry_policy = retry_policy
        self.limiter = limiter
        self.pacer = pacer
        self._max_connections = max_connections
        self._slots = Slots(max_connections)
        self._session = session
        self._owns_session = session is None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._keepalive = KeepAlive()
        self._closed = False
        self._wakers: set[asyncio.Future[None]] = set()  # see _unless_closed
        self._headers = {
            "Authorization": self._authorization,
            "User-Agent": const.USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._client_timeout = aiohttp.ClientTimeout(total=self.timeout)

    async def aclose(self) -> None:
        """Close the session if the client created it. Safe to call twice.

        Requests still waiting (for a connection slot, the limiter or the pacer) then fail with
        ``CloseError``; ``create_many`` still returns one result per item."""
        self._closed = True
        self._slots.fail(lambda: CloseError(_CLOSED + "waited for a connection: not sent"))
        if self.pacer is not None:
            self.pacer.fail(lambda: CloseError(_CLOSED + "waited its turn: not sent"))
        for waker in self._wakers:
            if not waker.done():
                waker.set_result(None)
        session, self._session = self._session, None
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()  # closes the session it guards
        elif session is not None and self._owns_session and not session.closed:
            await session.close()

    @property
    def closed(self) -> bool:
        return self._closed

    async def _unless_closed(self, waiting: Awaitable[T], what: str) -> T:
        """``await waiting``, unless ``aclose()`` comes first: it is then cancelled and this
        raises ``CloseError`` (nothing was sent). For waits only (a slot, the pacer, a retry's
        sleep): a request on the wire is left to finish or fail on its own."""
        task = asyncio.ensure_future(waiting)
        waker = asyncio.get_running_loop().create_future()
        self._wakers.add(waker)
        try:
            await asyncio.wait((task, waker), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # we were cancelled: so is the wait
            task.cancel()
            raise
        finally:
            self._wakers.discard(waker)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise CloseError(_CLOSED + what)
        return task.result()

    def _check_open(self) -> None:
        if self._closed:
            raise CloseError("this AsyncCloseClient is closed; create a new one")

    def _get_session(self) -> aiohttp.ClientSession:
        self._check_open()
        session = self._session
        if session is None or (self._owns_session and session.closed):
            return self._new_session()
        if session.closed:
            raise CloseError("the aiohttp session given to AsyncCloseClient is closed")
        if self._owns_session and self._session_loop is not asyncio.get_running_loop():
            raise CloseError(
                "this AsyncCloseClient is in use by another event loop (a client belongs to "
                "the loop it first ran in): create one per loop, or aclose() it first"
            )
        return session

    def _new_session(self) -> aiohttp.ClientSession:
        # Created here, inside the running loop, not in __init__ (which may run outside one).
        # aiohttp itself drops pooled connections idle past keepalive_timeout; KeepAlive (in
        # RequestBody) also honours the server's own `Keep-Alive: timeout`.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive.default
        )
        session = self._session = aiohttp.ClientSession(connector=connector)
        self._session_loop = asyncio.get_running_loop()
        self._closer = _close_with_loop(session)
        # Run it to its first `yield`: the loop now knows this generator and closes it (and the
        # session with it) when asyncio.run() ends, so the next asyncio.run() gets a new session
        # and nothing is left for the garbage collector to warn about.
        with contextlib.suppress(StopIteration):
            self._closer.asend(None).send(None)
        return session

    async def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        params: Params | None = None,
        on_send: Callable[[], Awaitable[None] | None] | None = None,
        on_sent: Callable[[bool], None] | None = None,
    ) -> bytes:
        """Send one API request with retries, pacing and limits; the body of the 2xx response.

        ``on_send()`` runs before each attempt goes on the wire (after every wait); if it
        returns an awaitable, the attempt waits for it (the journal's fsync, with ``--fsync``);
        ``on_sent(True)`` when a body byte of it is handed to the socket, ``on_sent(False)`` when
        the attempt ended having created nothing (never written, or answered 429): the client's
        one definition of "the request left", which the import's journal uses. The rate-limit
        group is named from the method and path (``endpoint_group``). ``params`` goes to the
        query string."""
        url = self.base_url + path.lstrip("/")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        group = const.endpoint_group(method, path)
        started = time.monotonic()
        try:
            # Most requests succeed at once: only a failure pays for building the retry machinery
            # (tenacity's per-call set-up is most of a request's client-side cost otherwise).
            return await self._attempt(method, url, body, group, on_send, on_sent)
        except CloseError as exc:
            first: CloseError = redact_error(exc, self._authorization)
        replayed = False
        last = first

        async def attempt() -> bytes:
            nonlocal replayed, last
            if not replayed:  # tenacity's attempt 1 is the failure we already had
                replayed = True
                raise first
            try:
                return await self._attempt(method, url, body, group, on_send, on_sent)
            except CloseError as exc:  # redacted before the retry log or the caller sees it
                last = redact_error(exc, self._authorization)
                raise

        async def sleep(seconds: float) -> None:
            why = f"waited to be retried (its last attempt: {last.message})"
            try:
                await self._unless_closed(asyncio.sleep(seconds), why)
            except CloseError as exc:  # that attempt may have gone through (retry_unknown)
                exc.may_have_succeeded = last.may_have_succeeded
                raise

        policy = self.retry_policy
        if method in IDEMPOTENT_METHODS:  # repeating it is harmless, whatever happened
            policy = dataclasses.replace(policy, retry_unknown_outcome=True)
        result: bytes = await policy.retrying(started, sleep)(attempt)
        return result

    async def _attempt(
        self,
        method: str,
        url: str,
        body: bytes,
        group: str,
        on_send: Callable[[], Awaitable[None] | None] | None,
        on_sent: Callable[[bool], None] | None = None,
    ) -> bytes:
        self._get_session()  # a closed client fails before waiting for anything
        slots = self._slots
        if not slots.try_take():
            await slots.take()  # aclose() fails the queued ones (Slots.fail)
        try:
            window = self.pacer.window(group) if self.pacer is not None else None
            ticket = 0
            # A limiter's token is taken first (tokens go only to requests that can leave at
            # once), except while the cold start caps the requests in flight: tokens taken
            # then piled up behind the cap and left together, a burst past the limiter's own.
            turn_first = window is not None and window.ramping
            if turn_first:
                assert window is not None
                ticket = await self._turn(window)
            if self.limiter is not None:
                try:
                    await self.limiter.acquire()
                except BaseException:
                    if turn_first:
                        assert window is not None
                        window.give_back(ticket)
                    raise
            if window is not None and not turn_first:
                ticket = await self._turn(window)
            if self._closed:  # granted (or its token taken) in the iteration aclose() ran in
                if window is not None:
                    window.give_back(ticket)
                raise CloseError(_CLOSED + "waited its turn: not sent")
            status: int | None = None
            headers: Mapping[str, str] = {}
            payload = b""
            info: RateLimitInfo | None = None
            wait: float | None = None
            try:
                if on_send is not None:
                    pending = on_send()  # its own errors surface as they are: nothing was sent
                    if pending is not None:
                        await pending
                session = self._get_session()  # the client may have closed during the waits
                wrote: list[bool] = []  # RequestBody's "a body byte was written", per attempt
                on_write = None if on_sent is None else functools.partial(_wrote, wrote, on_sent)
                status, headers, payload, failure = await exchange(
                    session,
                    method,
                    url,
                    body,
                    headers=self._headers,
                    timeout=self._client_timeout,
                    keepalive=self._keepalive,
                    max_refusals=self._max_connections,
                    on_write=on_write,
                )
                if on_sent is not None and (status == 429 or (status is None and not wrote)):
                    on_sent(False)
                if failure is not None and self._closed and status is None:
                    failure = CloseError(
                        f"the AsyncCloseClient was closed while this request was in flight "
                        f"({failure.message})",
                        may_have_succeeded=failure.may_have_succeeded,
                    )
            finally:
                if status is not None:
                    info = parse_rate_limit(headers)
                    wait = retry_after(headers, payload) if status == 429 else None
                if window is not None:
                    window.release(ticket, info, status=status, pause=wait)
        finally:
            slots.give()
        if status == 429 or (info is not None and info.remaining == 0):
            await self._share_pause(wait if wait is not None else info.reset if info else None)
        if failure is not None:
            raise failure
        assert status is not None  # exchange() either answered or returned its failure
        if 200 <= status < 300:
            return payload
        raise response_error(status, headers, payload, method=method, retry_after=wait, url=url)

    async def _turn(self, window: Window) -> int:
        """The window's ticket: at once if it has room, else queued (Pacer.fail fails it)."""
        granted = window.try_acquire()  # no coroutine when the window has room
        if granted is not None:
            return granted
        if self._closed:  # closed while it waited for the limiter
            raise CloseError(_CLOSED + "waited its turn: not sent")
        return await window.acquire()

    def redact(self, error: E) -> E:
        """``error`` with the credentials scrubbed from its message, headers and cause: for errors
        a resource raises itself after a response (a body that does not decode, say)."""
        return redact_error(error, self._authorization)

    async def _share_pause(self, seconds: float | None) -> None:
        """Tell a limiter that can pause (a shared one, say) that the window is spent."""
        pause = getattr(self.limiter, "pause", None)
        if pause is not None and seconds is not None and seconds > 0:
            await pause(seconds)


def _wrote(wrote: list[bool], on_sent: Callable[[bool], None]) -> None:
    wrote.append(True)
    on_sent(True)


async def _close_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Suspended until the client's aclose() or the end of the event loop (asyncio.run calls
    ``loop.shutdown_asyncgens()``), then closes the session on its own loop."""
    try:
        yield
    finally:
        if not session.closed:
            await session.close()
