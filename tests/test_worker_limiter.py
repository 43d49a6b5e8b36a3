"""WorkerLimiter: slots handed over in arrival order, and no slot lost to cancellation."""

from __future__ import annotations

import asyncio

import pytest

from conftest import wait_for
from wiz_executor.scheduling import WorkerLimiter


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WorkerLimiter(0, "run r")


def test_try_acquire_takes_free_slots_only() -> None:
    limiter = WorkerLimiter(2)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert (limiter.in_use, limiter.peak) == (2, 2)
    limiter.release()
    assert limiter.in_use == 1
    assert limiter.try_acquire()
    assert limiter.peak == 2
    assert repr(limiter) == "<WorkerLimiter workers 2/2 peak=2>"


async def acquirers(
    limiter: WorkerLimiter, names: list[str], order: list[str]
) -> list[asyncio.Task[None]]:
    """Start one task per name that acquires a slot and records when it got it; return
    once every one of them is queued (so their arrival order is `names`)."""

    async def take(name: str) -> None:
        await limiter.acquire()
        order.append(name)

    tasks = []
    for i, name in enumerate(names, 1):
        tasks.append(asyncio.create_task(take(name)))
        await wait_for(lambda n=i: limiter.waiting == n, what=f"{name} to queue")
    return tasks


async def test_slots_are_handed_over_in_arrival_order() -> None:
    limiter = WorkerLimiter(1)
    await limiter.acquire()
    order: list[str] = []
    tasks = await acquirers(limiter, ["a", "b", "c"], order)
    # A newcomer cannot jump the queue, even at the moment a slot is handed over.
    limiter.release()
    assert not limiter.try_acquire()
    await wait_for(lambda: order == ["a"])
    assert limiter.in_use == 1  # handed over, never freed in between
    limiter.release()
    await wait_for(lambda: order == ["a", "b"])
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]
    assert (limiter.in_use, limiter.peak, limiter.waiting) == (1, 1, 0)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    limiter = WorkerLimiter(1)
    await limiter.acquire()
    order: list[str] = []
    a, b = await acquirers(limiter, ["a", "b"], order)
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    assert limiter.waiting == 1
    limiter.release()
    await b
    assert order == ["b"]
    assert limiter.in_use == 1


async def test_a_waiter_cancelled_as_the_slot_arrives_passes_it_on() -> None:
    """The slot was handed to `a` in the same instant `a` was cancelled: `a` must give
    it to the next waiter rather than keep it or lose it."""
    limiter = WorkerLimiter(1)
    await limiter.acquire()
    order: list[str] = []
    a, b = await acquirers(limiter, ["a", "b"], order)
    limiter.release()  # a's future now holds the slot, but a has not resumed yet
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    await b
    assert order == ["b"]
    assert limiter.in_use == 1
    limiter.release()
    assert limiter.in_use == 0


async def test_a_release_between_cancel_and_wakeup_loses_nothing() -> None:
    """`a` is cancelled, and before it wakes up a slot is released: the release skips
    a's cancelled turn and serves `b`; `a` then leaves quietly."""
    limiter = WorkerLimiter(1)
    await limiter.acquire()
    order: list[str] = []
    a, b = await acquirers(limiter, ["a", "b"], order)
    a.cancel()
    limiter.release()
    with pytest.raises(asyncio.CancelledError):
        await a
    await b
    assert order == ["b"]
    assert (limiter.in_use, limiter.waiting) == (1, 0)
    limiter.release()
    assert limiter.in_use == 0


async def test_a_waiter_reclaims_the_slot_of_a_parked_idle_holder() -> None:
    """An idle holder (a POOL worker between chunks) parks a future: the first waiter
    asks it, and only it, to give its slot up; no more holders are asked than wait."""
    limiter = WorkerLimiter(2)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    loop = asyncio.get_running_loop()
    first: asyncio.Future[bool | None] = loop.create_future()
    second: asyncio.Future[bool | None] = loop.create_future()
    limiter.park(first)
    limiter.park(second)
    order: list[str] = []
    (a,) = await acquirers(limiter, ["a"], order)
    assert first.result() is True
    assert not second.done()
    assert (limiter.reclaiming, limiter.others_waiting()) == (1, False)
    limiter.unpark(first)
    limiter.release_given_up()  # the holder tore its instance down: the slot goes to a
    await a
    assert order == ["a"]
    assert (limiter.in_use, limiter.reclaiming, limiter.peak) == (2, 0, 2)


async def test_a_parked_holder_woken_for_work_is_not_reclaimed() -> None:
    limiter = WorkerLimiter(1)
    assert limiter.try_acquire()
    loop = asyncio.get_running_loop()
    busy: asyncio.Future[bool | None] = loop.create_future()
    limiter.park(busy)
    busy.set_result(None)  # a chunk came for it first
    order: list[str] = []
    (a,) = await acquirers(limiter, ["a"], order)
    assert limiter.reclaiming == 0
    assert limiter.others_waiting()  # so the holder gives its slot up after its chunk
    assert not limiter.others_waiting(own=1)  # unless the waiter is of its own run
    limiter.giving_up()
    assert not limiter.others_waiting()
    limiter.release_given_up()
    await a
    assert order == ["a"]
    assert (limiter.in_use, limiter.reclaiming) == (1, 0)
