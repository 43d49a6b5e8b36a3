"""`MemoryStore`: the journal kept in this process's memory.

The store of `--ephemeral` executors and the tests' stub (as dramatiq's stub broker sits
beside its real brokers): the same semantics as `SqliteStore`, record for record, so the
tests run every behaviour against both. Nothing survives the process, so an append is
"durable" at once and its future is already resolved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from msgspec import structs

from ..api import DataChunkState, DataFormat
from ..errors import ChunkNotFound, RunNotFound
from ._base import (
    Attempt,
    JournalStore,
    PendingDelivery,
    Recovered,
    StoredChunk,
    StoredRun,
    check_limit,
)
from ._records import (
    ChunkFailed,
    ChunkRequeued,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    DeliveryDone,
    DeliveryFailed,
    DeliveryPending,
    InputClosed,
    Record,
    RunConfigured,
    RunControlled,
    RunDeleted,
    RunFinished,
    RunRetried,
    SettingChanged,
)


class _Run:
    __slots__ = ("chunks", "deliveries", "header", "outputs")

    def __init__(self, header: StoredRun) -> None:
        self.header = header
        self.chunks: dict[str, StoredChunk] = {}  # in arrival order
        self.outputs: dict[str, StoredChunk] = {}
        self.deliveries: dict[tuple[str, int], None] = {}  # pending, in journal order


class MemoryStore(JournalStore):
    """The journal in a few dicts; appends resolve immediately."""

    durable = False

    def __init__(self) -> None:
        self._runs: dict[tuple[str, str], _Run] = {}
        self._settings: dict[str, Any] = {}
        self._closed = False
        self._apply: dict[type[Any], Callable[[Any], None]] = {
            RunConfigured: self._configured,
            ChunksAccepted: self._accepted,
            ChunkStarted: self._started,
            ChunkSucceeded: self._succeeded,
            ChunkFailed: self._failed,
            ChunkRequeued: self._requeued,
            DeliveryPending: self._delivery_pending,
            DeliveryDone: self._delivery_done,
            DeliveryFailed: self._delivery_failed,
            InputClosed: self._input_closed,
            RunFinished: self._run_finished,
            RunRetried: self._run_retried,
            RunDeleted: self._run_deleted,
            RunControlled: self._controlled,
            SettingChanged: self._setting,
        }

    # -- life --------------------------------------------------------------------------

    def open(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True

    def load(self) -> Recovered:
        runs = []
        for run in self._runs.values():
            header = structs.replace(run.header, counts=_counts(run))
            if header.state is None:
                header.chunks = [_copy(c) for c in run.chunks.values()]
            header.deliveries = [PendingDelivery(c, d) for c, d in run.deliveries]
            runs.append(header)
        return Recovered(runs, dict(self._settings))

    # -- writes ------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> asyncio.Future[None]:
        self.append_nowait(records)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    def append_nowait(self, records: Sequence[Record]) -> None:
        if self._closed:
            raise RuntimeError("the journal is closed")
        apply = self._apply
        for record in records:
            apply[type(record)](record)

    async def purge(self, finished_before: float) -> list[tuple[str, str]]:
        gone = [
            key
            for key, run in self._runs.items()
            if run.header.finished is not None and run.header.finished < finished_before
        ]
        for key in gone:
            del self._runs[key]
        return gone

    def _configured(self, r: RunConfigured) -> None:
        key = (r.proc_id, r.run_id)
        if key not in self._runs:
            self._runs[key] = _Run(StoredRun(r.proc_id, r.run_id, r.configuration, r.created))

    def _accepted(self, r: ChunksAccepted) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is None:
            return
        for c in r.chunks:
            if c.chunk_id in run.chunks:
                continue
            chunk = StoredChunk(
                c.chunk_id,
                c.output_id,
                c.in_format,
                c.raw_data,
                c.fs_driver,
                c.fs_location,
                c.generated_output_id,
                r.time,
            )
            run.chunks[c.chunk_id] = chunk
            run.outputs[c.output_id] = chunk

    def _chunk(self, proc_id: str, run_id: str, chunk_id: str) -> StoredChunk | None:
        run = self._runs.get((proc_id, run_id))
        return None if run is None else run.chunks.get(chunk_id)

    def _started(self, r: ChunkStarted) -> None:
        chunk = self._chunk(r.proc_id, r.run_id, r.chunk_id)
        if chunk is None:
            return
        chunk.state = DataChunkState.RUNNING
        chunk.attempts.append(
            Attempt(r.attempt, r.time, host=r.host, pid=r.pid, worker=r.worker, node=r.node)
        )

    def _end_attempt(
        self,
        chunk: StoredChunk,
        number: int,
        time: float,
        outcome: DataChunkState,
        error: str | None,
    ) -> None:
        if number and chunk.attempts:
            last = chunk.attempts[-1]
            last.ended, last.outcome, last.error = time, outcome, error

    def _succeeded(self, r: ChunkSucceeded) -> None:
        chunk = self._chunk(r.proc_id, r.run_id, r.chunk_id)
        if chunk is None:
            return
        chunk.state = DataChunkState.SUCCEEDED
        chunk.out_format, chunk.out_raw = r.out_format, r.out_raw
        chunk.out_driver, chunk.out_location = r.out_driver, r.out_location
        chunk.error = None
        self._end_attempt(chunk, r.attempt, r.time, DataChunkState.SUCCEEDED, None)

    def _failed(self, r: ChunkFailed) -> None:
        chunk = self._chunk(r.proc_id, r.run_id, r.chunk_id)
        if chunk is None:
            return
        chunk.state = DataChunkState.FAILED
        chunk.error = r.error
        self._end_attempt(chunk, r.attempt, r.time, DataChunkState.FAILED, r.error)

    def _requeued(self, r: ChunkRequeued) -> None:
        chunk = self._chunk(r.proc_id, r.run_id, r.chunk_id)
        if chunk is None:
            return
        chunk.state = DataChunkState.WAITING
        if chunk.attempts:
            chunk.attempts[-1].ended, chunk.attempts[-1].error = r.time, r.error

    def _delivery_pending(self, r: DeliveryPending) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is not None and r.chunk_id in run.chunks:
            run.deliveries[r.chunk_id, r.downstream] = None

    def _delivery_done(self, r: DeliveryDone) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is not None:
            run.deliveries.pop((r.chunk_id, r.downstream), None)

    def _delivery_failed(self, r: DeliveryFailed) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is None:
            return
        run.deliveries.pop((r.chunk_id, r.downstream), None)
        chunk = run.chunks.get(r.chunk_id)
        if chunk is not None:
            chunk.delivery_error = r.error

    def _input_closed(self, r: InputClosed) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is not None:
            run.header.input_closed = True

    def _run_retried(self, r: RunRetried) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is None:
            return
        run.header.state, run.header.finished = None, None
        for chunk_id in r.chunk_ids:
            chunk = run.chunks.get(chunk_id)
            if chunk is not None:
                chunk.state = DataChunkState.WAITING
                chunk.error = chunk.delivery_error = None
                chunk.out_format, chunk.out_raw = DataFormat.RAW, None
                chunk.out_driver = chunk.out_location = ""
        for chunk_id in r.redelivered:
            chunk = run.chunks.get(chunk_id)
            if chunk is not None:
                chunk.delivery_error = None

    def _run_finished(self, r: RunFinished) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is not None:
            run.header.state, run.header.finished = r.state, r.time

    def _run_deleted(self, r: RunDeleted) -> None:
        self._runs.pop((r.proc_id, r.run_id), None)

    def _controlled(self, r: RunControlled) -> None:
        run = self._runs.get((r.proc_id, r.run_id))
        if run is not None:
            run.header.control = dict(r.control)

    def _setting(self, r: SettingChanged) -> None:
        self._settings[r.key] = r.value

    # -- reads -------------------------------------------------------------------------

    def _run(self, proc_id: str, run_id: str) -> _Run:
        run = self._runs.get((proc_id, run_id))
        if run is None:
            raise RunNotFound(proc_id, run_id)
        return run

    async def chunks(
        self,
        proc_id: str,
        run_id: str,
        *,
        state: DataChunkState | None = None,
        after: str | None = None,
        limit: int = 1000,
    ) -> list[StoredChunk]:
        check_limit(limit)
        run = self._run(proc_id, run_id)
        items = iter(run.chunks.values())
        if after is not None:
            if after not in run.chunks:
                raise ChunkNotFound(run_id, after, "input")
            for chunk in items:
                if chunk.chunk_id == after:
                    break
        page: list[StoredChunk] = []
        for chunk in items:
            if len(page) >= limit:
                break
            if state is None or chunk.state is state:
                page.append(_copy(chunk))
        return page

    async def chunk(self, proc_id: str, run_id: str, chunk_id: str) -> StoredChunk:
        chunk = self._run(proc_id, run_id).chunks.get(chunk_id)
        if chunk is None:
            raise ChunkNotFound(run_id, chunk_id, "input")
        return _copy(chunk)

    async def output(self, proc_id: str, run_id: str, output_id: str) -> StoredChunk:
        chunk = self._run(proc_id, run_id).outputs.get(output_id)
        if chunk is None:
            raise ChunkNotFound(run_id, output_id, "output")
        return _copy(chunk)


def _copy(chunk: StoredChunk) -> StoredChunk:
    """A copy the caller may change without changing the store."""
    return structs.replace(chunk, attempts=[structs.replace(a) for a in chunk.attempts])


def _counts(run: _Run) -> dict[DataChunkState, int]:
    counts = dict.fromkeys(DataChunkState, 0)
    for chunk in run.chunks.values():
        counts[chunk.state] += 1
    return counts
