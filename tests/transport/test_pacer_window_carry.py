"""A whole-second window's latest end, carried a window on at each roll (pacer_window's
"Whole-second resets"): it must not drift later window by window; on the fake clock."""

from __future__ import annotations

import asyncio

import pytest

from close_async._transport.pacer import Window
from tests.support.clock import FakeClock
from tests.support.pacer import Simulation, uniform


@pytest.mark.parametrize("seed", range(3), ids=lambda s: f"seed={s}")
async def test_a_whole_second_window_s_latest_end_does_not_drift_later_roll_by_roll(
    clock: FakeClock, seed: int
) -> None:
    # Each roll carried the passed window's latest end a second on plus the rounding margin
    # again, and only for reports answered before the passed window's earliest end plus a
    # second (never, for a budget sent at the roll): 2-3 ms later a window, 0.2 s over 60.
    # A key that spreads its budget towards that end left the last of it for after the real
    # one (the ``shared`` fan-out: 25 of 200 unused in its last window).
    loop = asyncio.get_running_loop()
    lateness: list[float] = []

    def observe(pacer: Window) -> None:
        if pacer.reset_at is not None:
            lateness.append(pacer.reset_at - sim.end_of(loop.time()))

    sim = Simulation(
        limit=20,
        window=1.0,
        uplink=uniform(0.0005, 0.002),
        downlink=uniform(0.0005, 0.002),
        whole_seconds=True,
        observe=observe,
    )
    await sim.run(clock, workers=40, windows=60, seed=seed)
    assert len(lateness) > 1000
    early, late = lateness[:100], lateness[-100:]
    assert min(lateness) >= 0  # never rolls early
    assert max(late) <= max(early) + 0.005  # within a round trip of where it began
