"""``AsyncCloseClient``: credentials and options compose a transport, and resources attach to it.

The request pipeline is ``_transport.http.HTTPTransport``; each resource (``opportunities``)
is given that transport, never the client (a resource sees only ``send()`` and ``redact()``).
"""

from __future__ import annotations

import base64
import math
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from . import _constants as const
from ._exceptions import MSGSPEC_DECODE_ERRORS, CloseError, DecodeError, InvalidInputError
from ._resources.checks import check_json_value
from ._resources.leads import Leads
from ._resources.opportunities.resource import Opportunities
from ._transport.base import Params, ParamValue
from ._transport.http import HTTPTransport
from ._transport.limiter import Limiter
from ._transport.pacer import Pacer
from ._transport.retry import RetryPolicy

#: The methods ``request()`` sends; of these, GET, HEAD, PUT and DELETE are retried after an
#: ambiguous failure (``_transport.outcome.IDEMPOTENT_METHODS``), POST and PATCH are not.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder()


class AsyncCloseClient:
    """An asyncio client for the Close API, safe to share across any number of tasks.

    ```python
    async with AsyncCloseClient() as close:          # API key from $CLOSE_API_KEY
        opp = await close.opportunities.create(lead_id="lead_...", value=500000)
    ```

    Args:
        api_key: a Close API key (sent as HTTP Basic username with an empty password). Falls back
            to ``$CLOSE_API_KEY``.
        oauth_token: an OAuth access token instead of an API key (sent as ``Bearer``).
        base_url: the API root; falls back to ``$CLOSE_BASE_URL``, then Close's production API.
        timeout: seconds for one attempt, from sending to reading the whole response.
        max_retries: retries after the first attempt (see the retries page for what is retried).
        max_retry_wait: the longest server-requested wait we sleep through before raising.
        deadline: stop retrying when the next wait would pass this many seconds since the start.
        retry_unknown_outcome: also retry timeouts, lost connections and 5xx. May duplicate.
        limiter: an extra limiter (e.g. ``TokenBucket``) every request waits on.
        pace_from_headers: follow the server's ``RateLimit`` headers (on by default).
        max_connections: connections (and requests in flight) at once.
        session: a caller-owned ``aiohttp.ClientSession``; never closed by the client.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        oauth_token: str | None = None,
        base_url: str | None = None,
        timeout: float = const.DEFAULT_TIMEOUT,
        max_retries: int = const.DEFAULT_MAX_RETRIES,
        max_retry_wait: float = const.DEFAULT_MAX_RETRY_WAIT,
        deadline: float | None = None,
        retry_unknown_outcome: bool = False,
        limiter: Limiter | None = None,
        pace_from_headers: bool = True,
        max_connections: int = const.DEFAULT_MAX_CONNECTIONS,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self._authorization = _authorization(api_key, oauth_token)
        if base_url is None:
            base_url = os.environ.get(const.BASE_URL_ENV) or const.DEFAULT_BASE_URL
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise InvalidInputError("base_url", base_url, "must be an http(s) URL")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        """The API's base URL, ending in ``/``."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidInputError("timeout", timeout, "must be a number of seconds > 0")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise InvalidInputError("max_connections", max_connections, "must be an integer")
        if max_connections < 1:
            raise InvalidInputError("max_connections", max_connections, "must be >= 1")
        self._transport = HTTPTransport(
            authorization=self._authorization,
            base_url=self.base_url,
            timeout=float(timeout),
            retry_policy=RetryPolicy(
                max_retries=max_retries,
                max_retry_wait=max_retry_wait,
                deadline=deadline,
                retry_unknown_outcome=retry_unknown_outcome,
            ),
            limiter=limiter,
            pacer=Pacer(max_wait=max_retry_wait) if pace_from_headers else None,
            max_connections=max_connections,
            session=session,
        )
        self.opportunities = Opportunities(self._transport)
        """The opportunity resource: ``create``, ``create_many``, ``stream_create``."""
        self.leads = Leads(self._transport)
        """The lead resource: ``create``."""

    def __repr__(self) -> str:
        kind = "oauth_token" if self._authorization.startswith("Bearer") else "api_key"
        state = "closed" if self.closed else "open"
        return f"<AsyncCloseClient base_url={self.base_url!r} auth={kind}=*** {state}>"

    async def __aenter__(self) -> AsyncCloseClient:
        self._transport._check_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session if the client created it. Safe to call twice.

        Requests still waiting (for a connection slot, the limiter or the pacer) then fail with
        ``CloseError``; ``create_many`` still returns one result per item."""
        await self._transport.aclose()

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` ran (or the ``async with`` block ended)."""
        return self._transport.closed

    @property
    def timeout(self) -> float:
        """Seconds for one attempt, from sending to reading the whole response."""
        return self._transport.timeout

    @property
    def retry_policy(self) -> RetryPolicy:
        """What is retried, how often and how long (replaceable between requests)."""
        return self._transport.retry_policy

    @retry_policy.setter
    def retry_policy(self, policy: RetryPolicy) -> None:
        self._transport.retry_policy = policy

    @property
    def limiter(self) -> Limiter | None:
        """The extra limiter every request waits on, if any."""
        return self._transport.limiter

    @limiter.setter
    def limiter(self, limiter: Limiter | None) -> None:
        self._transport.limiter = limiter

    @property
    def pacer(self) -> Pacer | None:
        """The pacer that follows the server's ``RateLimit`` headers (None when turned off)."""
        return self._transport.pacer

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        json: Any = None,
    ) -> Any:
        """Call any endpoint through the same pipeline as ``create`` (auth, pacing, the limiter,
        retries, the error tree); returns the decoded JSON answer, ``None`` for an empty body.

        ```python
        lead = await close.request("GET", "lead/lead_abc/", params={"_fields": "id,name"})
        ```

        ``path`` is relative to ``base_url`` (a leading ``/`` is allowed); ``params`` goes to the
        query string (a list value repeats the key); ``json`` is sent as the body. GET, HEAD,
        PUT and DELETE are treated as idempotent: their timeouts, lost connections and 5xx are
        retried; POST and PATCH are not (as for ``create``). Bad input raises
        ``InvalidInputError`` naming the argument, before anything is sent.
        """
        verb = _method(method)
        _check_path(path)
        query = _params(params)
        body = b"" if json is None else _encode_json(json)
        raw = await self._transport.send(verb, path, body, params=query)
        if not raw.strip():
            return None
        try:
            return _json_decoder.decode(raw)
        except MSGSPEC_DECODE_ERRORS as exc:
            error = DecodeError(f"response is not JSON: {exc}", body=raw)
            error.may_have_succeeded = True  # answered 2xx: the request did go through
            raise self._transport.redact(error) from exc


def _method(method: object) -> str:
    verb = method.upper() if isinstance(method, str) else None
    if verb not in METHODS:
        raise InvalidInputError("method", method, f"must be one of {', '.join(METHODS)}")
    return verb


def _check_path(path: object) -> None:
    if not isinstance(path, str):
        raise InvalidInputError("path", path, "must be a string, relative to base_url")
    if "://" in path or path.startswith("//"):
        # Sent after base_url, an absolute URL would carry the credentials to a wrong path.
        raise InvalidInputError("path", path, "must be relative to base_url, not a URL")


def _params(params: object) -> dict[str, ParamValue] | None:
    if params is None:
        return None
    if not isinstance(params, Mapping):
        raise InvalidInputError("params", params, "must be a dict of query parameters")
    for key, value in params.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError("params", key, "keys must be non-empty strings")
        for item in value if isinstance(value, (list, tuple)) else (value,):
            # A bool would be sent as "True", which no Close filter reads: say it explicitly.
            ok = isinstance(item, (str, int, float)) and not isinstance(item, bool)
            if not ok or (isinstance(item, float) and not math.isfinite(item)):
                raise InvalidInputError(
                    f"params.{key}", item, "must be a string or a finite number (or a list)"
                )
    return dict(params)


def _encode_json(value: Any) -> bytes:
    check_json_value("json", value)  # NaN, infinities and naive datetimes would be sent wrong
    try:
        return _json_encoder.encode(value)
    except Exception as exc:  # whatever msgspec refuses (see opportunities.codec.encode_create)
        reason = f"{type(exc).__name__}: {exc}"
        raise InvalidInputError("json", value, f"cannot be sent as JSON ({reason})") from exc


def _authorization(api_key: str | None, oauth_token: str | None) -> str:
    if api_key is not None and oauth_token is not None:
        raise InvalidInputError("oauth_token", "***", "pass either api_key or oauth_token")
    if oauth_token is not None:
        if not isinstance(oauth_token, str) or not oauth_token.strip():
            raise InvalidInputError("oauth_token", "***", "must be a non-empty string")
        return f"Bearer {oauth_token.strip()}"
    if api_key is None:
        api_key = os.environ.get(const.API_KEY_ENV) or None
        if api_key is None:
            raise CloseError(
                f"no API key: pass api_key=... or oauth_token=..., or set ${const.API_KEY_ENV}"
            )
    if not isinstance(api_key, str) or not api_key.strip():
        raise InvalidInputError("api_key", "***", "must be a non-empty string")
    # Built by hand: aiohttp 3.14 deprecates BasicAuth. Username = key, password empty.
    token = base64.b64encode(f"{api_key.strip()}:".encode()).decode("ascii")
    return f"Basic {token}"
