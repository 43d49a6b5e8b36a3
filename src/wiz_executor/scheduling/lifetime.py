"""LIFETIME: a fresh processor instance per chunk, started when a worker slot is free.

The per-run and executor-wide limiters are both taken before a chunk's task starts and
released in its done-callback (as arq does), so neither limit is ever exceeded. While
slots are free, submitting a chunk starts it at once with no extra task; once a limit is
reached, one dispatcher task per run waits for slots, in FIFO order across runs.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import time
from typing import Any

from ..api import WorkModel
from ..processors import Processor
from ..runs import RUNNING, WAITING, Chunk, Run
from ._limits import WorkerLimiter
from ._model import RunLoad, WorkModelBase
from ._registry import register
from ._runner import (
    PROCESSOR_ERRORS,
    cancelled,
    discard_instance,
    new_instance,
    setup_failure,
)


class _RunWork:
    __slots__ = ("cls", "dispatcher", "limiter", "queue", "setups", "tasks")

    def __init__(self, cls: type[Processor[Any]], limiter: WorkerLimiter) -> None:
        self.cls = cls
        self.limiter = limiter
        self.queue: deque[Chunk] = deque()
        self.dispatcher: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.setups: dict[asyncio.Task[Any] | None, float] = {}
        """Chunks' fresh instances in their `setup` (processors that have one), and
        when (`time()`) it began, so the `Waiting` reason SETUP can say since when."""


@register(WorkModel.LIFETIME)
class LifetimeModel(WorkModelBase):
    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        run.sched = _RunWork(cls, self.run_limit(run))
        self._runs.add(run)

    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        work: _RunWork = run.sched
        if self.closing:
            work.queue.extend(chunks)
            return
        run_slots, slots = work.limiter, self.limiter
        for i, chunk in enumerate(chunks):
            if work.dispatcher is None and run_slots.try_acquire():
                if slots.try_acquire():
                    self._start(run, work, chunk)
                    continue
                run_slots.release()
            work.queue.extend(chunks[i:])
            if work.dispatcher is None:
                work.dispatcher = asyncio.create_task(self._dispatch(run, work))
            return

    async def _dispatch(self, run: Run, work: _RunWork) -> None:
        try:
            while work.queue:
                await work.limiter.acquire()
                try:
                    await self.limiter.acquire()
                except BaseException:
                    work.limiter.release()
                    raise
                self._start(run, work, work.queue.popleft())
        finally:
            if work.dispatcher is asyncio.current_task():  # (else `withdraw` let it go)
                work.dispatcher = None

    def _start(self, run: Run, work: _RunWork, chunk: Chunk) -> None:
        task = asyncio.create_task(self._process(run, work.cls, chunk))
        work.tasks.add(task)
        task.add_done_callback(lambda t: self._finished(work, t))

    def _finished(self, work: _RunWork, task: asyncio.Task[None]) -> None:
        work.tasks.discard(task)
        work.limiter.release()
        self.limiter.release()

    async def _process(self, run: Run, cls: type[Processor[Any]], chunk: Chunk) -> None:
        if chunk.state is not WAITING:  # cancelled since it was queued: no set-up for it
            return
        setups = None
        try:
            if cls.setup is Processor.setup:  # no setup to wait for: no coroutine for it
                instance = cls(run.processor_config)
            else:
                setups = run.sched.setups
                setups[asyncio.current_task()] = time()
                instance = await new_instance(cls, run.processor_config)
        except PROCESSOR_ERRORS as exc:
            self.runner.runs.fail(run, chunk, setup_failure(exc))
            return
        except asyncio.CancelledError:  # deleted or shut down during setup
            cancelled(self.runner.runs, run, chunk)
            raise
        finally:
            if setups is not None:
                setups.pop(asyncio.current_task(), None)
        try:
            await self.runner.execute(run, chunk, instance)
        finally:
            if cls.teardown is not Processor.teardown:  # (else nothing to await)
                await discard_instance(instance)

    def load(self, run: Run) -> RunLoad | None:
        work: _RunWork | None = run.sched
        if work is None:
            return None
        started = len(work.tasks)
        busy = min(run.counts[RUNNING], started)
        setups = work.setups
        return RunLoad(
            # (a chunk's task holds it WAITING until its instance is set up)
            # (at most its WAITING chunks: the queue may hold ones a cancel failed)
            queued=min(len(work.queue) + started - busy, run.counts[WAITING]),
            busy=busy,
            workers=started,
            limit=work.limiter.total,
            setting_up=len(setups),
            setup_since=min(setups.values()) if setups else None,
            # the dispatcher holds a run slot while it waits for an executor-wide one
            wants_slots=max(work.limiter.in_use - started, 0),
        )

    async def release(self, run: Run, cancel: bool) -> None:
        work: _RunWork | None = run.sched
        if work is None:
            return
        if cancel:
            work.queue.clear()
        pending = [t for t in (work.dispatcher, *work.tasks) if t is not None]
        if cancel:
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._runs.discard(run)

    def withdraw(self, run: Run) -> list[Chunk]:
        work: _RunWork | None = run.sched
        if work is None:
            return []
        chunks = list(work.queue)
        work.queue.clear()
        if work.dispatcher is not None:
            # It gives back a slot it holds when cancelled; a new one starts with the
            # next `submit`.
            work.dispatcher.cancel()
            work.dispatcher = None
        return chunks

    def resize(self, run: Run) -> None:
        work: _RunWork | None = run.sched
        if work is not None:
            # Raised: the dispatcher, waiting for a slot, gets the new ones at once.
            # Lowered: chunks running end, and slots are not handed on meanwhile.
            work.limiter.resize(run.max_workers)

    def running_tasks(self) -> set[asyncio.Task[Any]]:
        return {task for run in self._runs for task in run.sched.tasks}

    async def stop_dispatching(self) -> list[tuple[Run, Chunk]]:
        self.closing = True
        left: list[tuple[Run, Chunk]] = []
        dispatchers = []
        for run in self._runs:
            work: _RunWork = run.sched
            if work.dispatcher is not None:
                work.dispatcher.cancel()
                dispatchers.append(work.dispatcher)
            left.extend((run, chunk) for chunk in work.queue)
            work.queue.clear()
        await asyncio.gather(*dispatchers, return_exceptions=True)
        return left
