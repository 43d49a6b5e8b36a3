"""The work models and the limits: how a chunk gets a worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..api import WorkModel
from ..processors import Processor
from ..runs import Chunk, Run, RunMap
from ..settings import Settings
from ._limits import WorkerLimiter
from ._model import RunLoad, WorkModelBase
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
    "RunLoad",
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
        self._held: dict[Run, list[Chunk]] = {}
        """The chunks of runs paused or changing work model, held back from any model
        (WAITING, in order) until the run is resumed or its new model is open."""
        self._switching: dict[Run, asyncio.Task[None]] = {}
        """Runs changing work model: the task draining the old one (see `switch`)."""
        self._target: dict[Run, WorkModel] = {}
        self._closing = False
        for model in self.models.values():
            model.hold = self._hold
        runs.on_run_finished.append(self._run_finished)

    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        self.models[run.work_model].open(run, cls)

    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        held = self._held
        if held and run in held:  # paused, or changing work model
            held[run] += chunks
            return
        self.models[run.work_model].submit(run, chunks)

    def load(self, run: Run) -> RunLoad | None:
        """What `run`'s work model holds for it now (see `RunLoad`)."""
        return self.models[run.work_model].load(run)

    def waiting_reason(self, run: Run) -> str | None:
        """Why `run`'s work model's cluster cannot take its chunks now, if it says so."""
        return self.models[run.work_model].waiting_reason(run)

    def slot_holders(self) -> list[tuple[Run, int]]:
        """The runs holding executor-wide worker slots, and how many each, most first:
        read from the work models' state when asked, never kept up to date."""
        held: list[tuple[Run, int]] = []
        for model in self.models.values():
            for run in model.runs():
                load = model.load(run)
                if load is not None and load.workers > 0:
                    held.append((run, load.workers))
        held.sort(key=lambda item: -item[1])
        return held

    # -- live control ------------------------------------------------------------------
    # Through the work-model interface only (`withdraw`, `resize`, `release`, `open`,
    # `submit`), so any model registered in `models` can be paused, resized and
    # switched to or from. A model that cannot raises NotImplementedError, before
    # anything changed.

    def pause(self, run: Run) -> None:
        """Start none of `run`'s chunks from now on: those its model had queued come back
        here, and new ones stay here, until `resume`. Running chunks go on."""
        held = self._held.get(run)
        withdrawn = [] if run in self._switching else self.models[run.work_model].withdraw(run)
        if held is None:
            held = self._held[run] = []
        held += withdrawn

    def _hold(self, run: Run, chunks: list[Chunk]) -> bool:
        """Hold, first in line, chunks a model took back from a lost worker, if `run`'s
        chunks are held (paused, or changing model): they must not start either."""
        held = self._held.get(run)
        if held is None:
            return False
        held[:0] = chunks
        return True

    def resume(self, run: Run) -> None:
        """Hand the chunks held for `run` to its model again (unless it is changing
        model: the switch does that once the new model is open)."""
        if run in self._switching:
            return
        held = self._held.pop(run, None)
        if held:
            self.models[run.work_model].submit(run, held)

    def withdraw(self, run: Run) -> list[Chunk]:
        """Take back every chunk of `run` not started yet, from its work model and from
        what is held for it here (a cancel fails them: no worker, and no LIFETIME
        processor set-up, for a chunk that will not run). A model that cannot give
        chunks back keeps them; its workers skip those no longer WAITING."""
        held = self._held.get(run)
        taken: list[Chunk] = []
        if held:
            taken, self._held[run] = held, []  # (still held: a paused run stays paused)
        if run not in self._switching:
            with contextlib.suppress(NotImplementedError):
                taken += self.models[run.work_model].withdraw(run)
        return taken

    def resize(self, run: Run) -> None:
        """Apply `run.max_workers` to the run's workers, at once."""
        self.models[run.work_model].resize(run)

    def set_max_workers(self, total: int) -> None:
        """Change the executor-wide limit live, and every open run's share of it."""
        self.limiter.resize(total)
        for run in self.runs:
            if not run.finished and run.sched is not None:
                with contextlib.suppress(NotImplementedError):
                    self.models[run.work_model].resize(run)

    def switch(self, run: Run, target: WorkModel, cls: type[Processor[Any]]) -> None:
        """Move `run` to work model `target`: its queued chunks are held back, the old
        model's chunks in flight run to their end, then the new model opens and takes
        the held chunks (a task of ours does it; `switched` awaits it). No chunk is
        dropped or run twice: each is in exactly one place at every instant. Called
        again while a move is under way, the last target wins."""
        if run in self._switching:
            self._target[run] = target
            return
        if target is run.work_model:
            return
        withdrawn = self.models[run.work_model].withdraw(run)
        self._target[run] = target
        self._held.setdefault(run, []).extend(withdrawn)
        task = asyncio.get_running_loop().create_task(self._switch(run, cls))
        self._switching[run] = task

    def switching_to(self, run: Run) -> WorkModel | None:
        """The work model `run` is moving to, while a change of model drains the old one."""
        return self._target.get(run) if run in self._switching else None

    async def switched(self, run: Run) -> None:
        """Wait until a change of `run`'s work model is done (at once if none is)."""
        task = self._switching.get(run)
        if task is not None:
            await asyncio.shield(task)

    async def _switch(self, run: Run, cls: type[Processor[Any]]) -> None:
        try:
            old = self.models[run.work_model]
            # Shielded: a delete or shutdown that cancels this task must not cancel the
            # chunks still running (shutdown gives them their grace period).
            await asyncio.shield(old.release(run, cancel=False))
            if run.removed:
                return
            # Read now: a change while the old model drained wins (back to the old model
            # included: it is opened afresh).
            target = self._target[run]
            log.info(
                "run %s/%s moved from work model %s to %s",
                run.proc_id,
                run.run_id,
                run.work_model.value,
                target.value,
            )
            run.work_model = target
            if not run.finished:  # (finished: a retry opens it on the new model)
                self.models[target].open(run, cls)
        finally:
            del self._switching[run]
            self._target.pop(run, None)
            if not (self._closing or run.removed or run.paused):
                held = self._held.pop(run, None)
                if held:
                    self.models[run.work_model].submit(run, held)

    async def delete(self, run: Run) -> None:
        task = self._switching.get(run)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._held.pop(run, None)
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
        self._closing = True
        switching = list(self._switching.values())
        for task in switching:
            task.cancel()
        await asyncio.gather(*switching, return_exceptions=True)
        left: list[tuple[Run, Chunk]] = [
            (run, chunk) for run, held in self._held.items() for chunk in held
        ]
        self._held.clear()
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
