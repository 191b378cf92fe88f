"""An aiohttp.web backend that creates one Close opportunity per request.

    CLOSE_API_KEY=api_... python examples/web_backend.py   # serves http://127.0.0.1:8080
    curl -X POST localhost:8080/opportunities -d '{"lead_id": "lead_...", "value": 500000}'

One AsyncCloseClient lives as long as the app: it is created at startup, shared by every request
(it is safe across any number of concurrent tasks, and paces them all inside Close's rate limit),
and closed at shutdown. Our errors become HTTP answers the backend's own clients can act on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from close_async import (
    APITimeoutError,
    AsyncCloseClient,
    AuthenticationError,
    BadRequestError,
    CloseError,
    InvalidInputError,
    RateLimitError,
)

logger = logging.getLogger(__name__)

# The request fields this endpoint accepts (a subset of CreateOpportunity's).
FIELDS = ("lead_id", "status_id", "value", "value_period", "confidence", "note", "contact_id")
CLOSE = web.AppKey("close", AsyncCloseClient)


# --8<-- [start:app]
def make_app(**client_options: Any) -> web.Application:
    """The app. ``client_options`` go to AsyncCloseClient (the key comes from $CLOSE_API_KEY)."""

    async def close_client(app: web.Application) -> AsyncIterator[None]:
        async with AsyncCloseClient(**client_options) as close:  # closed at shutdown
            app[CLOSE] = close
            yield

    app = web.Application()
    app.cleanup_ctx.append(close_client)
    app.router.add_post("/opportunities", create_opportunity)
    return app


async def create_opportunity(request: web.Request) -> web.Response:
    try:
        payload = await request.json()
    except ValueError:
        return answer(400, error="the body must be JSON")
    if not isinstance(payload, dict) or payload.keys() - {*FIELDS, "custom"}:
        return answer(422, error=f"expected a JSON object with only {', '.join(FIELDS)}, custom")
    fields = {name: payload[name] for name in FIELDS if name in payload}
    try:
        opp = await request.app[CLOSE].opportunities.create(**fields, custom=payload.get("custom"))
    except CloseError as exc:
        return error_response(exc)
    return answer(201, id=opp.id, lead_id=opp.lead_id, value_formatted=opp.value_formatted)


# --8<-- [end:app]


# --8<-- [start:errors]
def error_response(exc: CloseError) -> web.Response:
    """Our errors as HTTP answers. Order matters: the most specific checks first."""
    if isinstance(exc, InvalidInputError):  # our own check: nothing was sent
        return answer(422, error=str(exc), field=exc.field)
    if isinstance(exc, BadRequestError):  # Close refused the data: the caller must fix it
        return answer(400, error=str(exc), field_errors=exc.field_errors, errors=exc.errors)
    if isinstance(exc, RateLimitError):  # Close's limit held even after the client's retries
        retry_after = max(1, math.ceil(exc.retry_after or 0))  # whole seconds, at least 1
        headers = {"Retry-After": str(retry_after)}
        return answer(503, headers=headers, error="rate limited by Close, try again later")
    if exc.may_have_succeeded:
        # A timeout, a lost connection or a 5xx after the request left: the opportunity may
        # exist. Say so, so the caller checks before sending it again (a retry may duplicate).
        status = 504 if isinstance(exc, APITimeoutError) else 502
        return answer(status, error=str(exc), outcome="unknown: it may have been created")
    if isinstance(exc, AuthenticationError):  # our API key is wrong: not the caller's fault
        logger.error("Close refused our API key: %s", exc)
        return answer(502, error="the server is misconfigured", outcome="not created")
    return answer(502, error=str(exc), outcome="not created")


# --8<-- [end:errors]


def answer(status: int, headers: dict[str, str] | None = None, **body: Any) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
