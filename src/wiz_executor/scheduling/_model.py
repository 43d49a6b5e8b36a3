"""The work-model interface: how a run's chunks get workers.

It is kept small on purpose: later models (worker processes, a distributed engine)
implement the same calls and the rest of the executor does not change.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Self

from ..api import WorkModel
from ..processors import Processor
from ..runs import Chunk, Run
from ..settings import Settings
from ._limits import WorkerLimiter
from ._runner import ChunkRunner


class RunLoad(NamedTuple):
    """What a work model holds for one run at this instant: the facts a run's `Waiting`
    reason is computed from (`waiting.py`), read only when someone asks."""

    queued: int
    """WAITING chunks the model has been given and not started yet."""
    busy: int
    """The run's chunks running now."""
    workers: int
    """Executor-wide worker slots the run's workers hold."""
    limit: int
    """Workers the run may have (its MaxWorkers, within the executor's limit)."""
    setting_up: int = 0
    """Workers (LIFETIME: chunks' fresh instances) still in their processor's `setup`."""
    setup_since: float | None = None
    """When (`time.time()`) the oldest of those setups began."""
    wants_slots: int = 0
    """The run's workers waiting for an executor-wide slot."""


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
        self.hold: Callable[[Run, list[Chunk]], bool] | None = None
        """Offers the scheduler chunks a model takes back to run again (a lost worker's):
        True when it holds them, as it holds every chunk of a paused run or of one
        moving to another model, until `submit` gives them back; False: the model
        queues them itself. Set by the scheduler."""

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

    # -- live control: what pausing a run, changing its limits or its model uses ------
    # Not abstract, so that a model without them still runs; the scheduler answers a
    # live change of a run on such a model with a Conflict (409) saying so.

    def withdraw(self, run: Run) -> list[Chunk]:
        """Start no more of `run`'s chunks: hand back those queued and not started (in
        order); chunks running go on to their end. The run stays open on this model:
        `submit` starts chunks again."""
        raise NotImplementedError(f"{type(self).__name__} cannot hold a run's chunks back")

    def resize(self, run: Run) -> None:
        """Apply `run.max_workers`, or a changed executor-wide limit, at once: raised,
        workers start for waiting chunks now; lowered, running chunks finish and no
        worker above the new limit takes another."""
        raise NotImplementedError(f"{type(self).__name__} cannot change a run's workers live")

    async def close(self) -> None:
        """Let every run's workers end once their current chunk is done."""
        for run in list(self._runs):
            await self.release(run, cancel=False)

    def runs(self) -> list[Run]:
        """The runs the model has workers or a queue for."""
        return list(self._runs)

    def load(self, run: Run) -> RunLoad | None:
        """What the model holds for `run` now; None when it cannot tell (then only the
        executor-wide reasons, and `waiting_reason`, explain the run's waiting chunks)."""
        return None

    def waiting_reason(self, run: Run) -> str | None:
        """Why the model's cluster cannot take `run`'s chunks now (unreachable, lacking
        resources), for a person; None when nothing of the kind holds them. Reported as
        the run's `Waiting` reason CLUSTER; a model without a cluster keeps this None."""
        return None

    @staticmethod
    def run_limit(run: Run) -> WorkerLimiter:
        return WorkerLimiter(run.max_workers, f"run {run.run_id}")
