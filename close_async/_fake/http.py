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

from .limits import RateLimitModel, Verdict

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
    "late_create",
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


def _seconds(reset: float, whole: bool) -> str:
    """``reset`` as the headers show it: ``0.734000``, or rounded up to ``1`` when ``whole``."""
    return str(math.ceil(reset)) if whole else f"{reset:.6f}"


def rate_limit_headers(
    dialect: str, limit: int, remaining: int, reset: float, *, whole: bool = False
) -> dict[str, str]:
    """The rate-limit headers a non-429 answer carries in ``dialect``."""
    seconds = _seconds(reset, whole)
    if dialect in ("modern", "html"):
        return {"RateLimit": f"limit={limit}, remaining={remaining}, reset={seconds}"}
    if dialect == "semicolon":
        return {"RateLimit": f"limit={limit}; remaining={remaining}; reset={seconds}"}
    if dialect == "none":
        return {}
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": seconds,
    }


def too_many_requests(
    dialect: str,
    limit: int,
    window: float,
    reset: float,
    *,
    remaining: int = 0,
    whole: bool = False,
    retry_after: bool = False,
) -> web.Response:
    """The 429 answer of ``dialect`` (``reset``: seconds until a request may pass again)."""
    wait = {"Retry-After": str(max(1, math.ceil(reset)) if reset > 0 else 0)}
    if dialect == "html":
        return web.Response(status=429, text=_HTML_429, content_type="text/html", headers=wait)
    headers = rate_limit_headers(dialect, limit, remaining, reset, whole=whole)
    if retry_after:
        headers.update(wait)
    if dialect == "none":
        return web.Response(status=429, headers=headers)
    rate_window = int(window) if window == int(window) else window
    rate_reset: float | str = math.ceil(reset) if whole else round(reset, 6)
    if dialect == "legacy_nested":
        message = f"API call count exceeded for this {rate_window} second window"
        error = {"rate_reset": rate_reset, "message": message}
        body = encode({"error": {**error, "rate_limit": limit, "rate_window": rate_window}})
    elif dialect == "legacy_flat":
        body = encode(
            {
                "message": "API call count exceeded for this period",
                "rate_endpoint_group": "ab60a2938ea23638a0c6f32222cadc8e",
                "rate_limit": limit,
                "rate_limit_type": "key",
                "rate_reset": _seconds(reset, whole),
                "rate_window": rate_window,
            }
        )
    else:
        body = _MODERN_429
    return json_response(429, body, headers)


def model_headers(model: RateLimitModel | None, verdict: Verdict) -> dict[str, str]:
    """The rate-limit headers of a non-429 answer under ``model`` (None: unlimited)."""
    if model is None or not model.success_headers:
        return {}
    whole = model.reset_format == "whole"
    _, limit, remaining, reset = verdict
    return rate_limit_headers(model.dialect, limit, remaining, reset, whole=whole)


def model_429(model: RateLimitModel | None, verdict: Verdict) -> web.Response:
    """The 429 of ``model`` for ``verdict`` (``remaining > 0`` there means a hidden limit)."""
    assert model is not None
    return too_many_requests(
        model.dialect,
        verdict.limit,
        model.window,
        verdict.reset,
        remaining=verdict.remaining,
        whole=model.reset_format == "whole",
        retry_after=model.retry_after,
    )


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
