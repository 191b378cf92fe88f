"""RequestBody: when a request counts as sent, and which connections it refuses.

aiohttp 3.10/3.11 write a request's headers before its body; 3.12+ hold them until the body is
written (``StreamWriter._headers_written``). A body-less request (a DELETE) is whole once its
headers are out, so it cannot be refused afterwards: the server may already have acted on it.
These use a stand-in writer for each behaviour, so both are checked on every aiohttp version.
"""

from __future__ import annotations

from typing import Any

import pytest

from close_async._transport.body import KeepAlive, NotSent, RequestBody


class _Transport:
    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return None


class _Protocol:
    transport = _Transport()


class _Writer:
    """Records what is written; ``headers_written`` None leaves the attribute out (3.10/3.11)."""

    def __init__(self, headers_written: bool | None) -> None:
        self.protocol = _Protocol()
        self.chunks: list[bytes] = []
        if headers_written is not None:
            self._headers_written = headers_written

    async def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


def _retired(writer: _Writer) -> KeepAlive:
    """A keep-alive record in which the writer's pooled connection is idle past its deadline:
    a server keeping idle connections 0 s retires them at once (``retire_after(0)`` is 0)."""
    keepalive = KeepAlive()
    keepalive.went_idle(writer.protocol, {"Keep-Alive": "timeout=0"})
    return keepalive


async def test_a_body_less_request_whose_headers_left_first_counts_as_sent() -> None:
    writer = _Writer(headers_written=None)  # aiohttp 3.10/3.11: the headers are on the wire
    wrote: list[bool] = []
    body = RequestBody(b"", _retired(writer), lambda: wrote.append(True))
    await body.write_with_length(writer, 0)  # type: ignore[arg-type]
    assert body.sent
    assert wrote == [True]
    assert not body.stale


async def test_a_body_less_request_whose_headers_wait_for_it_is_still_refused() -> None:
    writer = _Writer(headers_written=False)  # aiohttp 3.12+: nothing has left yet
    body = RequestBody(b"", _retired(writer), None)
    with pytest.raises(NotSent):
        await body.write_with_length(writer, 0)  # type: ignore[arg-type]
    assert not body.sent
    assert body.stale


@pytest.mark.parametrize("headers_written", [None, False])
async def test_a_request_with_a_body_is_refused_on_a_retired_connection(
    headers_written: bool | None,
) -> None:
    # The server cannot act on headers whose body never comes: refusing is safe on any version.
    writer = _Writer(headers_written)
    body = RequestBody(b'{"note": "x"}', _retired(writer), None)
    with pytest.raises(NotSent):
        await body.write_with_length(writer, None)  # type: ignore[arg-type]
    assert not body.sent
    assert writer.chunks == []
