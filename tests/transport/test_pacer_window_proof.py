"""A window that proves it ended rolls at once (pacer_shared's "Proof that a window ended"):
a report showing more left than one answered before its request left, or as much for a
success, in a fixed window of whole-second resets, for a key alone too; on the fake clock."""

from __future__ import annotations

import pytest

from close_async._transport.pacer import Window
from tests.support.clock import FakeClock
from tests.support.pacer import admissions, answer, whole


async def spent_most_of_window_0(clock: FakeClock) -> tuple[Window, float]:
    """A key alone whose cold start spent 4 of window 0's 10 at ``t0`` (6 left), window 0
    ending by ``t0 + 1`` as far as it knows (``reset=1``: anything up to a second)."""
    t0 = clock.now
    w = Window("g")
    answer(w, await w.acquire(), whole(9))
    tickets = [await w.acquire() for _ in range(3)]
    for remaining, ticket in zip((8, 7, 6), tickets, strict=True):
        answer(w, ticket, whole(remaining))
    assert w.available == 6
    return w, t0


@pytest.mark.parametrize("remaining", [9, 6], ids=["more left", "as much left"])
async def test_a_report_proving_a_new_window_rolls_a_key_alone_at_once(
    clock: FakeClock, remaining: int
) -> None:
    # The fan-out began 0.3 s before window 0's end: its burst crossed into window 1, whose
    # reports, overlapping window 0's bounds (reset=1), were taken for window 0's. The key
    # rolled at window 0's latest end, 0.7 s into window 1, and burst the whole limit into
    # what the rest of the burst had already spent: bench_fanout.py --models whole --offset
    # 0.85, 2-5% 429s and windows a quarter unused; two keys 5-13%.
    w, t0 = await spent_most_of_window_0(clock)
    await clock.advance(0.3)
    ticket = await w.acquire()  # sent after all of window 0's answers came back
    answer(w, ticket, whole(remaining))  # in window 0: 5 or less
    times = await admissions(w, clock, 10, t0 + 0.9)
    assert len(times) == remaining  # the new window's budget, now
    assert times == [pytest.approx(t0 + 0.3)] * remaining


async def test_an_error_reporting_as_much_left_proves_nothing(clock: FakeClock) -> None:
    # The server may not count a request it refused (a 404): as much left is then no proof.
    w, t0 = await spent_most_of_window_0(clock)
    await clock.advance(0.3)
    ticket = await w.acquire()
    w.release(ticket, whole(6), status=404, pause=None)
    times = await admissions(w, clock, 10, t0 + 0.9)
    assert len(times) == 5  # what window 0 has left, and no more before its end
