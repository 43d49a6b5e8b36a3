"""The run map: processor ID → run ID → run, each run with its chunks and counters.

This is the only place run and chunk state changes. It is confined to the event loop's
thread and no method awaits, so each call is atomic with respect to every other: many
concurrent HTTP clients can configure, add and read at once without a lock, and a read
always sees a consistent snapshot. Work that happens on other threads (sync processors)
reports back through the loop before it touches anything here.

Each input chunk is one `Chunk` record that also holds its output: the output mirrors the
input's state by construction, and a retained chunk costs one object, not two.

The run map feeds the journal (`journal.JournalStore`): each transition builds its record
and appends it without awaiting, so the journal is a change log of this map, never a
second source of truth. Only the appends someone must wait for before answering (an
accepted batch, a recovered chunk's start) hand back a future, and only when the store
is durable.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator
from time import time
from typing import Any

import msgspec
from pydantic import BaseModel

from .api import Configuration, DataChunkState, DataFormat, State, WorkModel
from .errors import ChunkNotFound, Conflict, RunNotFound
from .journal import (
    AcceptedChunk,
    Attempt,
    ChunkFailed,
    ChunkRequeued,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    DeliveryDone,
    DeliveryFailed,
    DeliveryPending,
    InputClosed,
    JournalStore,
    Record,
    RunConfigured,
    RunControlled,
    RunDeleted,
    RunFinished,
    RunRetried,
    StoredChunk,
)

WAITING, RUNNING, SUCCEEDED, FAILED = (
    DataChunkState.WAITING,
    DataChunkState.RUNNING,
    DataChunkState.SUCCEEDED,
    DataChunkState.FAILED,
)
FINISHED = frozenset({SUCCEEDED, FAILED})
_TAKING = frozenset({State.CONFIGURED, State.RUNNING})
"""Run states in which a run may take new chunks (unless its input is closed)."""
CANCELLED = "cancelled before it ran (the run was cancelled)"
"""The error of a chunk a cancel failed while it waited (`RunMap.cancel`)."""
HOST = socket.gethostname()
PID = os.getpid()
"""Where this process runs chunks, for their attempt history (read once)."""


class Chunk(msgspec.Struct, gc=False, eq=False, repr_omit_defaults=True):
    """One input chunk and the output it produces.

    A struct the garbage collector does not track: a chunk refers to JSON values and
    strings only, never to its run or another chunk, so it cannot be part of a
    reference cycle. Tracked, the chunks a run retains made every full collection walk
    them all, pausing the loop for tens of milliseconds under load (the AddData p99);
    untracked, they cost the collector nothing, and are cheaper to make and to keep.
    """

    id: str
    _output_id: str | None
    """Its output's ID (see `output_id`); None for the one the executor names after the
    chunk, `<ChunkID>-out`, which is then not kept as a string of its own."""
    in_format: DataFormat
    raw_data: Any
    fs_driver: str
    fs_location: str
    generated_output_id: bool
    state: DataChunkState = WAITING
    out_format: DataFormat = DataFormat.RAW
    out_raw: Any = None
    out_driver: str = ""
    out_location: str = ""
    error: str | None = None
    delivery_error: str | None = None
    progress: tuple[int, int | None] | None = None
    seq: int = 0
    """Its position in its run's arrival order (`Run.order`), set when it is accepted:
    how a page of GetData that starts after this chunk finds where to start."""
    _attempts: tuple[Attempt, ...] | None = None
    """Its attempts as structs (see `attempts`), when they are not the one kept inline."""
    _started: float = 0.0
    """The start (`time()`) of its first attempt, kept inline; 0.0 when there is none
    inline (it never started, or its attempts are in `_attempts`)."""
    _ended: float | None = None
    """The inline first attempt's end, once it ended."""
    _worker: str = ""
    """The inline first attempt's worker."""

    @property
    def output_id(self) -> str:
        """Its output's ID: the AssociatedChunkID, or the one the executor named.

        A chunk sent without an AssociatedChunkID (most are) has `<ChunkID>-out`, which
        the run map keeps as None (`RunMap.accept`) and builds when asked: a string and
        an entry of `Run.outputs` less per retained chunk (~100 B). `Run.output` and
        `Run.output_taken` find such outputs through the chunk's own ID."""
        out = self._output_id
        return self.id + GENERATED if out is None else out

    @output_id.setter
    def output_id(self, value: str) -> None:
        self._output_id = value

    @property
    def attempts(self) -> tuple[Attempt, ...] | None:
        """Every run of it so far, oldest first (the `Attempts` extension); None until
        it first starts, so a waiting chunk costs nothing for it.

        Nearly every chunk runs once, here, and ends SUCCEEDED or FAILED: that first
        attempt is kept inline (its start, end and worker; the rest follows from the
        chunk: number 1, this host and process, the chunk's outcome and error), and the
        tuple is built when asked for. A struct and a tuple per chunk cost ~140 B of a
        retained chunk and a constructor call per start. Whatever else happens to an
        attempt (a second one, an interruption, a requeue, a retry, recovery) first
        turns it into a struct (`RunMap` through `held_attempts`)."""
        if self._started:
            return (self._first(),)
        return self._attempts

    @property
    def attempt(self) -> int:
        """The number of its latest attempt (0 before it first starts)."""
        if self._started:
            return 1
        attempts = self._attempts
        return 0 if attempts is None else attempts[-1].number

    def held_attempts(self) -> tuple[Attempt, ...] | None:
        """Its attempts as structs it keeps (the inline one moved into a struct), so
        that one of them can be changed in place."""
        if self._started:
            self._attempts = (self._first(),)
            self._started, self._ended, self._worker = 0.0, None, ""
        return self._attempts

    def _first(self) -> Attempt:
        ended, state = self._ended, self.state
        # Inline, an ended attempt is the one that ended the chunk (see `attempts`).
        outcome = state if ended is not None and state in FINISHED else None
        error = self.error if outcome is FAILED else None
        return Attempt(1, self._started, ended, outcome, error, HOST, PID, self._worker)

    def same_input(self, other: Chunk) -> bool:
        """Whether a resent chunk is the one already held (State and Type never count)."""
        return (
            self.in_format is other.in_format
            and same_json(self.raw_data, other.raw_data)
            and self.fs_driver == other.fs_driver
            and self.fs_location == other.fs_location
            and (other.generated_output_id or self.output_id == other.output_id)
        )


_NUMBERS = (int, float)
GENERATED = "-out"
"""What the executor appends to a ChunkID to name its output (no AssociatedChunkID)."""


def same_json(a: Any, b: Any) -> bool:
    """Whether two decoded JSON values are the same JSON: `==` without Python's
    `True == 1` (and `0 == False`), but with 1 and 1.0 alike, as Go reads both."""
    kind = type(a)
    if kind is not type(b):
        return kind in _NUMBERS and type(b) in _NUMBERS and a == b
    if kind is dict:
        return a.keys() == b.keys() and all(same_json(v, b[k]) for k, v in a.items())
    if kind is list:
        return len(a) == len(b) and all(map(same_json, a, b))
    return bool(a == b)


class Run:
    """A configured run of one processor: its configuration, chunks and counters."""

    __slots__ = (
        "cancelled",
        "cancelled_chunks",
        "chunks",
        "configuration",
        "control",
        "counts",
        "deliveries_failed",
        "deliveries_pending",
        "done",
        "ended",
        "expected",
        "finished_totals",
        "history",
        "input_closed",
        "max_workers",
        "order",
        "outputs",
        "paused",
        "proc_id",
        "processor_config",
        "removed",
        "requested",
        "run_id",
        "sched",
        "started",
        "state",
        "stored",
        "timeout",
        "undelivered",
        "waiting_since",
        "warned",
        "warnings",
        "work_model",
    )

    def __init__(
        self,
        proc_id: str,
        run_id: str,
        configuration: Configuration,
        processor_config: BaseModel,
        max_workers: int,
        work_model: WorkModel,
        timeout: float | None,
        warnings: list[str] | None = None,
    ) -> None:
        self.proc_id = proc_id
        self.run_id = run_id
        self.configuration = configuration
        self.requested = configuration
        """The configuration as Configure gave it: what a repeated Configure is compared
        with (a run changed live since still takes its original Configure as a no-op)."""
        self.control: dict[str, Any] | None = None
        """Its live changes (`RunMap.control`), as journalled; None while it has none."""
        self.cancelled = False
        """Cancelled (`RunMap.cancel`): it ends ERRORED whatever its chunks did, until a
        retry takes chunks up again. Journalled in `control` (`"Cancelled"`)."""
        self.cancelled_chunks = 0
        """Its FAILED chunks a cancel failed unrun (`CANCELLED`): finished, but not
        processed, so the rates (`history`) leave them out."""
        self.paused = False
        """Paused (`RunMap.pause`): no chunk of it starts, and it does not finish, until
        it is resumed. Read by the scheduler and by whoever explains why chunks wait."""
        self.expected = configuration.ExpectedData.NumChunks
        """Chunks the run will receive (0: not known in advance); NumChunks never
        changes, so this is read once rather than through the model per chunk."""
        self.processor_config = processor_config
        self.max_workers = max_workers
        self.work_model = work_model
        self.timeout = timeout
        self.warnings: list[str] = warnings or []
        """What Configure ignored or changed (unknown fields, a clamped MaxWorkers),
        shown as the Run's `Warnings` for as long as the run is kept."""
        self.warned: set[str] = set()
        """AddData warnings already logged for this run: each is logged once, not once
        per request (every answer still carries its own)."""
        self.state = State.CONFIGURED
        self.finished_totals: dict[DataChunkState, int] = {}
        """The run map's count of its processor's finished chunks, shared by its runs."""
        self.chunks: dict[str, Chunk] = {}
        self.outputs: dict[str, Chunk] = {}
        """Its chunks by output ID, for the IDs kept as strings: not those the executor
        named `<ChunkID>-out` (see `Chunk.output_id`). `output` finds any."""
        self.order: list[Chunk] = []
        """The chunks in arrival order (as `chunks` iterates), indexable: a page of
        GetData is a slice of it, found in O(page) through each chunk's `seq`."""
        self.counts = dict.fromkeys(DataChunkState, 0)
        self.input_closed = False
        self.deliveries_pending = 0
        self.deliveries_failed = 0
        self.undelivered: dict[str, tuple[int, ...]] = {}
        """Input ChunkID → the downstream locations (indices into DownstreamLocations)
        its output could not be delivered to: what `RunMap.retry` sends again."""
        self.done = asyncio.Event()
        self.removed = False
        self.stored = False
        """Its chunks are in the journal only (`RunMap.store`): a finished run, read
        from the store when asked; `chunks`, `outputs` and `order` are empty meanwhile."""
        self.sched: Any = None
        """Owned by the run's work model (its queue and workers); opaque here."""
        self.started = time()
        """When it was configured (the journal's time, for a recovered run)."""
        self.ended: float | None = None
        """When it last reached SUCCEEDED or ERRORED; None while it is not finished."""
        self.history: Any = None
        """Its recent counts (`history.SampleRing`), sampled on a timer by the
        executor; None until the first sample. Freed with the run."""
        self.waiting_since = 0.0
        """When (`time()`) its chunks last went from none waiting to some: the `Since`
        of its `Waiting` reason. Set per batch accepted onto an empty queue, never per
        chunk; not reset when the queue drains (nobody asks why nothing waits)."""

    @property
    def finished(self) -> bool:
        return self.state is State.SUCCEEDED or self.state is State.ERRORED

    @property
    def accepted(self) -> int:
        """Input chunks it holds, in memory or (a stored run) in the journal only."""
        return sum(self.counts.values()) if self.stored else len(self.chunks)

    def chunk(self, chunk_id: str) -> Chunk:
        try:
            return self.chunks[chunk_id]
        except KeyError:
            raise ChunkNotFound(self.run_id, chunk_id, "input") from None

    def output(self, chunk_id: str) -> Chunk:
        held = self.outputs.get(chunk_id) or self._named_output(chunk_id)
        if held is None:
            raise ChunkNotFound(self.run_id, chunk_id, "output")
        return held

    def output_taken(self, output_id: str) -> bool:
        """Whether one of its chunks has this output ID."""
        return output_id in self.outputs or self._named_output(output_id) is not None

    def _named_output(self, output_id: str) -> Chunk | None:
        # An output the executor named `<ChunkID>-out` is found through its chunk.
        if output_id.endswith(GENERATED):
            held = self.chunks.get(output_id[: -len(GENERATED)])
            if held is not None and held._output_id is None:
                return held
        return None


Listener = Callable[[Run, Chunk | None], None]
"""Told of every state change: (run, None) for the run's own state, (run, chunk) for a chunk."""


class RunMap:
    """Every run of every processor, and the state transitions allowed on them."""

    def __init__(self, journal: JournalStore | None = None) -> None:
        self.journal: JournalStore | None = None
        self.chunk_journal: JournalStore | None = None
        """The journal when it is durable, for the records of chunks (see `attach`)."""
        self.durable = False
        """Whether the journal survives the process (then unfinished work is left in it
        at shutdown, to run after the restart, rather than failed)."""
        self.recovered: set[int] = set()
        """`id()`s of chunks recovered unfinished that have not started again: their
        start is awaited durable before they run (see `start`)."""
        self.attach(journal)
        self._runs: dict[str, dict[str, Run]] = {}
        self.listeners: list[Listener] = []
        self.on_run_started: list[Callable[[Run], None]] = []
        """Told when a run takes its first chunks (CONFIGURED → RUNNING)."""
        self.on_run_finished: list[Callable[[Run], None]] = []
        self.on_chunk_failed: list[Callable[[Run, Chunk], None]] = []
        """Told when a chunk fails. Failures are rare; nothing is told of a success, so
        the success path costs nothing more."""
        self.on_run_removed: list[Callable[[Run], None]] = []
        """Told when a run is deleted (its streams end; it will have no more state)."""
        self.counts = dict.fromkeys(DataChunkState, 0)
        """Input chunks by state across all runs (WAITING is the queue depth)."""
        self.finished_totals: dict[str, dict[DataChunkState, int]] = {}
        """Per processor, chunks that ever ended SUCCEEDED or FAILED (deleted runs' too):
        counted here, in the transition itself, so metrics need no listener per chunk."""

    def attach(self, journal: JournalStore | None) -> None:
        """Feed `journal` from now on (the executor attaches its store as it starts).

        A store that is not durable (`--ephemeral`'s in-memory one) gets the runs'
        records only (configured, finished, deleted: what `--keep-finished` purges by),
        not a record per chunk: nothing ever reads chunks back from it, and a second copy
        of every chunk cost memory and a third of the chunk's CPU."""
        self.journal = journal
        self.durable = journal is not None and journal.durable
        self.chunk_journal = journal if self.durable else None

    def flush(self) -> asyncio.Future[None] | None:
        """A future resolved once every change so far is durable; None if nothing need
        be awaited (no durable journal)."""
        if self.durable:
            assert self.journal is not None
            return self.journal.flush()
        return None

    def _log(self, *records: Record) -> None:
        journal = self.journal
        if journal is not None:
            journal.append_nowait(records)

    # -- reads -------------------------------------------------------------------------

    def get(self, proc_id: str, run_id: str) -> Run:
        try:
            return self._runs[proc_id][run_id]
        except KeyError:
            raise RunNotFound(proc_id, run_id) from None

    def find(self, proc_id: str, run_id: str) -> Run | None:
        return self._runs.get(proc_id, {}).get(run_id)

    def runs_of(self, proc_id: str) -> list[Run]:
        return list(self._runs.get(proc_id, {}).values())

    def __iter__(self) -> Iterator[Run]:
        for runs in self._runs.values():
            yield from runs.values()

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._runs.values())

    # -- transitions -------------------------------------------------------------------

    def insert(self, run: Run) -> Run:
        """Add a newly configured run, or return the one already there."""
        runs = self._runs.setdefault(run.proc_id, {})
        existing = runs.get(run.run_id)
        if existing is not None:
            return existing
        runs[run.run_id] = run
        totals = self.finished_totals.get(run.proc_id)
        if totals is None:
            totals = self.finished_totals[run.proc_id] = {SUCCEEDED: 0, FAILED: 0}
        run.finished_totals = totals
        if self.journal is not None:
            configuration = run.configuration.model_dump(mode="json")
            self._log(RunConfigured(run.proc_id, run.run_id, configuration, run.started))
        self._notify(run, None)
        return run

    def restore(
        self, run: Run, chunks: list[Chunk], counts: dict[DataChunkState, int] | None = None
    ) -> None:
        """Put back a run recovered from the journal, with its chunks in arrival order
        (their states and counts as given; nothing is journalled: it is there already).
        With `counts`, a finished run comes back stored (`Run.stored`): its chunks stay
        in the journal, and `counts` (the journal's) are its counts.

        `run.state` is set by the caller (a finished run's, or CONFIGURED/RUNNING)."""
        self._runs.setdefault(run.proc_id, {})[run.run_id] = run
        totals = self.finished_totals.get(run.proc_id)
        if totals is None:
            totals = self.finished_totals[run.proc_id] = {SUCCEEDED: 0, FAILED: 0}
        run.finished_totals = totals
        stored_counts = counts
        held, outputs, counts = run.chunks, run.outputs, run.counts
        for seq, chunk in enumerate(chunks):
            chunk.seq = seq
            held[chunk.id] = chunk
            _hold_output(outputs, chunk)
            counts[chunk.state] += 1
            if chunk.error is not None and chunk.error == CANCELLED:
                run.cancelled_chunks += 1
        run.order = chunks
        if counts[WAITING]:
            run.waiting_since = time()  # (their arrival times are not journalled)
        if stored_counts is not None:
            run.stored = True
            counts.update(stored_counts)
        for state, n in counts.items():
            self.counts[state] += n
        totals[SUCCEEDED] += counts[SUCCEEDED]
        totals[FAILED] += counts[FAILED]
        if run.finished:
            run.done.set()
        self._notify(run, None)

    def store(self, run: Run) -> None:
        """Let a finished run's chunks go from memory (`Run.stored`): the journal holds
        them, committed, and serves them from now on. Only the header stays here
        (configuration, state, counts, warnings). The caller makes sure the journal is
        durable and has committed everything of the run."""
        if run.finished and not run.removed and not run.stored:
            run.stored = True
            run.chunks = {}
            run.outputs = {}
            run.order = []

    def reload(self, run: Run, chunks: list[Chunk]) -> None:
        """Take a stored run's chunks back into memory (read from the journal, in
        arrival order), before a retry changes them."""
        if not run.stored:
            return
        held, outputs = run.chunks, run.outputs
        cancelled = 0
        for seq, chunk in enumerate(chunks):
            chunk.seq = seq
            held[chunk.id] = chunk
            _hold_output(outputs, chunk)
            if chunk.error is not None and chunk.error == CANCELLED:
                cancelled += 1
        run.cancelled_chunks = cancelled  # (a run recovered stored had not counted them)
        run.order = chunks
        run.stored = False

    def settle(self, run: Run) -> None:
        """Finish a recovered run if all it waited for had ended before the restart."""
        self._maybe_complete(run)

    def remove(self, run: Run, *, journal: bool = True) -> list[Chunk]:
        """Forget a run; return its chunks that had not finished, for the caller to cancel.

        `journal` False journals nothing: the journal forgot the run itself (`purge`)."""
        runs = self._runs.get(run.proc_id, {})
        if runs.get(run.run_id) is not run:
            return []
        del runs[run.run_id]
        run.removed = True
        if not runs:
            del self._runs[run.proc_id]
        if journal:
            self._log(RunDeleted(run.proc_id, run.run_id))
        unfinished = [c for c in run.chunks.values() if c.state not in FINISHED]
        for state, n in run.counts.items():
            self.counts[state] -= n
        run.done.set()
        for hook in self.on_run_removed:
            hook(run)
        return unfinished

    def check_accepts(
        self, run: Run, chunks: list[Chunk], stored: dict[str, Chunk] | None = None
    ) -> tuple[list[Chunk], int]:
        """Split a batch into new chunks and no-op resends, or raise Conflict.

        Nothing changes here, so a batch is checked whole before any of it is accepted.
        `stored` gives a stored run's chunks of these IDs, read from the journal (a stored
        run is finished: it takes no new chunk, and a resend is checked against them).
        """
        if len(chunks) == 1:  # the common request: one new chunk for a run taking more
            chunk = chunks[0]
            if (
                chunk.id not in run.chunks
                and not run.output_taken(chunk.output_id)
                and run.state in _TAKING
                and not run.input_closed
                and (not run.expected or len(run.chunks) < run.expected)
            ):
                return chunks, 0
        new: list[Chunk] = []
        duplicates = 0
        seen: dict[str, Chunk] = {}
        claimed_outputs: set[str] = set()
        held_chunks = run.chunks if stored is None else stored
        closed = run.finished or run.input_closed
        for chunk in chunks:
            held = held_chunks.get(chunk.id) or seen.get(chunk.id)
            if held is not None:
                if not held.same_input(chunk):
                    raise Conflict(
                        f"chunk {chunk.id!r} of run {run.run_id!r} was already sent with "
                        "different content"
                    )
                duplicates += 1
                continue
            if closed:
                raise Conflict(
                    f"run {run.run_id!r} takes no more chunks: "
                    + ("it has " + run.state.value if run.finished else "its input is closed")
                )
            out = chunk.output_id
            if out in claimed_outputs or run.output_taken(out):
                if not chunk.generated_output_id:
                    raise Conflict(
                        f"output chunk ID {out!r} (AssociatedChunkID of {chunk.id!r}) is "
                        f"already used in run {run.run_id!r}"
                    )
                chunk.output_id = _free_output_id(out, run.outputs, claimed_outputs)
            seen[chunk.id] = chunk
            claimed_outputs.add(chunk.output_id)
            new.append(chunk)
        expected = run.expected
        if expected and run.accepted + len(new) > expected:
            raise Conflict(
                f"run {run.run_id!r} expects {expected} chunks (ExpectedData.NumChunks); "
                f"it holds {run.accepted} and this request adds {len(new)} more"
            )
        return new, duplicates

    def accept(self, run: Run, new: list[Chunk]) -> asyncio.Future[None] | None:
        """Take chunks checked by `check_accepts` as WAITING.

        Returns the future of their `ChunksAccepted` record when the journal is durable:
        the caller awaits it before answering (an AddData answered 200 is durable)."""
        chunks, outputs, order = run.chunks, run.outputs, run.order
        seq = len(order)
        for chunk in new:
            chunks[chunk.id] = chunk
            _hold_output(outputs, chunk)
            chunk.seq = seq
            seq += 1
        order += new
        n = len(new)
        if not run.counts[WAITING]:
            run.waiting_since = time()
        run.counts[WAITING] += n
        self.counts[WAITING] += n
        if run.state is State.CONFIGURED and n:
            run.state = State.RUNNING
            self._notify(run, None)
            for hook in self.on_run_started:
                hook(run)
        if self.listeners:
            for chunk in new:
                self._notify(run, chunk)
        journal = self.chunk_journal
        if journal is None or not n:
            return None
        record = ChunksAccepted(
            run.proc_id,
            run.run_id,
            tuple(
                [
                    AcceptedChunk(
                        c.id,
                        c.output_id,
                        c.in_format,
                        c.raw_data,
                        c.fs_driver,
                        c.fs_location,
                        c.generated_output_id,
                    )
                    for c in new
                ]
            ),
            time(),
        )
        if self.durable:
            return journal.append((record,))
        journal.append_nowait((record,))
        return None

    def start(
        self,
        run: Run,
        chunk: Chunk,
        worker: str = "",
        host: str = HOST,
        pid: int = PID,
        node: str = "",
    ) -> asyncio.Future[None] | None:
        """A worker takes a chunk: a new attempt begins, RUNNING.

        Returns a future to await before running the processor for a chunk recovered
        unfinished from the journal (None for any other): its attempt must be counted
        durably first, or a chunk that kills the process at once would never reach
        `--max-attempts`. Fresh chunks journal their start without waiting. `host`,
        `pid` and `node` say where it runs when that is not this process (RAY)."""
        self._move(run, chunk, RUNNING)
        now = time()
        here = host == HOST and pid == PID and not node
        if here and chunk._attempts is None and not chunk._started:
            number = 1  # the first attempt, here: kept inline (see `Chunk.attempts`)
            chunk._started, chunk._worker = now, worker
        else:
            attempts = chunk.held_attempts()
            number = 1 if attempts is None else attempts[-1].number + 1
            attempt = Attempt(number, now, host=host, pid=pid, worker=worker, node=node)
            chunk._attempts = (attempt,) if attempts is None else (*attempts, attempt)
        journal = self.chunk_journal
        if journal is None:
            return None
        record = ChunkStarted(
            run.proc_id, run.run_id, chunk.id, number, now, host, pid, worker, node
        )
        recovered = self.recovered
        if recovered and id(chunk) in recovered:
            recovered.discard(id(chunk))
            if self.durable:
                return journal.append((record,))
        journal.append_nowait((record,))
        return None

    def interrupt(self, run: Run, chunk: Chunk) -> None:
        """A running chunk was stopped by the executor's shutdown, with a durable journal:
        its attempt ends without an outcome and it goes back to WAITING, so that it runs
        again after the restart. Nothing is journalled: the journal already has it
        started and not ended, which recovery reads the same way."""
        if chunk.state is not RUNNING:
            return
        attempts = chunk.held_attempts()
        if attempts:
            attempts[-1].ended = time()
        chunk.progress = None
        self._move(run, chunk, WAITING)

    def requeue(self, run: Run, chunk: Chunk, error: str) -> None:
        """A running chunk's worker was lost (a Ray actor or node died): its attempt
        ends without an outcome, `error` saying why, and it is WAITING again, journalled
        so, to run as a new attempt. The caller queues it again."""
        if chunk.state is not RUNNING:
            return
        now = time()
        attempts = chunk.held_attempts()
        number = 0
        if attempts:
            attempts[-1].ended, attempts[-1].error = now, error
            number = attempts[-1].number
        chunk.progress = None
        self._move(run, chunk, WAITING)
        if self.chunk_journal is not None and not run.removed:
            self._log(ChunkRequeued(run.proc_id, run.run_id, chunk.id, number, error, now))

    def progress(self, run: Run, chunk: Chunk, done: int, total: int | None) -> None:
        if chunk.state is RUNNING:
            chunk.progress = (done, total)
            self._notify(run, chunk)

    def succeed(
        self,
        run: Run,
        chunk: Chunk,
        out_format: DataFormat,
        out_raw: Any,
        out_driver: str = "",
        out_location: str = "",
        sends: bool = False,
    ) -> None:
        """The chunk ended SUCCEEDED with this output. `sends`: the output is to be
        delivered downstream; the delivery is pending from now on (journalled with the
        output, in one append, so a restart finds and resends it)."""
        chunk.out_format = out_format
        chunk.out_raw = out_raw
        chunk.out_driver = out_driver
        chunk.out_location = out_location
        chunk.progress = None
        now = time()
        if chunk._started and chunk._ended is None:  # the common end: inline, first
            chunk._ended = now
            number = 1
        else:
            number = self._end_attempt(chunk, now, SUCCEEDED, None)
        if sends:
            run.deliveries_pending += 1
        self._move(run, chunk, SUCCEEDED)
        if self.chunk_journal is not None and not run.removed:
            records: list[Record] = [
                ChunkSucceeded(
                    run.proc_id,
                    run.run_id,
                    chunk.id,
                    number,
                    out_format,
                    out_raw,
                    now,
                    out_driver,
                    out_location,
                )
            ]
            if sends:
                records += [
                    DeliveryPending(run.proc_id, run.run_id, chunk.id, i)
                    for i in range(len(run.configuration.ExecutorConfig.DownstreamLocations or ()))
                ]
            self._log(*records)
        self._maybe_complete(run)

    def fail(self, run: Run, chunk: Chunk, error: str) -> None:
        if chunk.state in FINISHED:
            return
        chunk.error = error
        chunk.progress = None
        now = time()
        number = self._end_attempt(chunk, now, FAILED, error) if chunk.state is RUNNING else 0
        self._move(run, chunk, FAILED)
        if self.chunk_journal is not None and not run.removed:
            self._log(ChunkFailed(run.proc_id, run.run_id, chunk.id, number, error, now))
        for hook in self.on_chunk_failed:
            hook(run, chunk)
        self._maybe_complete(run)

    def delivery_started(self, run: Run) -> None:
        """Count a delivery as pending (a recovered one being resent; a new one is
        counted by `succeed`)."""
        run.deliveries_pending += 1

    def delivery_finished(
        self, run: Run, chunk: Chunk, error: str | None, failed: tuple[int, ...] = ()
    ) -> None:
        """An output's delivery ended: delivered everywhere (`error` None) or not to the
        downstream locations numbered in `failed`, for `error`."""
        run.deliveries_pending -= 1
        if error is not None:
            chunk.delivery_error = error
            run.deliveries_failed += 1
            if failed and not run.removed:
                run.undelivered[chunk.id] = failed
            self._notify(run, chunk)
        if self.chunk_journal is not None and not run.removed:
            places = range(len(run.configuration.ExecutorConfig.DownstreamLocations or ()))
            p, r, c = run.proc_id, run.run_id, chunk.id
            if error is None:
                self._log(*[DeliveryDone(p, r, c, i) for i in places])
            else:
                self._log(*[DeliveryFailed(p, r, c, i, error) for i in places])
        self._maybe_complete(run)

    def retry(self, run: Run) -> tuple[list[Chunk], list[tuple[Chunk, tuple[int, ...]]]]:
        """Take a run's failures back: its FAILED chunks become WAITING again (error
        and output cleared) and its failed deliveries pending again, and a finished
        run is RUNNING again until they end. Returns the chunks, for the caller to
        submit to the work model, and the outputs with the locations to send them to
        again. Nothing failed: nothing changes (so a second call is a no-op).

        Finished-chunk totals (`finished_totals`, the metrics' counter) count endings,
        so a retried chunk that ends again is counted again: the counter never goes
        down, and stays at least the run's finished chunks.
        """
        chunks = (
            [chunk for chunk in run.order if chunk.state is FAILED] if run.counts[FAILED] else []
        )
        outputs = [(run.chunks[cid], where) for cid, where in run.undelivered.items()]
        if not chunks and not outputs:
            return chunks, outputs
        for chunk in chunks:
            if chunk.error == CANCELLED:
                run.cancelled_chunks -= 1
            chunk.held_attempts()  # (inline, its outcome would follow the state)
            chunk.state = WAITING
            chunk.error = None
            chunk.delivery_error = None
            chunk.out_format = DataFormat.RAW
            chunk.out_raw = None
            chunk.out_driver = chunk.out_location = ""
            chunk.progress = None
        n = len(chunks)
        if n and not run.counts[WAITING]:
            run.waiting_since = time()
        run.counts[FAILED] -= n
        run.counts[WAITING] += n
        if not run.removed:
            self.counts[FAILED] -= n
            self.counts[WAITING] += n
        for chunk, _ in outputs:
            chunk.delivery_error = None
        if run.cancelled:  # what the cancel stopped is taken up again
            run.cancelled = False
            self.control(run, {"Cancelled": False})
        run.undelivered.clear()
        run.deliveries_failed -= len(outputs)
        run.deliveries_pending += len(outputs)
        if run.finished:
            run.state = State.RUNNING
            run.ended = None
            run.done.clear()
            self._notify(run, None)
        if self.chunk_journal is not None:
            p, r = run.proc_id, run.run_id
            self._log(
                RunRetried(
                    p, r, tuple(c.id for c in chunks), time(), tuple(c.id for c, _ in outputs)
                ),
                *[DeliveryPending(p, r, c.id, i) for c, where in outputs for i in where],
            )
        if self.listeners:
            for chunk in chunks:
                self._notify(run, chunk)
            for chunk, _ in outputs:
                self._notify(run, chunk)
        return chunks, outputs

    def delivery_interrupted(self, run: Run) -> None:
        """A delivery cut short by the shutdown, with a durable journal: it stays
        pending there, and is resent after the restart (nothing is journalled)."""
        run.deliveries_pending -= 1

    def control(self, run: Run, changes: dict[str, Any]) -> None:
        """Record live changes of a run (`Executor.change_run`, `pause`, `resume`): they
        join its `control`, which is journalled whole (the last record wins), and the
        run's listeners hear of it. The caller has applied them to the run already."""
        run.control = {**(run.control or {}), **changes}
        if self.journal is not None and not run.removed:
            self._log(RunControlled(run.proc_id, run.run_id, dict(run.control)))
        self._notify(run, None)

    def pause(self, run: Run) -> bool:
        """Pause a run: none of its chunks starts until `resume` (the scheduler holds
        them), and it does not finish meanwhile. False if it was paused already."""
        if run.paused:
            return False
        run.paused = True
        self.control(run, {"Paused": True})
        return True

    def resume(self, run: Run) -> bool:
        """Resume a paused run (it may finish at once, if all it held has ended).
        False if it was not paused."""
        if not run.paused:
            return False
        run.paused = False
        self.control(run, {"Paused": False})
        self._maybe_complete(run)
        return True

    def close_input(self, run: Run) -> None:
        if not run.input_closed:
            run.input_closed = True
            self._log(InputClosed(run.proc_id, run.run_id))
            self._notify(run, None)
            self._maybe_complete(run)

    def cancel(self, run: Run) -> list[Chunk]:
        """Stop a run early, keeping what it did: end of input is declared and its
        WAITING chunks fail (`CANCELLED`, journalled as any failure) without running;
        its RUNNING chunks finish, and then the run is ERRORED (a retry runs the
        cancelled chunks after all). Returns the chunks it cancelled; nothing waiting,
        nothing changes but the end of input (so a second call is a no-op).

        The run is marked `cancelled` (journalled in its live control record), so it
        ends ERRORED even when nothing waited or failed, or it never reached its
        NumChunks: a cancelled run is not a complete one. A finished run is left as it is.

        The caller takes the chunks back from their work model first (`Scheduler.
        withdraw`); any left there are skipped by the worker that takes them
        (`ChunkRunner.execute`)."""
        if not run.finished and not run.cancelled:
            run.cancelled = True
            self.control(run, {"Cancelled": True})
        self.close_input(run)
        if not run.counts[WAITING]:
            return []
        waiting = [chunk for chunk in run.order if chunk.state is WAITING]
        run.cancelled_chunks += len(waiting)  # (first: `fail` may finish the run)
        for chunk in waiting:
            self.fail(run, chunk, CANCELLED)
        return waiting

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _end_attempt(chunk: Chunk, now: float, outcome: DataChunkState, error: str | None) -> int:
        """End the chunk's latest attempt; its number (0 if it never started)."""
        if chunk._started:  # inline: its outcome and error are the chunk's own
            if chunk._ended is None:
                chunk._ended = now
            return 1
        attempts = chunk._attempts
        if not attempts:
            return 0
        last = attempts[-1]
        if last.outcome is None and last.ended is None:
            last.ended, last.outcome, last.error = now, outcome, error
        return last.number

    def _move(self, run: Run, chunk: Chunk, state: DataChunkState) -> None:
        old = chunk.state
        chunk.state = state
        run.counts[old] -= 1
        run.counts[state] += 1
        if not run.removed:  # a deleted run's chunks no longer count executor-wide
            self.counts[old] -= 1
            self.counts[state] += 1
        if state is SUCCEEDED or state is FAILED:  # (not RUNNING, nor back to WAITING)
            run.finished_totals[state] += 1
        for listener in self.listeners:
            listener(run, chunk)

    def _maybe_complete(self, run: Run) -> None:
        # Called after every finished chunk: the cheap reasons to stop come first.
        if run.input_closed:
            target = run.accepted
        elif run.expected:
            target = run.expected
        else:
            return  # NumChunks 0: only the end-of-input call can complete the run
        counts = run.counts
        if counts[SUCCEEDED] + counts[FAILED] < target:
            return
        if run.finished or run.deliveries_pending or run.removed or run.paused:
            return  # (a paused run finishes when it is resumed)
        failed = counts[FAILED] or run.deliveries_failed or run.cancelled
        run.state = State.ERRORED if failed else State.SUCCEEDED
        run.ended = time()
        self._log(RunFinished(run.proc_id, run.run_id, run.state, run.ended))
        run.done.set()
        self._notify(run, None)
        for hook in self.on_run_finished:
            hook(run)

    def _notify(self, run: Run, chunk: Chunk | None) -> None:
        for listener in self.listeners:
            listener(run, chunk)


def _hold_output(outputs: dict[str, Chunk], chunk: Chunk) -> None:
    """Index a chunk taken into a run by its output ID, unless that is the one the
    executor named after it (then it is found through the chunk, see `Chunk.output_id`),
    which from now on is not kept as a string."""
    out = chunk._output_id
    assert out is not None  # (as decoded, or read back from the journal)
    if chunk.generated_output_id and out == chunk.id + GENERATED:
        chunk._output_id = None
    else:
        outputs[out] = chunk


def _free_output_id(base: str, *taken: dict[str, Chunk] | set[str]) -> str:
    n = 2
    while True:
        candidate = f"{base}-{n}"
        if not any(candidate in t for t in taken):
            return candidate
        n += 1


def from_stored(c: StoredChunk) -> Chunk:
    """A run-map chunk from its journalled form (the same fields, by position): how
    recovery and the reads of a stored run (`Run.stored`) rebuild one."""
    return Chunk(
        c.chunk_id,
        c.output_id,
        c.in_format,
        c.raw_data,
        c.fs_driver,
        c.fs_location,
        c.generated_output_id,
        c.state,
        c.out_format,
        c.out_raw,
        c.out_driver,
        c.out_location,
        c.error,
        c.delivery_error,
        None,
        0,
        tuple(c.attempts) if c.attempts else None,
    )
