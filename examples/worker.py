"""A worker that takes opportunity jobs from a Redis list and creates them in Close.

    CLOSE_API_KEY=api_... python examples/worker.py redis://localhost:6379/0

Run as many of these as you like, on as many hosts: they share one job queue and, through
``RedisTokenBucket``, one request rate, because Close counts requests per API key, not per process.
A producer pushes jobs, the keyword arguments of ``opportunities.create`` as JSON:

    redis-cli RPUSH close:jobs '{"lead_id": "lead_...", "value": 500000, "note": "Gold plan"}'

Each job's outcome is pushed to one of three lists: ``close:created`` (with the new id),
``close:failed`` (not created, with the reason) or ``close:unknown`` (the request left and no
definite answer came back: the opportunity may exist, so the job is not retried; check Close).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from typing import Any

import redis.asyncio as aioredis

from close_async import AsyncCloseClient, CloseError, RedisTokenBucket

logger = logging.getLogger(__name__)

JOBS, CREATED, FAILED, UNKNOWN = "close:jobs", "close:created", "close:failed", "close:unknown"


# --8<-- [start:worker]
async def run(
    redis_url: str,
    *,
    api_key: str | None = None,
    tasks: int = 8,
    rate: float = 20,
    burst: int = 5,
    drain: bool = False,
    **client_options: Any,
) -> None:
    """Create opportunities from the job list with ``tasks`` concurrent tasks in this process,
    every process together sending at most ``rate`` requests per second (``burst`` at once).
    With ``drain``, return once the list is empty; otherwise wait for jobs forever."""
    api_key = api_key or os.environ["CLOSE_API_KEY"]
    # The same Redis, key and identity in every process: one budget for the API key.
    limiter = RedisTokenBucket(redis_url, rate=rate, burst=burst, identity=api_key)
    queue = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with AsyncCloseClient(api_key, limiter=limiter, **client_options) as close:
            await asyncio.gather(*(consume(close, queue, drain=drain) for _ in range(tasks)))
    finally:
        await queue.aclose()
        await limiter.aclose()


async def consume(close: AsyncCloseClient, queue: aioredis.Redis, *, drain: bool) -> None:
    while True:
        if drain:
            raw = await queue.lpop(JOBS)
            if raw is None:
                return
        else:
            _, raw = await queue.blpop([JOBS])  # waits for the next job
        outcome, record = await create(close, raw)
        await queue.rpush(outcome, json.dumps(record))


async def create(close: AsyncCloseClient, raw: str) -> tuple[str, dict[str, Any]]:
    """Run one job; which list its outcome goes to, and what to record there."""
    try:
        job = json.loads(raw)
        opp = await close.opportunities.create(**job)
    except CloseError as exc:
        if exc.may_have_succeeded:  # never retried on our own: a retry could duplicate it
            logger.warning("outcome unknown, check Close: %s: %s", raw, exc)
            return UNKNOWN, {"job": raw, "error": str(exc)}
        return FAILED, {"job": raw, "error": str(exc)}
    except (ValueError, TypeError) as exc:  # not JSON, or not the arguments of create()
        return FAILED, {"job": raw, "error": f"bad job: {exc}"}
    return CREATED, {"job": raw, "id": opp.id}


# --8<-- [end:worker]


def main() -> None:
    parser = argparse.ArgumentParser(description="Create Close opportunities from a Redis list.")
    parser.add_argument("redis_url", help="redis://host:6379/0")
    parser.add_argument("--tasks", type=int, default=8, help="concurrent creates in this process")
    parser.add_argument("--rate", type=float, default=20, help="requests/s for all processes")
    parser.add_argument("--burst", type=int, default=5, help="requests at once for all processes")
    parser.add_argument("--drain", action="store_true", help="exit when the job list is empty")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    asyncio.run(
        run(args.redis_url, tasks=args.tasks, rate=args.rate, burst=args.burst, drain=args.drain)
    )


if __name__ == "__main__":
    main()
