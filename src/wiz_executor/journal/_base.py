"""The journal store interface, and what it hands back: stored runs and chunks.

One small interface (`JournalStore`) with two implementations, as dramatiq has brokers
beside its stub broker: `MemoryStore` (`--ephemeral`, and the tests' stub) and
`SqliteStore` (the durable default). The run map feeds a store a change log (the records
of `_records`); the store never decides anything, it keeps what it is told and hands it
back, so the run map stays the one source of truth.

The life of a store: `open()` (create, check and migrate; raises `JournalError`), then
`load()` once to rebuild the run map, then `append` from the event loop while the
executor serves, the reads for finished runs, `purge` and `delete_run`, and `close()`.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import msgspec

from ..api import DataChunkState, DataFormat, State
from ..errors import InvalidInput
from ._records import Record, RunDeleted

CHUNK_STATES: tuple[DataChunkState, ...] = tuple(DataChunkState)
"""Chunk states by their code - 1 (the store keeps codes, 1 WAITING .. 4 FAILED)."""
STATE_CODE: dict[DataChunkState, int] = {s: i + 1 for i, s in enumerate(CHUNK_STATES)}


class Attempt(msgspec.Struct, gc=False, array_like=True):
    """One run of a chunk by a worker: the chunk's `Attempts` history entry.

    `outcome` is None while it runs, and stays None for an attempt the process died in
    (recovery finds it so; the chunk runs again as a new attempt). Array-like, because
    that is how the SQLite store keeps it: `[number, started, ended, outcome, error, host,
    pid, worker]`, decoded straight into this struct during recovery.
    """

    number: int
    started: float
    ended: float | None = None
    outcome: DataChunkState | None = None
    error: str | None = None
    host: str = ""
    pid: int = 0
    worker: str = ""
    node: str = ""
    """The Ray node ID it ran on (RAY runs; empty for the others)."""


class StoredChunk(msgspec.Struct, gc=False):
    """An input chunk as the journal holds it: its input, state, output and history.

    Field names are those of `runs.Chunk`, so rebuilding one is a field-by-field copy.
    """

    chunk_id: str
    output_id: str
    in_format: DataFormat
    raw_data: Any
    fs_driver: str
    fs_location: str
    generated_output_id: bool
    accepted: float
    state: DataChunkState = DataChunkState.WAITING
    out_format: DataFormat = DataFormat.RAW
    out_raw: Any = None
    out_driver: str = ""
    out_location: str = ""
    error: str | None = None
    delivery_error: str | None = None
    attempts: list[Attempt] = msgspec.field(default_factory=list)


class PendingDelivery(msgspec.Struct, frozen=True, gc=False):
    """An output journalled for delivery and not yet delivered or given up: resend it."""

    chunk_id: str
    downstream: int


class StoredRun(msgspec.Struct, gc=False):
    """A run as `load()` finds it.

    `state` is the run's final state once finished (SUCCEEDED or ERRORED), else None: the
    run map works out an unfinished run's state from its chunks. An unfinished run comes
    with all its `chunks`, in arrival order; a finished one with `chunks` None (read them
    from the store with `chunks()` when asked: finished work stays on disk, not in RAM).
    """

    proc_id: str
    run_id: str
    configuration: Any
    created: float
    input_closed: bool = False
    state: State | None = None
    finished: float | None = None
    counts: dict[DataChunkState, int] = msgspec.field(default_factory=dict)
    chunks: list[StoredChunk] | None = None
    deliveries: list[PendingDelivery] = msgspec.field(default_factory=list)
    control: dict[str, Any] | None = None
    """Its live changes (`RunControlled`), applied over `configuration`; None if none."""


class Recovered(msgspec.Struct, gc=False):
    """Everything `load()` found: the runs in the order they were configured, and the
    executor-wide settings changed at run time."""

    runs: list[StoredRun]
    settings: dict[str, Any]


def check_limit(limit: int) -> None:
    """A page of fewer than one chunk is a mistake (SQLite would read -1 as "no limit")."""
    if limit < 1:
        raise InvalidInput(f"a page limit must be at least 1, not {limit}")


class JournalStore(ABC):
    """Where the run map's change log is kept (see the module docstring for the life)."""

    durable = True
    """Whether what it keeps survives the process: if not, nobody need await an append
    (the executor answers without waiting, and recovers nothing at start)."""

    @abstractmethod
    def open(self) -> None:
        """Create the store, or check and migrate an existing one (`JournalError`)."""

    @abstractmethod
    def load(self) -> Recovered:
        """Everything needed to rebuild the run map, read in one pass.

        Blocking (it reads the whole journal): call it before serving, or in a thread.
        """

    @abstractmethod
    def append(self, records: Sequence[Record]) -> asyncio.Future[None]:
        """Journal `records` (in order, after everything appended before); the future
        resolves once they are durable. Call on the event loop; it never blocks on disk.

        Awaiting is optional: `append_nowait` is the same without a future, for changes
        nobody waits on. Cancelling the future does not unjournal the records.
        """

    @abstractmethod
    def append_nowait(self, records: Sequence[Record]) -> None:
        """Journal `records` without a future to wait on (a later `flush` covers them)."""

    def flush(self) -> asyncio.Future[None]:
        """A future resolved once everything appended so far is durable."""
        return self.append(())

    @abstractmethod
    async def chunks(
        self,
        proc_id: str,
        run_id: str,
        *,
        state: DataChunkState | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[StoredChunk]:
        """A page of a run's chunks in arrival order: those in `state` (any if None),
        after the chunk `after` (from the start if None), at most `limit`.

        Raises `RunNotFound` for an unknown run, `ChunkNotFound` for an unknown `after`,
        and `InvalidInput` for a `limit` below 1.
        """

    @abstractmethod
    async def chunk(self, proc_id: str, run_id: str, chunk_id: str) -> StoredChunk:
        """One chunk by its input ChunkID (`RunNotFound`, `ChunkNotFound`)."""

    @abstractmethod
    async def output(self, proc_id: str, run_id: str, output_id: str) -> StoredChunk:
        """One chunk by its output's ChunkID (`RunNotFound`, `ChunkNotFound`)."""

    @abstractmethod
    async def purge(self, finished_before: float) -> list[tuple[str, str]]:
        """Forget the runs that finished before `finished_before` (--keep-finished), with
        everything of theirs; return their (proc_id, run_id) for the run map to drop."""

    async def delete_run(self, proc_id: str, run_id: str) -> None:
        """Forget a run and everything of it (a `RunDeleted` record, awaited)."""
        await self.append((RunDeleted(proc_id, run_id),))

    @abstractmethod
    async def close(self) -> None:
        """Make everything appended durable, then release the store. Idempotent."""

    async def __aenter__(self) -> JournalStore:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
