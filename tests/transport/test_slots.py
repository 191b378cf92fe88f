"""Slots: the client's gate on requests in flight, first come first served, cancel-safe."""

from __future__ import annotations

import asyncio

import pytest

from close_async._transport.slots import Slots


async def test_free_slots_are_taken_without_waiting() -> None:
    slots = Slots(2)
    assert slots.try_take()
    assert slots.try_take()
    assert not slots.try_take()
    assert slots.free == 0
    slots.give()
    assert slots.free == 1
    await slots.take()  # a free slot: returns at once
    assert slots.free == 0


async def test_waiters_are_served_in_arrival_order() -> None:
    slots = Slots(1)
    assert slots.try_take()
    served: list[int] = []

    async def holder(i: int) -> None:
        await slots.take()
        served.append(i)
        await asyncio.sleep(0)
        slots.give()

    tasks = [asyncio.create_task(holder(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert served == []
    slots.give()
    await asyncio.gather(*tasks)
    assert served == [0, 1, 2, 3, 4]
    assert slots.free == 1


async def test_a_free_slot_does_not_let_a_newcomer_overtake_waiters() -> None:
    slots = Slots(1)
    assert slots.try_take()
    waiter = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give()  # handed to the waiter, not returned to the pool
    assert slots.free == 0
    assert not slots.try_take()
    await waiter
    slots.give()
    assert slots.free == 1


async def test_at_most_size_holders_at_once() -> None:
    slots = Slots(3)
    holding = peak = 0

    async def hold() -> None:
        nonlocal holding, peak
        if not slots.try_take():
            await slots.take()
        try:
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0)
        finally:
            holding -= 1
            slots.give()

    await asyncio.gather(*(hold() for _ in range(50)))
    assert peak == 3
    assert slots.free == 3


async def test_a_waiter_cancelled_while_queued_is_skipped() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    slots.give()
    await second  # the slot went past the cancelled waiter
    assert slots.free == 0
    slots.give()
    assert slots.free == 1


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    slots = Slots(1)
    assert slots.try_take()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give()  # first's future now holds the slot...
    first.cancel()  # ...but it is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert slots.free == 0
    slots.give()
    assert slots.free == 1


async def test_repr_shows_live_state() -> None:
    slots = Slots(1)
    slots.try_take()
    waiters = [asyncio.create_task(slots.take()) for _ in range(2)]
    await asyncio.sleep(0)
    assert repr(slots) == "<Slots free=0/1 waiters=2>"
    waiters[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiters[0]
    assert repr(slots) == "<Slots free=0/1 waiters=1>"  # a cancelled waiter is not counted
    slots.give()
    await waiters[1]
    slots.give()
    assert repr(slots) == "<Slots free=1/1 waiters=0>"


@pytest.mark.parametrize("size", [0, -1], ids=["zero", "negative"])
def test_size_must_be_positive(size: int) -> None:
    with pytest.raises(ValueError, match="size must be at least 1"):
        Slots(size)


async def test_fail_raises_an_error_of_its_own_in_every_waiter_and_frees_no_slot() -> None:
    slots = Slots(1)
    slots.try_take()
    waiters = [asyncio.create_task(slots.take()) for _ in range(3)]
    await asyncio.sleep(0)
    slots.fail(lambda: RuntimeError("closed"))
    errors = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert len({id(e) for e in errors}) == 3  # one each: their tracebacks are their own
    assert slots.free == 0  # the holder still holds its slot
    slots.give()
    assert slots.free == 1


async def test_a_waiter_failed_then_cancelled_before_it_ran_gives_back_no_slot() -> None:
    # A TaskGroup cancelling its siblings when aclose()'s first CloseError surfaces.
    slots = Slots(1)
    assert slots.try_take()
    waiter = asyncio.get_running_loop().create_task(slots.take())
    await asyncio.sleep(0)  # queued
    slots.fail(lambda: RuntimeError("closed"))
    waiter.cancel()  # before it resumed
    await asyncio.gather(waiter, return_exceptions=True)
    slots.give()  # the holder is done
    assert slots.free == slots.size == 1
