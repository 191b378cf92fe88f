"""The pacer's promises as properties: a crowd of acquirers in front of a small fixed-window
server (tests/support/pacer.py's ``Simulation``), on the fake loop clock. Defects they found are
pinned as regression tests in test_pacer.py.
"""

from __future__ import annotations

import math

import pytest

from tests.support.clock import FakeClock
from tests.support.pacer import Latency, Simulation, exponential, fixed, uniform

# name: (window, uplink, downlink, in_order)
SATURATED: dict[str, tuple[float, Latency, Latency, bool]] = {
    "fixed-20ms": (1.0, fixed(0.01), fixed(0.01), True),
    "downlink-1..450ms": (2.0, fixed(0.01), uniform(0.001, 0.45), True),
    "both-jittered-in-order": (2.0, uniform(0.001, 0.05), uniform(0.001, 0.4), True),
}


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
@pytest.mark.parametrize("profile", list(SATURATED))
async def test_a_saturating_crowd_meets_no_429s_and_uses_the_window(
    clock: FakeClock, profile: str, seed: int
) -> None:
    limit, windows = 20, 8
    window, uplink, downlink, in_order = SATURATED[profile]
    sim = Simulation(limit, window, uplink, downlink, in_order=in_order)
    t0 = clock.now
    await sim.run(clock, workers=3 * limit, windows=windows, seed=seed)

    # (a) never more than the limit reaches the server in one of its windows
    assert sim.rejected == 0
    assert max(sim.arrivals.values()) <= limit
    # (b) and the limit is used: >= 90% of limit/window over the windows wholly inside the run
    assert sim.used(t0, windows) >= 0.9
    # (c) cold start: exactly one request before the first report, then the budget it reported
    first_report = sim.events.index("report")
    assert first_report == 1
    assert sim.events[first_report + 1 : first_report + limit] == ["send"] * (limit - 1)


# The two known limits of the previous design (its tolerance heuristic), once expected failures:
# both pass now that a window's end is an interval and the roll comes at its latest point.


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
async def test_requests_reordered_on_the_way_to_the_server_meet_no_429s(
    clock: FakeClock, seed: int
) -> None:
    # After a roll the budget is the limit less what is in flight, and reports only lower it:
    # whatever order requests reach the server in, no more than the limit is sent into the
    # window. (Only a report that replaces the budget trusts the send order: see the test
    # test_requests_reordered_by_a_long_tail_meet_no_429s.)
    sim = Simulation(20, 2.0, uniform(0.001, 0.05), uniform(0.001, 0.3), in_order=False)
    t0 = clock.now
    await sim.run(clock, workers=60, windows=8, seed=seed)
    assert sim.rejected == 0
    assert max(sim.arrivals.values()) <= sim.limit
    assert sim.used(t0, 8) >= 0.9


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed={s}")
async def test_latency_jitter_beyond_the_tolerance_meets_no_429s(
    clock: FakeClock, seed: int
) -> None:
    # A report answered late still overlaps the window's interval: the same window, no reset.
    sim = Simulation(20, 1.0, fixed(0.01), exponential(0.15))
    t0 = clock.now
    await sim.run(clock, workers=60, windows=8, seed=seed)
    assert sim.rejected == 0
    assert max(sim.arrivals.values()) <= sim.limit
    assert sim.used(t0, 8) >= 0.9


def thinking_crowd() -> Simulation:
    # Workers that pause between requests send all through the window, so responses of one
    # window still arrive after the client has rolled to the next: the late-report paths.
    return Simulation(
        20, 2.0, fixed(0.01), uniform(0.001, 0.45), think=lambda rnd: rnd.expovariate(1 / 0.5)
    )


async def test_out_of_order_responses_meet_no_429s_and_late_reports_never_raise_the_budget(
    clock: FakeClock,
) -> None:
    late = 0
    for seed in range(6):
        sim = thinking_crowd()
        await sim.run(clock, workers=8, windows=10, seed=seed)
        assert sim.rejected == 0
        assert max(sim.arrivals.values()) <= sim.limit
        assert sim.late_reports_that_raised_the_budget == 0
        late += sim.late_reports
    assert late > 0  # the path was exercised


async def test_out_of_order_responses_do_not_starve_the_next_window(clock: FakeClock) -> None:
    sent = allowed = 0
    fewest = math.inf
    for seed in range(6):
        sim = thinking_crowd()
        t0 = clock.now
        await sim.run(clock, workers=8, windows=10, seed=seed)
        full = sim.full_windows(t0, 10)
        fewest = min(fewest, *(sim.arrivals[i] for i in full))
        sent += sum(sim.arrivals[i] for i in full)
        allowed += sim.limit * len(full)
    assert fewest >= sim.limit // 2
    assert sent >= 0.9 * allowed


async def test_requests_reordered_by_a_long_tail_meet_no_429s(clock: FakeClock) -> None:
    rejected = 0
    for seed in range(10):
        sim = Simulation(20, 1.0, exponential(0.2), exponential(0.2), in_order=False)
        await sim.run(clock, workers=60, windows=10, seed=seed)
        rejected += sim.rejected
    assert rejected == 0
