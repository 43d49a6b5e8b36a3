"""POOL: long-lived processor instances, each set up once, pulling chunks from a queue.

A run gets up to `MaxWorkers` workers (never more than the executor-wide limit), started
as chunks arrive, so an idle run costs nothing until its first chunk. An instance holds
what the executor-wide limit is for (memory, GPU, connections) from the start of its
`setup` to the end of its `teardown`, so a worker takes a slot of the executor-wide
limiter *before* `setup` and keeps it until its instance is torn down: live instances,
across runs and work models, never exceed `--max-workers`. (Taking the slot per chunk
let every run set up `MaxWorkers` instances outside the limit.)

A slot held by an idle instance must not keep other runs waiting, so a worker gives its
slot up (tears its instance down and ends) when someone else waits for one and
- it is idle (its run's queue is empty): at once; or
- it has held its slot for its share of time (`HOLD`, or ten times its `setup` if that
  is longer, so set-up stays a small part of the work): after its current chunk.
A run whose worker left while chunks wait starts a new one, which waits for a slot in
FIFO order with everyone else. Without contention nothing of this costs anything per
chunk but a length check.

A worker whose `setup` fails fails one waiting chunk with that message and ends; the
next chunk gets a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from time import monotonic, time
from typing import Any

from ..api import WorkModel
from ..processors import Processor
from ..runs import Chunk, Run
from ._model import RunLoad, WorkModelBase
from ._registry import register
from ._runner import (
    PROCESSOR_ERRORS,
    discard_instance,
    new_instance,
    setup_failure,
)


class _ChunkQueue:
    """A run's waiting chunks, and the idle workers waiting for one.

    `asyncio.Queue` without what the pool does not use (bounds, `join`): a worker takes
    a chunk that is there with `pop`, without awaiting, and awaits a `waiter` only when
    the queue is empty. (Its put and get were a fifth of POOL's cost per chunk.) The
    waiter is also what an idle worker parks with the executor-wide limiter, so one
    await wakes it for a chunk or for giving its slot up.
    """

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[Chunk] = deque()
        self._waiters: deque[asyncio.Future[bool | None]] = deque()

    def put_nowait(self, chunk: Chunk) -> None:
        self._items.append(chunk)
        self._wake_one()

    def put_one(self, chunk: Chunk) -> None:
        """`put_nowait`, with the wake-up inline (the common case of a single chunk)."""
        self._items.append(chunk)
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def pop(self) -> Chunk | None:
        """The next chunk, or None when there is none."""
        return self._items.popleft() if self._items else None

    def get_nowait(self) -> Chunk:
        return self._items.popleft()

    def waiter(self) -> asyncio.Future[bool | None]:
        """A future set (to None) when a chunk is put; the caller pops it then, if it is
        still there. Pass it to `forget` once it is no longer awaited."""
        waiter: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def forget(self, waiter: asyncio.Future[bool | None], cancelled: bool) -> None:
        woken = waiter.done() and not waiter.cancelled() and waiter.result() is None
        if not woken:  # (a waiter woken for a chunk has left the deque already)
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
        elif cancelled and self._items:
            self._wake_one()  # woken for a chunk just as it was cancelled: pass the turn on

    def take_all(self) -> list[Chunk]:
        """Every chunk queued, in order; the queue is empty after."""
        items = list(self._items)
        self._items.clear()
        return items

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _RunPool:
    __slots__ = (
        "busy",
        "closing",
        "cls",
        "limit",
        "queue",
        "retire",
        "running",
        "setups",
        "starting",
        "workers",
    )

    def __init__(self, cls: type[Processor[Any]], limit: int) -> None:
        self.cls = cls
        self.limit = limit
        """Workers the run may have: its MaxWorkers, at most the executor-wide limit."""
        self.queue = _ChunkQueue()
        self.workers: set[asyncio.Task[None]] = set()
        self.running: set[asyncio.Task[None]] = set()
        """Workers in the middle of a chunk."""
        self.starting: set[asyncio.Task[None]] = set()
        """Workers waiting for an executor-wide slot before they set up."""
        self.setups: dict[asyncio.Task[None], float] = {}
        """Workers in their instance's `setup`, and when (`time()`) it began: once per
        worker, never per chunk, so the `Waiting` reason SETUP can say since when."""
        self.busy = 0
        self.closing = False
        self.retire = 0
        """Workers to end after their current chunk: the run's limit was lowered below
        the workers it had (idle ones are cancelled at once instead)."""


TURN = 0.001
"""Seconds POOL's workers may keep the event loop before they let it serve others.

A worker takes the next queued chunk without awaiting, and a processor that never
awaits (noop) would then run a whole backlog without the loop polling its sockets once:
a burst of queued chunks held every request for as long as it took. Once a turn is
used up, each worker yields before its next chunk; the first one back, if no other has
started a turn since it yielded, starts the next one, so the loop polls its sockets at
least once per turn, however many workers there are."""


HOLD = 0.1
"""Seconds a worker keeps its slot, while others wait for one, before giving it up."""

SETUP_SHARE = 10
"""...or this many times what its `setup` took, if that is longer."""


@register(WorkModel.POOL)
class PoolModel(WorkModelBase):
    _turn_ends = 0.0
    _turn = 0

    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        run.sched = _RunPool(cls, min(run.max_workers, self.limiter.total))
        self._runs.add(run)

    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        pool: _RunPool = run.sched
        queue = pool.queue
        if len(chunks) == 1:  # (one AddData of one chunk: one call less)
            queue.put_one(chunks[0])
        else:
            for chunk in chunks:
                queue.put_nowait(chunk)
        if self.closing or len(pool.workers) >= pool.limit:
            return  # (the common case under load: every worker is already there)
        idle = len(pool.workers) - pool.busy
        while pool.queue.qsize() > idle and len(pool.workers) < pool.limit:
            task = asyncio.create_task(self._work(run, pool))
            pool.workers.add(task)
            task.add_done_callback(pool.workers.discard)
            idle += 1

    async def _work(self, run: Run, pool: _RunPool) -> None:
        current = asyncio.current_task()
        assert current is not None
        limiter = self.limiter
        if not limiter.try_acquire():
            pool.starting.add(current)
            try:
                await limiter.acquire()
            finally:
                pool.starting.discard(current)
        gave_up = [False]  # set once the slot is promised to a waiter (even if cancelled)
        try:
            if not (self.closing or pool.closing or pool.queue.empty()):
                await self._serve(run, pool, current, gave_up)
        finally:
            if gave_up[0]:
                limiter.release_given_up()
            else:
                limiter.release()
            # Leave the pool before asking for a replacement, or `submit` would count
            # this ending worker as idle and start none while chunks wait.
            pool.workers.discard(current)
        if not (self.closing or pool.closing):
            self.submit(run, [])

    async def _serve(
        self, run: Run, pool: _RunPool, current: asyncio.Task[None], gave_up: list[bool]
    ) -> None:
        """Set an instance up and run chunks on it until it must go (with the slot held)."""
        started = monotonic()
        pool.setups[current] = time()
        try:
            instance = await new_instance(pool.cls, run.processor_config)
        except PROCESSOR_ERRORS as exc:
            chunk = pool.queue.pop()
            if chunk is not None:
                self.runner.runs.fail(run, chunk, setup_failure(exc))
            return
        finally:
            del pool.setups[current]
        now = monotonic()
        hold_until = now + max(HOLD, SETUP_SHARE * (now - started))
        limiter = self.limiter
        queue = pool.queue
        usable = True
        try:
            while usable and not (self.closing or pool.closing):
                if monotonic() >= self._turn_ends:
                    await self._yield_turn()
                    continue  # the pool may have closed meanwhile
                chunk = queue.pop()
                if chunk is None:
                    chunk = await self._idle(pool, gave_up)
                    if chunk is None:
                        return
                pool.busy += 1
                pool.running.add(current)
                try:
                    usable = await self.runner.execute(run, chunk, instance, current)
                finally:
                    pool.running.discard(current)
                    pool.busy -= 1
                if pool.retire or limiter.in_use > limiter.total:
                    # A limit was lowered (`resize`): this worker is one too many.
                    if pool.retire:
                        pool.retire -= 1
                    return
                if (
                    limiter.waiting
                    and monotonic() >= hold_until
                    and limiter.others_waiting(len(pool.starting))
                ):
                    limiter.giving_up()  # its share is used: the slot goes to a waiter
                    gave_up[0] = True
                    return
        finally:
            await discard_instance(instance)
        # (If a blocking call timed out it may still hold the instance: this worker
        # ends, and a fresh one, with a fresh instance, takes the next chunks.)

    async def _idle(self, pool: _RunPool, gave_up: list[bool]) -> Chunk | None:
        """Wait for a chunk, the run's queue being empty; None when the worker must end
        instead, its slot wanted by someone else.

        The chunk is taken as soon as the worker is woken, without yielding its turn
        first: the loop has just run other things while it waited."""
        limiter, queue = self.limiter, pool.queue
        while True:
            for task in pool.starting:  # this run's workers waiting for a slot: not needed
                task.cancel()
            if limiter.others_waiting(len(pool.starting)):
                limiter.giving_up()
                gave_up[0] = True
                return None
            wake = queue.waiter()
            limiter.park(wake)
            try:
                reclaimed = await wake
            except asyncio.CancelledError:
                if wake.done() and not wake.cancelled() and wake.result():
                    gave_up[0] = True  # asked to give the slot up just as it was cancelled
                queue.forget(wake, cancelled=True)
                raise
            finally:
                limiter.unpark(wake)
            if reclaimed:  # (woken for a chunk, it has left the waiters already)
                queue.forget(wake, cancelled=False)
                gave_up[0] = True
                return None
            chunk = queue.pop()
            if chunk is not None:  # (else another worker took it first)
                return chunk

    async def _yield_turn(self) -> None:
        turn = self._turn
        await asyncio.sleep(0)  # to the end of the loop's queue: its sockets are polled
        if self._turn == turn:
            self._turn += 1
            # (monotonic, not loop.time(): uvloop's stands still within a pass)
            self._turn_ends = monotonic() + TURN

    def load(self, run: Run) -> RunLoad | None:
        pool: _RunPool | None = run.sched
        if pool is None:
            return None
        setups = pool.setups
        return RunLoad(
            queued=pool.queue.qsize(),
            busy=pool.busy,
            workers=len(pool.workers) - len(pool.starting),
            limit=pool.limit,
            setting_up=len(setups),
            setup_since=min(setups.values()) if setups else None,
            wants_slots=len(pool.starting),
        )

    async def release(self, run: Run, cancel: bool) -> None:
        pool: _RunPool | None = run.sched
        if pool is None:
            return
        pool.closing = True
        workers = list(pool.workers)
        for task in workers:
            if cancel or task not in pool.running:
                task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._runs.discard(run)

    def withdraw(self, run: Run) -> list[Chunk]:
        pool: _RunPool | None = run.sched
        if pool is None:
            return []
        # Idle workers stay, parked: they give their slots up when somebody waits.
        return pool.queue.take_all()

    def resize(self, run: Run) -> None:
        pool: _RunPool | None = run.sched
        if pool is None or pool.closing:
            return
        pool.limit = min(run.max_workers, self.limiter.total)
        live = [task for task in pool.workers if not task.cancelling()]
        excess = len(live) - pool.limit
        for task in live:
            if excess <= 0:
                break
            if task not in pool.running:  # idle, or not set up yet: no chunk in hand
                task.cancel()
                # (It does not ask for a successor itself when cancelled: do it here.)
                task.add_done_callback(lambda _: self._refill(run, pool))
                excess -= 1
        pool.retire = max(excess, 0)
        if excess < 0:
            self.submit(run, [])  # raised: workers for the waiting chunks, now

    def _refill(self, run: Run, pool: _RunPool) -> None:
        if not (self.closing or pool.closing):
            self.submit(run, [])

    def running_tasks(self) -> set[asyncio.Task[Any]]:
        return {task for run in self._runs for task in run.sched.running}

    async def stop_dispatching(self) -> list[tuple[Run, Chunk]]:
        self.closing = True
        idle = []
        left: list[tuple[Run, Chunk]] = []
        for run in self._runs:
            pool: _RunPool = run.sched
            for task in pool.workers:
                if task not in pool.running:
                    task.cancel()
                    idle.append(task)
            while not pool.queue.empty():
                left.append((run, pool.queue.get_nowait()))
        await asyncio.gather(*idle, return_exceptions=True)
        return left
