"""``Transport``: the one seam between a resource and the wire (as httpx's ``_transports/base``).

A resource holds a ``Transport``, never the client. ``send()`` sends one API request through
the whole pipeline (slots, limiter, pacing, retries) and returns the raw body of the 2xx
answer; every error it raises is a ``CloseError``, already redacted. The rate-limit group is
named inside from the method and path (``_constants.endpoint_group``). ``redact()`` scrubs the
credentials from an error a resource raises itself after a response (a body that does not
decode, say).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar, Union

from .._exceptions import CloseError

E = TypeVar("E", bound=CloseError)

#: A query string value: one scalar, or several (``?k=a&k=b``).
ParamValue = Union[str, int, float, Sequence[Union[str, int, float]]]  # noqa: UP007 (3.10 alias)
Params = Mapping[str, ParamValue]


class Transport(Protocol):
    """What a resource may ask of the transport it is given."""

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
        """Send one request (``path`` relative to the API root); the body of the 2xx answer.

        ``on_send()`` runs before each attempt leaves (after every wait; an awaitable it returns
        is awaited); ``on_sent(True)`` once a body byte of the attempt is written,
        ``on_sent(False)`` when the attempt ended having created nothing."""
        ...

    def redact(self, error: E) -> E:
        """``error`` with the credentials scrubbed from its message, headers and cause."""
        ...
