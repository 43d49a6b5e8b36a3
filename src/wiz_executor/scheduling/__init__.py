"""The work models and the limits: how a chunk gets a worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..api import WorkModel
from ..processors import Processor
from ..runs import Chunk, Run, RunMap
from ..settings import Settings
from ._limits import WorkerLimiter
from ._model import WorkModelBase
from ._registry import WORK_MODELS, register
from ._runner import ChunkRunner
from ._threads import BlockingCall, ProcessorThreads
from .lifetime import LifetimeModel
from .pool import PoolModel
from .ray_model import RayModel

__all__ = [
    "WORK_MODELS",
    "BlockingCall",
    "ChunkRunner",
    "LifetimeModel",
    "PoolModel",
    "ProcessorThreads",
    "RayModel",
    "Scheduler",
    "WorkModelBase",
    "WorkerLimiter",
    "register",
]

log = logging.getLogger(__name__)


class Scheduler:
    """Hands each run's chunks to its work model, under the executor-wide worker limit."""

    def __init__(self, runs: RunMap, settings: Settings, threads: ProcessorThreads) -> None:
        self.runs = runs
        self.settings = settings
        self.limiter = WorkerLimiter(settings.max_workers, "executor")
        self.runner = ChunkRunner(
            runs,
            threads,
            settings.data_dir,
            settings.default_chunk_timeout,
            settings.allowed_roots,
            settings.limits(),
        )
        self.models: dict[WorkModel, WorkModelBase] = {
            name: cls.create(self.runner, self.limiter, settings)
            for name, cls in WORK_MODELS.items()
        }
        self._background: set[asyncio.Task[Any]] = set()
        self._releasing: dict[Run, asyncio.Task[Any]] = {}
        """Finished runs whose workers are being let go (what `reopen` waits for)."""
        runs.on_run_finished.append(self._run_finished)

    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        self.models[run.work_model].open(run, cls)

    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        self.models[run.work_model].submit(run, chunks)

    def waiting_reason(self, run: Run) -> str | None:
        """Why the run's chunks wait for something other than a free worker (its work
        model's answer: e.g. RAY's cluster unreachable), or None."""
        return self.models[run.work_model].waiting_reason(run)

    async def delete(self, run: Run) -> None:
        await self.models[run.work_model].release(run, cancel=True)

    async def released(self, run: Run) -> None:
        """Wait until a finished run's workers have been let go (at once if they have)."""
        task = self._releasing.get(run)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def reopen(self, run: Run, cls: type[Processor[Any]]) -> None:
        """Give a finished run, its workers let go (`released`), a work model's queue
        and workers again: its failures are being retried."""
        self.models[run.work_model].open(run, cls)

    def _run_finished(self, run: Run) -> None:
        # Called from inside a state change: the workers are let go from a task of our own.
        task = asyncio.get_running_loop().create_task(
            self.models[run.work_model].release(run, cancel=False)
        )
        self._background.add(task)
        self._releasing[run] = task

        def done(task: asyncio.Task[Any]) -> None:
            self._background.discard(task)
            if self._releasing.get(run) is task:
                del self._releasing[run]

        task.add_done_callback(done)

    async def shutdown(self, grace: float) -> None:
        """Stop taking work, give running chunks `grace` seconds, then cancel the rest.

        Every chunk ends SUCCEEDED or FAILED with a message; none is left RUNNING. With
        a durable journal, chunks that did not end are left unfinished instead (WAITING
        in the journal) and run after the restart.
        """
        left: list[tuple[Run, Chunk]] = []
        for model in self.models.values():
            left += await model.stop_dispatching()
        if not self.runs.durable:  # (durable: they wait in the journal for the restart)
            for run, chunk in left:
                self.runs.fail(run, chunk, "executor shut down before this chunk ran")
        running: set[asyncio.Task[Any]] = set()
        for model in self.models.values():
            running |= model.running_tasks()
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            if late:
                log.warning("cancelling %d chunks still running after %gs", len(late), grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for model in self.models.values():
            await model.close()
        await self.drain()

    async def drain(self) -> None:
        """Await the tasks that let finished runs' workers go, including those of runs
        that finish late in shutdown (on their last downstream delivery)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
