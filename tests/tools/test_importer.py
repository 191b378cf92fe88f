"""The resumable import behind ``close-async import``: reading rows, the journal, dry runs."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import msgspec
import pytest

from close_async import AsyncCloseClient, InvalidInputError
from close_async._tools.importer import ImportSummary, read_rows, run_import
from close_async._tools.journal import Journal
from close_async.testing import LEAD_MISSING, FakeCloseServer

LEAD = "lead_" + "ImporterTests".ljust(43, "0")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """One line per row: dicts as JSON, strings written as they are (for bad lines)."""
    text = [r if isinstance(r, str) else msgspec.json.encode(r).decode() for r in rows]
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    return path


def good_rows(n: int) -> list[dict[str, Any]]:
    """Row i (1-based) sits on line i and carries the note ``row-i``."""
    return [{"lead_id": LEAD, "value": i, "note": f"row-{i}"} for i in range(1, n + 1)]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def records(journal: Path) -> list[dict[str, Any]]:
    """The journal's row records (not its header line)."""
    decoded = [msgspec.json.decode(line) for line in journal.read_bytes().splitlines() if line]
    return [r for r in decoded if "row" in r]


def last_states(journal: Path) -> dict[int, str]:
    return {r["row"]: r["state"] for r in records(journal)}


def sent_notes(server: FakeCloseServer) -> list[str]:
    """The note of every create request the server received (retries included)."""
    return [msgspec.json.decode(r.body).get("note") for r in server.requests]


def created_notes(server: FakeCloseServer) -> Counter[str]:
    return Counter(str(o.get("note")) for o in server.created)


async def run(
    server: FakeCloseServer,
    path: Path,
    journal: Path | None,
    *,
    concurrency: int = 5,
    **kwargs: Any,
) -> ImportSummary:
    async with AsyncCloseClient("k", base_url=server.base_url) as client:
        if journal is None:
            return await run_import(client, path, journal=None, concurrency=concurrency, **kwargs)
        with Journal(journal) as j:
            return await run_import(client, path, journal=j, concurrency=concurrency, **kwargs)


# --- reading rows ------------------------------------------------------------------------------


CSV_HEADER = [
    "lead_id",
    "value",
    "value_period",
    "confidence",
    "note",
    "date_won",
    "custom.cf_tier",
    "custom.cf_products",
    "custom.cf_count",
    "attachments",
]


def test_csv_typing(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "in.csv",
        CSV_HEADER,
        [
            [
                LEAD,
                " 500000 ",
                "monthly",
                "50",
                "a note, with a comma",
                "2024-05-06",
                "Gold",
                '["CRM", "Dialer"]',
                "42",
                '[{"url": "https://f/a.pdf", "filename": "a.pdf"}]',
            ],
            [LEAD, "", "", "", "", "", "", "", "", ""],  # only the lead: nothing else sent
            [LEAD, "0", "annual", "100", "x"],  # fewer cells than columns
        ],
    )
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [2, 3, 4]
    assert all(r.error is None for r in rows)
    assert rows[0].item == {
        "lead_id": LEAD,
        "value": 500000,
        "value_period": "monthly",
        "confidence": 50,
        "note": "a note, with a comma",
        "date_won": "2024-05-06",
        "custom.cf_tier": "Gold",
        "custom.cf_products": ["CRM", "Dialer"],
        "custom.cf_count": "42",  # only cells starting with [ are JSON
        "attachments": [{"url": "https://f/a.pdf", "filename": "a.pdf"}],
    }
    assert rows[1].item == {"lead_id": LEAD}
    assert rows[2].item == {
        "lead_id": LEAD,
        "value": 0,
        "value_period": "annual",
        "confidence": 100,
        "note": "x",
    }
    assert len({r.digest for r in rows}) == 3


def test_csv_blank_lines_and_header_only(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text(f"lead_id,note\n\n{LEAD},a\n,\n{LEAD},b\n", encoding="utf-8")
    assert [(r.line, r.item) for r in read_rows(path)] == [
        (3, {"lead_id": LEAD, "note": "a"}),
        (5, {"lead_id": LEAD, "note": "b"}),
    ]
    (tmp_path / "header.csv").write_text("lead_id,note\n", encoding="utf-8")
    assert list(read_rows(tmp_path / "header.csv")) == []
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    assert list(read_rows(tmp_path / "empty.csv")) == []


@pytest.mark.parametrize(
    ("cells", "field", "value"),
    [
        ([LEAD, "12.50"], "value", "12.50"),
        ([LEAD, "5", "high"], "confidence", "high"),
        ([LEAD, "5", "5", "[not json"], "custom.cf_products", "[not json"),
        ([LEAD, "5", "5", "[]", "extra"], "row", [LEAD, "5", "5", "[]", "extra"]),
    ],
)
def test_csv_bad_cells(tmp_path: Path, cells: list[str], field: str, value: Any) -> None:
    header = ["lead_id", "value", "confidence", "custom.cf_products"]
    path = write_csv(tmp_path / "in.csv", header, [[LEAD, "1", "2", "[]"], cells])
    good, bad = read_rows(path)
    assert good.error is None
    assert bad.line == 3
    assert bad.item is None
    assert isinstance(bad.error, InvalidInputError)
    assert bad.error.field == field
    assert bad.error.value == value


def test_csv_quoted_multiline_cell(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", ["lead_id", "note"], [[LEAD, "two\nlines"], [LEAD, "b"]])
    rows = list(read_rows(path))
    assert [r.item for r in rows] == [
        {"lead_id": LEAD, "note": "two\nlines"},
        {"lead_id": LEAD, "note": "b"},
    ]
    assert len({r.line for r in rows}) == 2  # still one journal key per row


def test_jsonl_rows(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"lead_id": "%s", "value": 5}\n'  # noqa: UP031
        "\n"
        "   \n"
        '{"note": "three", "custom.cf_x": [1, 2]}\r\n'
        "{not json\n"
        "[1, 2]\n"
        "42\n"
        '"a string"\n' % LEAD,
        encoding="utf-8",
    )
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [1, 4, 5, 6, 7, 8]
    assert rows[0].item == {"lead_id": LEAD, "value": 5}
    assert rows[1].item == {"note": "three", "custom.cf_x": [1, 2]}
    for bad in rows[2:]:
        assert bad.item is None
        assert isinstance(bad.error, InvalidInputError)
        assert bad.error.field == "row"
    assert rows[2].error is not None
    assert "not JSON" in str(rows[2].error)
    assert all("JSON object" in str(r.error) for r in rows[3:])
    assert len({r.digest for r in rows}) == len(rows)


def test_any_other_extension_is_jsonl(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.txt", good_rows(2))
    assert [r.item for r in read_rows(path)] == good_rows(2)
    upper = write_csv(tmp_path / "IN.CSV", ["lead_id"], [[LEAD]])
    assert [r.item for r in read_rows(upper)] == [{"lead_id": LEAD}]


@pytest.mark.parametrize("name", ["in.csv", "in.jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text(f"lead_id,note\n{LEAD},a\n", encoding="utf-8-sig")
    else:
        path.write_text('{"lead_id": "%s", "note": "a"}\n' % LEAD, encoding="utf-8-sig")  # noqa: UP031
    [row] = read_rows(path)
    assert row.error is None
    assert row.item == {"lead_id": LEAD, "note": "a"}


# --- importing ---------------------------------------------------------------------------------


async def test_csv_import_sends_wire_types(close_server: FakeCloseServer, tmp_path: Path) -> None:
    header = ["lead_id", "value", "confidence", "date_won", "custom.cf_tier", "custom.cf_tags"]
    path = write_csv(
        tmp_path / "in.csv",
        header,
        [[LEAD, "1500", "75", "2024-05-06", "Gold", '["a", "b"]'], [LEAD, "7", "", "", "", ""]],
    )
    summary = await run(close_server, path, tmp_path / "j.jsonl")
    assert summary.created == 2
    assert summary.exit_code == 0
    bodies = sorted(
        (msgspec.json.decode(r.body) for r in close_server.requests), key=lambda b: -b["value"]
    )
    assert bodies == [
        {
            "lead_id": LEAD,
            "value": 1500,
            "confidence": 75,
            "date_won": "2024-05-06",
            "custom.cf_tier": "Gold",
            "custom.cf_tags": ["a", "b"],
        },
        {"lead_id": LEAD, "value": 7},
    ]


async def test_a_bad_row_among_good_ones(close_server: FakeCloseServer, tmp_path: Path) -> None:
    rows: list[Any] = good_rows(8)
    rows[2] = {"lead_id": LEAD, "confidence": 150, "note": "row-3"}  # our own check fails
    rows[4] = {"lead_id": LEAD_MISSING, "note": "row-5"}  # Close answers 400
    rows[5] = "{oops"
    rows[6] = {"lead_id": LEAD, "colour": "red", "note": "row-7"}
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    journal = tmp_path / "j.jsonl"
    summary = await run(close_server, path, journal)
    assert summary.rows == 8
    assert summary.created == 4
    assert summary.sent == 5
    assert summary.unknown == []
    assert [line for line, _ in sorted(summary.failed)] == [3, 5, 6, 7]
    reasons = dict(summary.failed)
    assert reasons[3].startswith("confidence=150")
    assert "lead" in reasons[5]
    assert "not JSON" in reasons[6]
    assert reasons[7].startswith("colour='red'")
    assert summary.exit_code == 1
    assert sorted(created_notes(close_server)) == ["row-1", "row-2", "row-4", "row-8"]
    assert Counter(sent_notes(close_server)) == Counter(
        {"row-1": 1, "row-2": 1, "row-4": 1, "row-5": 1, "row-8": 1}
    )
    assert last_states(journal) == {
        1: "created",
        2: "created",
        3: "invalid",
        4: "created",
        5: "failed",
        6: "invalid",
        7: "invalid",
        8: "created",
    }


async def test_dry_run_sends_nothing(close_server: FakeCloseServer, tmp_path: Path) -> None:
    rows: list[Any] = good_rows(5)
    rows[1] = {"lead_id": LEAD, "value": 1.5}
    rows[3] = "[]"
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = await run_import(None, path, journal=None, concurrency=5, dry_run=True)
    assert summary.rows == 5
    assert summary.sent == 0
    assert summary.created == 0
    assert [line for line, _ in summary.failed] == [2, 4]
    assert "value=1.5" in summary.failed[0][1]
    assert summary.exit_code == 1
    # With a client and a journal too: still nothing sent, nothing journaled.
    journal = tmp_path / "j.jsonl"
    output = io.StringIO()
    again = await run(close_server, path, journal, dry_run=True, output=output)
    assert again.failed == summary.failed
    assert close_server.requests == []
    assert records(journal) == []
    assert [msgspec.json.decode(line)["row"] for line in output.getvalue().splitlines()] == [2, 4]


async def test_output_file(close_server: FakeCloseServer, tmp_path: Path) -> None:
    rows: list[Any] = good_rows(4)
    rows[1] = {"lead_id": LEAD, "confidence": -1}
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    close_server.fail_next("504")
    output = io.StringIO()
    summary = await run(close_server, path, tmp_path / "j.jsonl", concurrency=1, output=output)
    out = [msgspec.json.decode(line) for line in output.getvalue().splitlines()]
    outcomes = {r["row"]: r for r in out if r["state"] != "sending"}
    assert len(outcomes) == len([r for r in out if r["state"] != "sending"])  # one per row
    assert set(outcomes) == {1, 2, 3, 4}
    assert outcomes[1]["state"] == "unknown"  # the 504
    assert "504" in outcomes[1]["error"]
    assert outcomes[2] == {"row": 2, "state": "invalid", "error": outcomes[2]["error"]}
    assert outcomes[2]["error"].startswith("confidence=-1")
    ids = {o["note"]: o["id"] for o in close_server.created}
    assert outcomes[3] == {"row": 3, "state": "created", "id": ids["row-3"]}
    assert outcomes[4] == {"row": 4, "state": "created", "id": ids["row-4"]}
    assert summary.unknown == [(1, outcomes[1]["error"])]


async def test_progress_callback(close_server: FakeCloseServer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(12))
    seen: list[tuple[int, int]] = []
    summary = await run(
        close_server,
        path,
        None,
        progress=lambda s: seen.append((s.rows, s.created)),
    )
    assert summary.created == 12
    assert summary.seconds > 0
    assert seen[-1] == (12, 12)
    assert [c for _, c in seen] == sorted(c for _, c in seen)


# --- resuming with the journal -----------------------------------------------------------------


async def test_rerun_skips_created_and_names_unknown(
    close_server: FakeCloseServer, tmp_path: Path
) -> None:
    rows: list[Any] = good_rows(10)
    rows[3] = {"lead_id": LEAD_MISSING, "note": "row-4"}  # failed: certainly not created
    rows[6] = {"lead_id": LEAD, "value": "x", "note": "row-7"}  # invalid
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    journal = tmp_path / "j.jsonl"
    close_server.fail_next("drop")  # created, then the connection is cut: unknown
    close_server.fail_next("504")  # not created, but we cannot know: unknown
    first = await run(close_server, path, journal, concurrency=1)
    assert first.created == 6
    assert [line for line, _ in first.unknown] == [1, 2]
    assert sorted(line for line, _ in first.failed) == [4, 7]
    assert created_notes(close_server)["row-1"] == 1  # "drop" did create it
    assert created_notes(close_server)["row-2"] == 0

    close_server.reset()
    second = await run(close_server, path, journal)
    assert second.skipped == 6
    assert second.created == 0
    assert [line for line, _ in second.unknown] == [1, 2]  # named, not sent
    assert all("may have been processed" in r or "504" in r for _, r in second.unknown)
    assert sorted(line for line, _ in second.failed) == [4, 7]  # re-sent / re-validated
    assert sent_notes(close_server) == ["row-4"]
    assert second.exit_code == 1

    close_server.reset()
    third = await run(close_server, path, journal, retry_unknown=True)
    assert third.skipped == 6
    assert third.created == 2
    assert third.unknown == []
    assert sorted(sent_notes(close_server)) == ["row-1", "row-2", "row-4"]
    assert last_states(journal)[1] == "created"
    assert last_states(journal)[2] == "created"


async def test_sending_rows_are_unknown_on_rerun(
    close_server: FakeCloseServer, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(4))
    digests = {r.line: r.digest for r in read_rows(path)}
    journal = tmp_path / "j.jsonl"
    with Journal(journal) as j:  # a run killed with row 2 in flight and row 3 done
        j.record(2, "sending", digest=f"{digests[2]:016x}")
        j.record(3, "sending", digest=f"{digests[3]:016x}")
        j.record(3, "created", id="oppo_3")
    summary = await run(close_server, path, journal)
    assert summary.skipped == 1
    assert summary.created == 2
    assert summary.unknown == [(2, "in flight when stopped")]
    assert sorted(sent_notes(close_server)) == ["row-1", "row-4"]
    assert summary.exit_code == 1

    close_server.reset()
    retried = await run(close_server, path, journal, retry_unknown=True)
    assert (retried.skipped, retried.created, retried.unknown) == (3, 1, [])
    assert sent_notes(close_server) == ["row-2"]
    assert retried.exit_code == 0


async def test_a_fixed_invalid_row_is_sent_on_rerun(
    close_server: FakeCloseServer, tmp_path: Path
) -> None:
    rows: list[Any] = good_rows(3)
    rows[1] = {"lead_id": LEAD, "confidence": 101, "note": "row-2"}
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    journal = tmp_path / "j.jsonl"
    assert (await run(close_server, path, journal)).exit_code == 1
    rows[1] = {"lead_id": LEAD, "confidence": 100, "note": "row-2"}
    write_jsonl(path, rows)  # invalid rows were never sent: no digest pins them
    close_server.reset()
    second = await run(close_server, path, journal)
    assert (second.skipped, second.created, second.failed) == (2, 1, [])
    assert sent_notes(close_server) == ["row-2"]


async def test_journal_from_another_file_is_refused(
    close_server: FakeCloseServer, tmp_path: Path
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
    journal = tmp_path / "j.jsonl"
    await run(close_server, path, journal)
    close_server.reset()
    other = write_jsonl(tmp_path / "other.jsonl", [{"lead_id": LEAD, "note": "other"}])
    with pytest.raises(InvalidInputError) as info:
        await run(close_server, other, journal)
    assert info.value.field == "journal"
    assert "line 1" in str(info.value)
    assert close_server.requests == []


async def test_a_retried_429_is_created_once(tmp_path: Path) -> None:
    async with FakeCloseServer(window=0.05) as server:
        server.fail_next("429")
        path = write_jsonl(tmp_path / "in.jsonl", good_rows(3))
        journal = tmp_path / "j.jsonl"
        summary = await run(server, path, journal, concurrency=1)
        assert summary.created == 3
        assert created_notes(server) == Counter({"row-1": 1, "row-2": 1, "row-3": 1})
        assert len(server.requests) == 4
    # Each attempt that left was recorded as sending.
    sending = Counter(r["row"] for r in records(journal) if r["state"] == "sending")
    assert sending == Counter({1: 2, 2: 1, 3: 1})


async def test_a_429_is_recorded_waiting_with_the_callers_own_session(tmp_path: Path) -> None:
    """The attempt that got a 429 never created anything: the journal says so (``waiting``)
    even when the client runs on a session the caller made (no hooks of ours in it)."""
    async with FakeCloseServer(window=0.05) as server, aiohttp.ClientSession() as session:
        server.fail_next("429")
        path = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
        journal = tmp_path / "j.jsonl"
        client = AsyncCloseClient("k", base_url=server.base_url, session=session)
        async with client:
            with Journal(journal) as j:
                summary = await run_import(client, path, journal=j, concurrency=1)
        assert summary.created == 2
        assert created_notes(server) == Counter({"row-1": 1, "row-2": 1})
    assert [(r["row"], r["state"]) for r in records(journal)] == [
        (1, "sending"),
        (1, "waiting"),
        (1, "sending"),
        (1, "created"),
        (2, "sending"),
        (2, "created"),
    ]


async def test_a_row_resent_at_once_on_a_fresh_connection_stays_sending(tmp_path: Path) -> None:
    """A pooled connection idle past the server's ``Keep-Alive: timeout`` is retired before a
    byte is written and the request goes out at once on a new one: that is not an attempt that
    ended, so the journal must not say ``waiting`` while the request is out."""
    notes: list[str] = []
    peers: set[object] = set()

    async def create(request: aiohttp.web.Request) -> aiohttp.web.Response:
        body = await request.json()
        notes.append(body["note"])
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return aiohttp.web.json_response(
            {"id": f"oppo_{len(notes)}", "note": body["note"]},
            headers={"Keep-Alive": "timeout=0.2"},
        )

    app = aiohttp.web.Application()
    app.router.add_post("/api/v1/opportunity/", create)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(2))
    journal = tmp_path / "j.jsonl"
    idled = False

    def progress(summary: ImportSummary) -> None:
        nonlocal idled
        if not idled:  # between row 1's answer and row 2's request: past the keep-alive
            idled = True
            time.sleep(0.15)

    try:
        async with AsyncCloseClient("k", base_url=f"http://127.0.0.1:{port}/api/v1/") as client:
            with Journal(journal) as j:
                summary = await run_import(
                    client, path, journal=j, concurrency=1, progress=progress
                )
    finally:
        await runner.cleanup()
    assert summary.created == 2
    assert notes == ["row-1", "row-2"]
    assert len(peers) == 2  # row 2 did go out on a second connection
    for row in (1, 2):
        assert [r["state"] for r in records(journal) if r["row"] == row] == ["sending", "created"]


async def test_rows_waiting_in_the_limiter_have_no_sending_record(tmp_path: Path) -> None:
    """Stop an import while many rows wait for the rate limit: a row has a ``sending``
    record if and only if (up to requests cut short by the stop) its request left; the rows
    that were waiting are sent on the re-run, and only ``sending`` rows are unknown."""
    n = 80
    path = write_jsonl(tmp_path / "in.jsonl", good_rows(n))
    journal = tmp_path / "j.jsonl"
    async with FakeCloseServer(rate_limit=8, window=0.1, latency=0.01) as server:
        latest: list[ImportSummary] = []
        going = asyncio.Event()

        def progress(summary: ImportSummary) -> None:
            latest.append(summary)
            if summary.created >= 20:
                going.set()

        task = asyncio.ensure_future(run(server, path, journal, concurrency=20, progress=progress))
        await asyncio.wait_for(going.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # let the server finish what reached it

        sending = {r["row"] for r in records(journal) if r["state"] == "sending"}
        seen = {int(note.removeprefix("row-")) for note in sent_notes(server)}
        pulled = latest[-1].sent
        assert seen <= sending  # nothing reached the server without a sending record
        assert len(sending) - len(seen) <= 20  # only requests cut short by the stop
        assert pulled > len(sending)  # rows were taken from the file and still waiting...
        assert max(seen) < n  # ...and the stop came before the end
        killed_run = created_notes(server)
        states = last_states(journal)
        in_flight = {row for row, state in states.items() if state == "sending"}

        server.reset()
        summary = await run(server, path, journal, concurrency=20)
        assert sorted(line for line, _ in summary.unknown) == sorted(in_flight)
        assert summary.skipped == sum(1 for s in states.values() if s == "created")
        assert summary.created == n - summary.skipped - len(in_flight)
        rerun = created_notes(server)
        assert not set(rerun) & set(killed_run)  # nothing created twice
        assert set(rerun) | set(killed_run) >= {f"row-{i}" for i in range(1, n + 1)} - {
            f"row-{i}" for i in in_flight
        }
        assert max(rerun.values()) == 1


def test_unnamed_trailing_columns_from_excel_are_not_unknown(tmp_path: Path) -> None:
    from close_async._tools.preflight import PreflightError, check_input

    path = tmp_path / "excel.csv"
    path.write_text(f"lead_id,note,,\n{LEAD},a,,\n{LEAD},b,,\n")
    assert check_input(path) == 2
    path.write_text(f"lead_id,nots,,\n{LEAD},a,,\n")
    with pytest.raises(PreflightError, match="'nots': did you mean 'note'"):
        check_input(path)


async def test_with_fsync_no_create_arrives_before_its_sending_record_is_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--fsync`` is power-cut safe: the server never sees a create whose "sending" record a
    power cut could still lose (the journal's sync thread groups records; each request waits
    for the round that covers its record)."""
    import os
    import time

    from aiohttp import web

    journal_path = tmp_path / "j.jsonl"
    durable = [0]  # bytes of the journal known on disk
    real_sync = getattr(os, "fdatasync", os.fsync)

    def sync(fd: int) -> None:
        size = os.fstat(fd).st_size
        time.sleep(0.005)  # a disk that takes its time: requests must not overtake it
        real_sync(fd)
        durable[0] = size

    monkeypatch.setattr(os, "fdatasync", sync, raising=False)
    monkeypatch.setattr(os, "fsync", sync)
    early: list[str] = []

    async def create(request: web.Request) -> web.Response:
        note = (await request.json())["note"]
        with journal_path.open("rb") as f:
            on_disk = f.read(durable[0]).decode()
        line = int(note.split("-")[1]) + 1  # note n-i is on line i + 1 of the JSON Lines file
        if f'"row":{line},"state":"sending"' not in on_disk.replace(" ", ""):
            early.append(note)
        return web.json_response({"id": f"oppo_{note}", "note": note})

    app = web.Application()
    app.router.add_post("/api/v1/opportunity/", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rows = [{"lead_id": "lead_x", "note": f"n-{i}"} for i in range(40)]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    try:
        client = AsyncCloseClient("k", base_url=f"http://127.0.0.1:{port}/api/v1/")
        journal = Journal(journal_path, fsync=True, input=path)
        try:
            async with client:
                summary = await run_import(client, path, journal=journal, concurrency=10)
        finally:
            journal.close()
    finally:
        await runner.cleanup()
    assert summary.created == 40
    assert early == []
