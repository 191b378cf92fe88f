"""Private helpers of :mod:`close_async.testing`: auth parsing and canned HTTP answers.

Self-contained (aiohttp + msgspec + stdlib) so the fake server never depends on the rest
of the package.
"""

from __future__ import annotations

import binascii
import math
from base64 import b64decode

import msgspec
from aiohttp import web

DIALECTS = ("modern", "semicolon", "legacy_nested", "legacy_flat", "html", "none")
FAULTS = (
    "500",
    "502",
    "503",
    "504",
    "500_after_create",
    "drop",
    "drop_before_create",
    "hang",
    "429",
)
OPPORTUNITY_PATH = "/api/v1/opportunity/"

encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder().decode

_JSON = "application/json"
UNAUTHORIZED = encode(
    {
        "error": "The server could not verify that you are authorized to access the URL"
        " requested.  You either supplied the wrong credentials (e.g. a bad password), or"
        " your browser doesn't understand how to supply the credentials required."
    }
)
INVALID_JSON = encode({"error": "Invalid JSON"})
NOT_AN_OBJECT = encode({"error": "Invalid JSON: expected an object"})
SERVER_ERROR = encode({"error": "Internal Server Error"})
_MODERN_429 = encode({"error": "Rate limit exceeded"})
_HTML_429 = "<html><body><h1>429 Too Many Requests</h1></body></html>"
_GATEWAY = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"
_GATEWAY_PAGES = {"502": "502 Bad Gateway", "503": "503 Service Temporarily Unavailable"}


def api_key_from_header(header: str | None) -> str | None:
    """The API key of ``Basic base64(key:)`` or the token of ``Bearer TOKEN``; else None."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials.strip() or None
    if scheme != "basic":
        return None
    try:
        decoded = b64decode(credentials.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def json_response(status: int, body: bytes, headers: dict[str, str]) -> web.Response:
    return web.Response(status=status, body=body, content_type=_JSON, headers=headers)


def rate_limit_headers(dialect: str, limit: int, remaining: int, reset: float) -> dict[str, str]:
    """The rate-limit headers a non-429 answer carries in ``dialect``."""
    if dialect in ("modern", "html"):
        return {"RateLimit": f"limit={limit}, remaining={remaining}, reset={reset:.6f}"}
    if dialect == "semicolon":
        return {"RateLimit": f"limit={limit}; remaining={remaining}; reset={reset:.6f}"}
    if dialect == "none":
        return {}
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": f"{reset:.6f}",
    }


def too_many_requests(dialect: str, limit: int, window: float, reset: float) -> web.Response:
    """The 429 answer of ``dialect`` (``reset``: seconds until the window ends)."""
    if dialect == "html":
        headers = {"Retry-After": str(max(1, math.ceil(reset)))}
        return web.Response(status=429, text=_HTML_429, content_type="text/html", headers=headers)
    if dialect == "none":
        return web.Response(status=429)
    rate_window = int(window) if window == int(window) else window
    if dialect == "legacy_nested":
        message = f"API call count exceeded for this {rate_window} second window"
        error = {"rate_reset": round(reset, 6), "message": message}
        body = encode({"error": {**error, "rate_limit": limit, "rate_window": rate_window}})
    elif dialect == "legacy_flat":
        body = encode(
            {
                "message": "API call count exceeded for this period",
                "rate_endpoint_group": "ab60a2938ea23638a0c6f32222cadc8e",
                "rate_limit": limit,
                "rate_limit_type": "key",
                "rate_reset": f"{reset:.6f}",
                "rate_window": rate_window,
            }
        )
    else:
        body = _MODERN_429
    return json_response(429, body, rate_limit_headers(dialect, limit, 0, reset))


def server_fault(fault: str, headers: dict[str, str]) -> web.Response:
    """The answer of the scripted ``500``/``502``/``503``/``504`` faults.

    500 comes from the app (JSON, rate-limit headers); 502/503/504 come from the gateway
    (HTML pages, or an empty JSON-typed 504 like Close's) without rate-limit headers.
    """
    if fault == "500":
        return json_response(500, SERVER_ERROR, headers)
    if fault == "504":
        return web.Response(status=504, content_type=_JSON)
    page = _GATEWAY.format(_GATEWAY_PAGES[fault])
    return web.Response(status=int(fault), text=page, content_type="text/html")
