"""POOL: long-lived processor instances, each set up once, pulling chunks from a queue.

A run gets up to `MaxWorkers` workers, started as chunks arrive (so an idle run costs
nothing until its first chunk). Each worker takes a slot of the executor-wide limiter for
every chunk it processes, so both limits hold at every instant. A worker whose `setup`
fails fails the chunk it took with that message and ends; the next chunk gets a new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import monotonic
from typing import Any

from ..processors import Processor
from ..runs import WAITING, Chunk, Run
from ._model import WorkModelBase
from ._runner import (
    PROCESSOR_ERRORS,
    cancelled_message,
    discard_instance,
    new_instance,
    setup_failure,
)


class _ChunkQueue:
    """A run's waiting chunks, and the idle workers waiting for one.

    `asyncio.Queue` without what the pool does not use (bounds, `join`): a worker takes
    a chunk that is there with `pop`, without awaiting, and awaits `get` only when the
    queue is empty. (Its put and get were a fifth of POOL's cost per chunk.)
    """

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[Chunk] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def put_nowait(self, chunk: Chunk) -> None:
        self._items.append(chunk)
        self._wake_one()

    def pop(self) -> Chunk | None:
        """The next chunk, or None when there is none."""
        return self._items.popleft() if self._items else None

    def get_nowait(self) -> Chunk:
        return self._items.popleft()

    async def get(self) -> Chunk:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if not waiter.done():
                    self._waiters.remove(waiter)
                elif self._items:
                    self._wake_one()  # woken just as it was cancelled: pass the turn on
                raise
        return self._items.popleft()

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
    __slots__ = ("busy", "closing", "cls", "queue", "running", "workers")

    def __init__(self, cls: type[Processor[Any]]) -> None:
        self.cls = cls
        self.queue = _ChunkQueue()
        self.workers: set[asyncio.Task[None]] = set()
        self.running: set[asyncio.Task[None]] = set()
        """Workers in the middle of a chunk."""
        self.busy = 0
        self.closing = False


TURN = 0.001
"""Seconds POOL's workers may keep the event loop before they let it serve others.

A worker takes the next queued chunk without awaiting, and a processor that never
awaits (noop) would then run a whole backlog without the loop polling its sockets once:
a burst of queued chunks held every request for as long as it took. Once a turn is
used up, each worker yields before its next chunk; the first one back, if no other has
started a turn since it yielded, starts the next one, so the loop polls its sockets at
least once per turn, however many workers there are."""


class PoolModel(WorkModelBase):
    _turn_ends = 0.0
    _turn = 0

    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        run.sched = _RunPool(cls)
        self._runs.add(run)

    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        pool: _RunPool = run.sched
        put = pool.queue.put_nowait
        for chunk in chunks:
            put(chunk)
        if self.closing or len(pool.workers) >= run.max_workers:
            return  # (the common case under load: every worker is already there)
        idle = len(pool.workers) - pool.busy
        while pool.queue.qsize() > idle and len(pool.workers) < run.max_workers:
            task = asyncio.create_task(self._work(run, pool))
            pool.workers.add(task)
            task.add_done_callback(pool.workers.discard)
            idle += 1

    async def _work(self, run: Run, pool: _RunPool) -> None:
        runs = self.runner.runs
        try:
            instance = await new_instance(pool.cls, run.processor_config)
        except PROCESSOR_ERRORS as exc:
            chunk = await pool.queue.get()
            runs.fail(run, chunk, setup_failure(exc))
            # Leave the pool before asking for a replacement, or `submit` would count
            # this ending worker as idle and start none while chunks wait.
            pool.workers.discard(asyncio.current_task())
            if not (self.closing or pool.closing):
                self.submit(run, [])
            return
        current = asyncio.current_task()
        assert current is not None
        usable = True
        try:
            queue = pool.queue
            while usable and not (self.closing or pool.closing):
                if monotonic() >= self._turn_ends:
                    await self._yield_turn()
                    continue  # the pool may have closed meanwhile
                taken = queue.pop()
                chunk = taken if taken is not None else await queue.get()
                pool.busy += 1
                try:
                    if not self.limiter.try_acquire():
                        await self.limiter.acquire()
                    pool.running.add(current)
                    try:
                        usable = await self.runner.execute(run, chunk, instance)
                    finally:
                        pool.running.discard(current)
                        self.limiter.release()
                except asyncio.CancelledError:
                    if chunk.state is WAITING:  # cancelled while waiting for a slot
                        runs.fail(run, chunk, cancelled_message(run, chunk))
                    raise
                finally:
                    pool.busy -= 1
        finally:
            await discard_instance(instance)
        if not usable:
            # A blocking call timed out and may still hold the instance: leave the pool
            # and let a fresh worker, with a fresh instance, take the next chunks.
            pool.workers.discard(current)
            if not (self.closing or pool.closing):
                self.submit(run, [])

    async def _yield_turn(self) -> None:
        turn = self._turn
        await asyncio.sleep(0)  # to the end of the loop's queue: its sockets are polled
        if self._turn == turn:
            self._turn += 1
            # (monotonic, not loop.time(): uvloop's stands still within a pass)
            self._turn_ends = monotonic() + TURN

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
