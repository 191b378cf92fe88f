"""Small adversarial rate-limited servers over real sockets, one per way Close's limiter has been
seen to behave (issue 11). Each keeps its own record: creates by note, and every status sent.

Used by test_pacer_servers.py (tiny windows) and, with Close-sized limits, by hand:

    python -m tests.rate_models 2000 200 1.0     # n, limit, window: one fan-out per model
"""

from __future__ import annotations

import asyncio
import collections
import math
import sys
import time
from dataclasses import dataclass, field

import msgspec
from aiohttp import web

from close_async import AsyncCloseClient

MODELS = (
    "decimal",  # RateLimit on every response, decimal reset (our old FakeCloseServer)
    "whole-second",  # RateLimit on every response, reset rounded up to whole seconds
    "no-headers",  # successes carry nothing; 429s are an HTML page with Retry-After (whole s)
    "hidden",  # headers advertise twice the real limit: 429s while remaining > 0
    "sliding",  # a sliding window; reset = until the oldest counted request leaves it
    "token-bucket",  # a bucket; a 429's reset is the time to the next token
)
_HTML = "<html><body><h1>429 Too Many Requests</h1></body></html>"


@dataclass
class Record:
    created: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    first: float | None = None
    last: float | None = None


class ModelServer:
    """``limit`` requests per ``window`` seconds, answered as ``model`` says."""

    def __init__(
        self,
        model: str,
        limit: int,
        window: float,
        *,
        retry_after: str | None = None,
        offset: float = 0.0,
    ) -> None:
        assert model in MODELS or retry_after is not None, model
        self.model, self.limit, self.window = model, limit, window
        self.offset = offset  # seconds into its first window the server starts (fixed windows)
        self.retry_after = retry_after  # a fixed Retry-After on every 429 (over-cap tests)
        self.record = Record()
        self._t0 = 0.0
        self._count: dict[int, int] = {}
        self._log: collections.deque[float] = collections.deque()
        self._tokens, self._stamp = float(limit), 0.0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def __aenter__(self) -> ModelServer:
        app = web.Application()
        app.router.add_post("/api/v1/opportunity/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/api/v1/"
        self._t0 = self._stamp = asyncio.get_running_loop().time()
        self._t0 -= self.offset
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _header(self, limit: int, remaining: int, reset: float, whole: bool) -> dict[str, str]:
        shown = str(max(1, math.ceil(reset))) if whole else f"{reset:.6f}"
        return {"RateLimit": f"limit={limit}, remaining={max(remaining, 0)}, reset={shown}"}

    def _admit(self, now: float) -> tuple[bool, dict[str, str], str]:
        """(admitted, headers, Retry-After) for a request arriving at ``now``."""
        model, limit, window = self.model, self.limit, self.window
        if model == "sliding":
            while self._log and self._log[0] <= now - window:
                self._log.popleft()
            ok = len(self._log) < limit
            if ok:
                self._log.append(now)
            reset = (self._log[0] + window - now) if self._log else window
            return ok, self._header(limit, limit - len(self._log), reset, False), f"{reset:.3f}"
        if model == "token-bucket":
            rate = limit / window
            self._tokens = min(float(limit), self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            ok = self._tokens >= 1.0
            if ok:
                self._tokens -= 1.0
            reset = (1.0 - self._tokens) / rate if self._tokens < 1.0 else 0.0
            remaining = int(self._tokens)
            return ok, self._header(limit, remaining, reset, False), f"{reset:.3f}"
        index = int((now - self._t0) // window)
        reset = self._t0 + (index + 1) * window - now
        real = limit
        shown = 2 * limit if model == "hidden" else limit
        count = self._count.get(index, 0)
        ok = count < real
        if ok:
            count = self._count[index] = count + 1
        headers = self._header(shown, shown - count, reset, model == "whole-second")
        if model == "no-headers":
            headers = {}
        return ok, headers, str(max(1, math.ceil(reset)))

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = asyncio.get_running_loop().time()
        record = self.record
        record.first = now if record.first is None else record.first
        if self.retry_after is not None:
            record.statuses[429] += 1
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        ok, headers, retry_after = self._admit(now)
        if not ok:
            record.statuses[429] += 1
            if self.model == "no-headers":
                headers = {"Retry-After": retry_after}
                html = "text/html"
                return web.Response(status=429, text=_HTML, content_type=html, headers=headers)
            return web.json_response({}, status=429, headers=headers)
        data = msgspec.json.decode(body)
        note = str(data.get("note"))
        record.created[note] += 1
        record.statuses[200] += 1
        record.last = now
        opportunity = {"id": f"oppo_{len(record.created)}", "note": note, "lead_id": "lead_x"}
        return web.Response(
            body=msgspec.json.encode(opportunity), content_type="application/json", headers=headers
        )


@dataclass
class Outcome:
    model: str
    requests: int
    pct_429: float
    failed: int
    duplicates: int
    lost: int
    ratio: float  # creates per second over limit / window, first request to last create
    errors: collections.Counter[str]


async def fan_out(
    model: str, n: int, limit: int, window: float, *, offset: float = 0.0, **client: object
) -> Outcome:
    async with ModelServer(model, limit, window, offset=offset) as server:
        close = AsyncCloseClient("k", base_url=server.base_url, **client)  # type: ignore[arg-type]
        async with close:
            results = await asyncio.gather(
                *(close.opportunities.create(lead_id="lead_x", note=f"item-{i}") for i in range(n)),
                return_exceptions=True,
            )
    record = server.record
    errors = collections.Counter(type(r).__name__ for r in results if isinstance(r, Exception))
    requests = sum(record.statuses.values())
    created = record.created
    elapsed = (record.last or 0.0) - (record.first or 0.0)
    ok = sum(1 for c in created.values() if c)
    return Outcome(
        model=model,
        requests=requests,
        pct_429=100.0 * record.statuses[429] / max(requests, 1),
        failed=sum(errors.values()),
        duplicates=sum(c - 1 for c in created.values() if c > 1),
        lost=sum(1 for i in range(n) if not created[f"item-{i}"]) - sum(errors.values()),
        ratio=(ok / elapsed) / (limit / window) if elapsed > 0 else 0.0,
        errors=errors,
    )


async def _main(n: int, limit: int, window: float) -> None:
    for model in MODELS:
        started = time.perf_counter()
        out = await fan_out(model, n, limit, window)
        print(
            f"{model:13} 429s {out.pct_429:5.2f}%  rate {out.ratio:.3f}  failed {out.failed} "
            f"dup {out.duplicates} lost {out.lost}  ({time.perf_counter() - started:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
