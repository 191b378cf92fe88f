"""Defaults shared by the client, the retry policy and the pacer, in one place."""

from __future__ import annotations

from typing import Literal, get_args

from ._version import __version__ as __version__

DEFAULT_BASE_URL = "https://api.close.com/api/v1/"
API_KEY_ENV = "CLOSE_API_KEY"
BASE_URL_ENV = "CLOSE_BASE_URL"
# Custom fields travel as flat top-level keys with this prefix, both ways.
CUSTOM_PREFIX = "custom."
# Here, at the bottom, so that the CLI offers the value periods without importing the SDK.
ValuePeriod = Literal["one_time", "monthly", "annual"]
"""How often an opportunity's value is paid: the request enum (closed: any other value is
rejected before sending; responses carry a plain ``str``)."""
VALUE_PERIODS: tuple[ValuePeriod, ...] = get_args(ValuePeriod)
"""The same values at run time (checks, CLI choices), derived from the type."""
USER_AGENT = f"close-async/{__version__}"

# aiohttp's own default is 300 s for the whole request: far too long for a create that should take
# well under a second; a stuck attempt must surface quickly.
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
# Sized like a browser's pool per host; also the cap on requests we start at once, so that no
# request ever waits for a pooled connection inside its own timeout.
DEFAULT_MAX_CONNECTIONS = 100
# Creates in flight at once in bulk; the pacer and the connection pool bound them further.
DEFAULT_CONCURRENCY = 50

# Backoff when the server gives no wait: 0.5 s, 1 s, 2 s ... capped, with full jitter.
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0
# The longest single wait a 429 may ask of us before we give up at once with RateLimitError.
DEFAULT_MAX_RETRY_WAIT = 60.0

# Servers close idle keep-alive connections after 2-5 s (gunicorn 2, uvicorn, Node and Apache 5);
# aiohttp would keep them 15 s. Without a `Keep-Alive: timeout` we assume the shortest, and retire
# an idle connection before it (see _transport/body.py retire_after: after 1 s).
ASSUMED_SERVER_KEEPALIVE = 2.0
# The most of an error body we read: enough for any JSON error Close sends, not a 5 MB page.
MAX_ERROR_BODY = 64 * 1024


def endpoint_group(method: str, path: str) -> str:
    """The rate-limit group of a request, named in one place from its method and path.

    Close limits each endpoint group separately (per key and per organization); we group by
    method and resource, the first segment of the path: ``("POST", "opportunity/")`` ->
    ``"POST opportunity"``, ``("GET", "/lead/lead_1/")`` -> ``"GET lead"``."""
    resource = path.lstrip("/").split("/", 1)[0].split("?", 1)[0]
    return f"{method.upper()} {resource}"
