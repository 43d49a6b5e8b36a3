"""The work-model interface: how a run's chunks get workers.

It is kept small on purpose: later models (worker processes, a distributed engine)
implement the same calls and the rest of the executor does not change.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

from ..api import WorkModel
from ..processors import Processor
from ..runs import Chunk, Run
from ..settings import Settings
from ._limits import WorkerLimiter
from ._runner import ChunkRunner


class WorkModelBase(ABC):
    """Owns the workers of the runs given to it, within the executor-wide limiter."""

    name: ClassVar[WorkModel]
    """Its wire name (set by `_registry.register`)."""

    @classmethod
    def create(cls, runner: ChunkRunner, limiter: WorkerLimiter, settings: Settings) -> Self:
        """The scheduler's way to make one: a model that needs the executor's settings
        (e.g. where its cluster is) overrides this; making one must cost nothing until
        a run uses it."""
        return cls(runner, limiter)

    def __init__(self, runner: ChunkRunner, limiter: WorkerLimiter) -> None:
        self.runner = runner
        self.limiter = limiter
        self.closing = False
        self._runs: set[Run] = set()

    @abstractmethod
    def submit(self, run: Run, chunks: list[Chunk]) -> None:
        """Queue accepted WAITING chunks; never blocks."""

    @abstractmethod
    async def release(self, run: Run, cancel: bool) -> None:
        """The run needs no more workers: let them end (the run finished) or cancel its
        work in flight and drop what is still queued (the run was deleted)."""

    @abstractmethod
    def running_tasks(self) -> set[asyncio.Task[Any]]:
        """Tasks currently processing a chunk, for shutdown to wait on."""

    @abstractmethod
    async def stop_dispatching(self) -> list[tuple[Run, Chunk]]:
        """Stop giving chunks to workers; return the chunks still queued."""

    @abstractmethod
    def open(self, run: Run, cls: type[Processor[Any]]) -> None:
        """Take charge of a newly configured run of processor `cls`."""

    def waiting_reason(self, run: Run) -> str | None:
        """Why `run`'s chunks wait for something other than a free worker (e.g. its
        cluster is unreachable), or None: what the run's `Waiting` shows."""
        return None

    async def close(self) -> None:
        """Let every run's workers end once their current chunk is done."""
        for run in list(self._runs):
            await self.release(run, cancel=False)

    @staticmethod
    def run_limit(run: Run) -> WorkerLimiter:
        return WorkerLimiter(run.max_workers, f"run {run.run_id}")
