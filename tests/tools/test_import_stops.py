"""The import stops at once, with one message, when every further row would fail the same way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from close_async import AsyncCloseClient, Opportunity, RedirectError
from close_async._tools.importer import ImportSummary, Stop, run_import, stop_report
from close_async._tools.journal import Journal
from tests.support.wire import Ending, Wire


def rows(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(f'{{"lead_id": "lead_1", "note": "row-{i}"}}\n' for i in range(n)))
    return path


async def test_a_redirecting_base_url_stops_the_import_with_one_message(tmp_path: Path) -> None:
    location: dict[str, str] = {}
    async with Wire([Ending(status=301, headers=location, body=b"")] * 300) as server:
        target = server.base_url.replace("http://", "https://")
        location["Location"] = target + "opportunity/"
        async with AsyncCloseClient("key", base_url=server.base_url) as close:
            with Journal(tmp_path / "j.jsonl") as journal:
                summary = await run_import(
                    close, rows(tmp_path, 300), journal=journal, concurrency=4
                )
        assert len(server.received) <= 4  # the server's record: no 300 hits
    assert summary.stopped == f"the base URL redirects to {target}: use --base-url {target}"
    assert summary.exit_code == 3
    assert summary.unknown == []
    assert summary.created == 0
    # an http -> https redirect of the same path happened before the application: not sent
    assert summary.failed == []


async def test_a_redirect_stops_the_rest_of_a_bulk_batch_unsent() -> None:
    async with Wire([Ending(status=308, headers={"Location": "https://x.test/"})] * 50) as server:
        async with AsyncCloseClient("key", base_url=server.base_url) as close:
            results = await close.opportunities.create_many(
                [{"lead_id": "lead_1"}] * 50, concurrency=2
            )
        assert len(server.received) <= 2
    assert all(isinstance(r, RedirectError) for r in results)
    assert not any(r.may_have_succeeded for r in results if isinstance(r, RedirectError))


@pytest.mark.parametrize(
    ("location", "processed"),
    [
        ("https://127.0.0.1:{port}/api/v1/opportunity/", False),  # http -> https: the TLS front
        ("https://127.0.0.1/api/v1/opportunity/", False),  # to the default port, as an ingress
        ("http://127.0.0.1:{port}/api/v1/opportunity/123/", True),  # post/redirect/get
        ("https://localhost:{port}/api/v1/opportunity/", True),  # another host
        ("https://127.0.0.1:{port}/api/v1/opportunity/?x=1", True),  # another URL
    ],
)
async def test_only_a_301_302_to_the_same_url_on_https_was_not_processed(
    location: str, processed: bool
) -> None:
    headers: dict[str, str] = {}
    async with Wire([Ending(status=302, headers=headers)]) as server:
        port = server.base_url.split(":")[2].split("/")[0]
        headers["Location"] = location.format(port=port)
        async with AsyncCloseClient("key", base_url=server.base_url, max_retries=0) as close:
            with pytest.raises(RedirectError) as info:
                await close.opportunities.create(lead_id="lead_1")
        assert server.arrived == 1
    assert info.value.may_have_succeeded is processed


async def test_a_429_asking_longer_than_max_retry_wait_stops_and_the_rerun_sends_the_rest(
    tmp_path: Path,
) -> None:
    path = rows(tmp_path, 300)
    journal = tmp_path / "j.jsonl"
    wait = Ending(status=429, headers={"Retry-After": "120"}, body=b"")
    async with Wire([wait] * 300) as server:
        async with AsyncCloseClient("key", base_url=server.base_url, max_retry_wait=5) as close:
            with Journal(journal) as j:
                summary = await run_import(close, path, journal=j, concurrency=4)
        assert len(server.received) <= 4
    assert summary.stopped is not None
    assert "120 s" in summary.stopped
    assert summary.exit_code == 3
    assert summary.failed == []
    assert summary.unknown == []
    async with Wire() as server:
        async with AsyncCloseClient("key", base_url=server.base_url) as close:
            with Journal(journal) as j:
                again = await run_import(close, path, journal=j, concurrency=4)
        notes = sorted(msgspec.json.decode(r.body)["note"] for r in server.processed)
    assert (again.exit_code, again.created, again.unknown) == (0, 300, [])
    assert notes == sorted(f"row-{i}" for i in range(300))  # each once, none lost


@pytest.mark.parametrize(
    "argv",
    [
        ["import", "in.csv", "--api-key", "sk_secret_1", "--journal", "j.jsonl"],
        ["--api-key=sk_secret_1", "import", "in.csv", "--journal", "j.jsonl"],
    ],
)
def test_the_resume_command_never_shows_the_api_key(argv: list[str]) -> None:
    summary = ImportSummary(stopped="interrupted by SIGTERM", stop_code=130, created=1)
    text = "\n".join(stop_report(summary, journal=Path("j.jsonl"), argv=argv))
    assert "sk_secret_1" not in text
    assert '--api-key "$CLOSE_API_KEY"' in text or '--api-key="$CLOSE_API_KEY"' in text
    assert "$CLOSE_API_KEY" in text.splitlines()[-1]
    assert "import in.csv" in text


async def test_rows_whose_answer_was_in_hand_at_a_hard_cut_are_recorded_not_unknown(
    tmp_path: Path,
) -> None:
    async with Wire() as server:
        async with AsyncCloseClient("key", base_url=server.base_url) as close:
            real = close.opportunities.stream_create
            stop = Stop()

            async def held(items: Any, **options: Any) -> AsyncIterator[Any]:
                # The real pool, whose answers never reach the consumer: as when they sit in
                # run_pool's queue (or a worker waits to put one there) as the cut comes.
                async for _ in real(items, **options):
                    pass
                stop("SIGTERM")
                stop("SIGTERM")  # the second signal: cut at once
                await asyncio.Event().wait()
                yield  # pragma: no cover

            close.opportunities.stream_create = held  # type: ignore[method-assign]
            with Journal(tmp_path / "j.jsonl") as journal:
                summary = await run_import(
                    close, rows(tmp_path, 3), journal=journal, concurrency=3, stop=stop
                )
        assert len(server.processed) == 3  # the server's record: all three were created
    assert summary.exit_code == 130
    assert (summary.created, summary.unknown, summary.in_flight) == (3, [], [])


async def test_stream_create_tells_each_result_as_the_worker_has_it() -> None:
    told: dict[int, Any] = {}
    async with Wire() as server:
        async with AsyncCloseClient("key", base_url=server.base_url) as close:
            stream = close.opportunities.stream_create(
                [{"lead_id": "lead_1"}] * 5, concurrency=5, on_result=told.__setitem__
            )
            await stream.__anext__()
            await asyncio.sleep(0.3)  # the other four finish and wait in the queue
            await stream.aclose()  # type: ignore[attr-defined]
        assert len(server.processed) == 5
    assert sorted(told) == [0, 1, 2, 3, 4]
    assert all(isinstance(r, Opportunity) for r in told.values())
