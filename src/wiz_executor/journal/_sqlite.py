"""`SqliteStore`: the durable journal, one SQLite file in WAL mode, group-committed.

Why group commit. A commit is the expensive part of a write (measured here: ~80k rows/s
at one row per commit, ~420k at 64), and an AddData must not be answered before its
chunks are committed. So appends never commit on their own: `append` (on the event loop)
puts the records on a list under a lock held for a list extend, and wakes the one writer
thread if it was idle. The writer takes *everything* queued since its last commit, writes
it in one transaction, commits, and resolves that batch's futures with one
`loop.call_soon_threadsafe` call. While it commits, the next batch gathers: the busier
the executor, the more records share a commit, and the event loop never waits on disk.

What is durable when. An append's future resolves after the COMMIT of the transaction
holding its records has returned. In WAL mode with `synchronous=NORMAL` (the default),
that commit is in the -wal file in the operating system's cache: it survives the process
being killed (`kill -9`, a crash) but not a power loss or kernel crash, which may lose
the last commits (never corrupting the file). With `fsync=True` (`--fsync`) it is
`synchronous=FULL`: the WAL is fsynced at each commit, and survives power loss too.

One writer thread owns the write connection; reads run on one reader thread with its own
connection (WAL lets them read committed data while the writer writes), so neither
blocks the event loop and readers never block the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, groupby
from operator import itemgetter
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

import msgspec

from ..api import DataChunkState, DataFormat, State
from ..errors import ChunkNotFound, JournalCorrupt, JournalError, RunNotFound
from ..metrics import COMMIT_BUCKETS, Histogram
from . import _schema
from ._base import (
    CHUNK_STATES,
    STATE_CODE,
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

log = logging.getLogger(__name__)
T = TypeVar("T")

_RUN_STATES: tuple[State, ...] = tuple(State)
_RUN_STATE_CODE = {s: i + 1 for i, s in enumerate(_RUN_STATES)}

_CHUNK_COLUMNS = "chunk_id, output_id, input, state, output, error, delivery_error, attempts"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_decode_attempts = msgspec.json.Decoder(list[Attempt]).decode
_decode_input = msgspec.json.Decoder(tuple[DataFormat, Any, str, str, bool, float]).decode
_decode_output = msgspec.json.Decoder(tuple[DataFormat, Any, str, str]).decode


def _json(row: tuple[Any, ...], data: int) -> bytes:
    """`row` as a compact JSON array. If its item `data` (RawData) is not JSON (only a
    processor's output could be), it is stored as its string: one odd value must not
    fail the batch, and with it every request waiting on it."""
    try:
        return _encode(row)
    except (TypeError, ValueError, OverflowError):
        value = row[data]
        log.warning("journal: a value that is not JSON was stored as its string: %r", value)
        return _encode((*row[:data], str(value), *row[data + 1 :]))


_SIZES = (64, 16, 4, 1)
"""Rows per statement of a `_Rows`: few sizes, so that each stays prepared in the
connection's statement cache (`cached_statements=64`)."""


class _Rows:
    """One statement for many rows: `INSERT … VALUES (…), (…), …` of up to 64 rows a
    statement (the rows' parameters flattened into one sequence, bound by C), so SQLite
    writes them in one `sqlite3_step`, with the GIL released. `executemany` takes the
    GIL back after every row's step: under load the writer and the event loop handed
    it to each other per row, and an insert cost more CPU per row than in a statement of
    many (measured: `benchmarks/results/history.md`).
    A batch of n rows takes n // 64 statements of 64, then of 16, 4 and 1.

    (Tried first and dropped: the rows as one JSON array read with `json_each`, one
    statement per batch. Reading each row's items back out of JSON cost more CPU than
    the binding it saved; see `benchmarks/results/history.md`.)
    """

    __slots__ = ("sql",)

    def __init__(self, head: str, row: str, tail: str = "") -> None:
        self.sql = {n: head + ", ".join([row] * n) + tail for n in _SIZES}

    def write(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        i, left = 0, len(rows)
        for n in _SIZES[:-1]:
            sql = self.sql[n]
            while left >= n:
                conn.execute(sql, list(chain.from_iterable(rows[i : i + n])))
                i += n
                left -= n
        if left:
            conn.executemany(self.sql[1], rows[i:])


class _Changes(_Rows):
    """A `_Rows` that changes existing chunks' rows: its rows are a table `v` joined to
    their chunks (found by rid and ChunkID through `chunks_by_id`), written by an UPSERT
    (`INSERT … SELECT … ON CONFLICT (rid, seq) DO UPDATE`). The SELECT finds only rows
    that exist, so the INSERT always meets its own row and updates it, never creates one
    (a record for a chunk that is gone changes nothing, as an UPDATE would). Rows that
    change one chunk twice go one by one, in order (the order of a statement's rows is
    not a promise)."""

    __slots__ = ("key",)

    def __init__(self, columns: str, select: str, update: str, key: tuple[int, int]) -> None:
        super().__init__(
            f"WITH v({columns}) AS (VALUES ",
            "(" + ", ".join(["?"] * len(columns.split(","))) + ")",
            ") INSERT INTO chunks (rid, seq, chunk_id, output_id, input, state, output, error,"
            f" attempts) SELECT c.rid, c.seq, c.chunk_id, '', x'', {select} FROM v"
            " JOIN chunks AS c ON c.rid = v.rid AND c.chunk_id = v.chunk_id WHERE true"
            f" ON CONFLICT (rid, seq) DO UPDATE SET {update}",
        )
        self.key = itemgetter(*key)

    def write(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        if len(set(map(self.key, rows))) < len(rows):
            conn.executemany(self.sql[1], rows)
        else:
            super().write(conn, rows)


_ACCEPTED = _Rows(
    "INSERT OR IGNORE INTO chunks (rid, seq, chunk_id, output_id, input) VALUES ",
    "(?, ?, ?, ?, ?)",
)
"""Rows (rid, seq, ChunkID, output ID, input): new chunks (a duplicate is ignored)."""
_RAN_FIRST = _Changes(
    "state, output, error, attempts, rid, chunk_id",
    "v.state, v.output, v.error, v.attempts",
    "state = excluded.state,"
    " output = CASE WHEN excluded.state = 3 THEN excluded.output ELSE output END,"
    " error = excluded.error, attempts = excluded.attempts",
    key=(4, 5),
)
"""Rows (state, output, error, attempts, rid, ChunkID): a first attempt's start and end
(the attempts column written outright; a failure keeps the output column as it was)."""


class _Purge:
    """The writer's own record for `purge`: it fills `removed`."""

    __slots__ = ("before", "removed")

    def __init__(self, before: float) -> None:
        self.before = before
        self.removed: list[tuple[str, str]] = []


class _Ran:
    """The writer's own record for a `ChunkStarted` and the end of the same attempt
    (`ChunkSucceeded` or `ChunkFailed`) in one batch: one row update, not two."""

    __slots__ = ("end", "start")

    def __init__(self, start: ChunkStarted, end: ChunkSucceeded | ChunkFailed) -> None:
        self.start = start
        self.end = end


_RANK: dict[type[Any], int] = {
    kind: i
    for i, kind in enumerate(
        (
            ChunksAccepted,
            ChunkStarted,
            _Ran,
            ChunkSucceeded,
            ChunkFailed,
            DeliveryPending,
            DeliveryDone,
            DeliveryFailed,
        )
    )
}
"""The order of a chunk's own records over its life (accepted, started, ended, its
deliveries pending, then done or failed)."""


def _coalesce(batch: list[Any]) -> list[Any]:
    """A batch as the writer applies it: fewer statements, the same end state.

    1. A chunk's `ChunkStarted` and the end of that attempt in the same batch (a quick
       chunk's start and end almost always are) become one `_Ran`: one row update
       instead of two, each of which moved the row in the state index.
    2. Between two records of a whole run (any kind not in `_RANK`, so that a new kind
       of record is a barrier unless ranked), chunk records are grouped by kind, in the
       order of a chunk's life (`_RANK`; stable, so one chunk's records of a kind keep
       their order): under load the records of many chunks interleave
       (one accepted, another ended, …), and each kind's group is written together
       (`_Rows`, or one `executemany`).
       Regrouping cannot reorder one chunk's records: they follow that order anyway,
       and whatever else happens to a chunk (a retry, a delete) is a barrier.
    """
    ends: dict[tuple[str, str, str, int], int] = {}
    for i, r in enumerate(batch):
        kind = type(r)
        if (kind is ChunkSucceeded or kind is ChunkFailed) and r.attempt:
            ends[(r.proc_id, r.run_id, r.chunk_id, r.attempt)] = i
    starts: dict[tuple[str, str, str, int], ChunkStarted] = {}
    out: list[Any] = []
    segment: list[Any] = []
    rank = _RANK
    for i, r in enumerate(batch):
        kind = type(r)
        if kind not in rank:
            if segment:
                segment.sort(key=lambda x: rank[type(x)])
                out += segment
                segment = []
            out.append(r)
            continue
        if ends:
            if kind is ChunkStarted:
                key = (r.proc_id, r.run_id, r.chunk_id, r.attempt)
                if ends.get(key, -1) > i:  # its end comes later in the batch: merged there
                    starts[key] = r
                    continue
            elif (kind is ChunkSucceeded or kind is ChunkFailed) and r.attempt:
                start = starts.pop((r.proc_id, r.run_id, r.chunk_id, r.attempt), None)
                if start is not None:
                    segment.append(_Ran(start, r))
                    continue
        segment.append(r)
    if segment:
        segment.sort(key=lambda x: rank[type(x)])
        out += segment
    return out


class SqliteStore(JournalStore):
    """The journal in one SQLite file (see the module docstring).

    `commits` and `records_written` count what the writer did (tests and benchmarks read
    them to see group commit at work), `rows_written` the rows it changed, and
    `commit_seconds` how long each transaction took (timed per commit, not per record:
    two clock reads per group commit); /metrics shows them.
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.commits = 0
        self.records_written = 0
        self.rows_written = 0
        """Rows inserted, updated or deleted by the writer's connection (SQLite's
        `total_changes`, read once per commit)."""
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        """Seconds from BEGIN to the end of COMMIT, per group commit: what an AddData
        waits for on top of its share of the queue."""
        self._lock = threading.Lock()
        self._wake = threading.Lock()
        """Held while the writer has nothing to do; released to wake it (by the first
        append after it went idle, or `close`). A plain lock, not an `Event`: waking it
        costs the event loop one C call, and the writer never holds `_lock` while it
        runs Python code that could let the loop wait on it."""
        self._wake.acquire()
        self._idle = False
        """The writer waits on `_wake` (set and read under `_lock`)."""
        self._queue: list[Any] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._state = "new"  # new → open → closing → closed
        self._writer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._failed_write: JournalError | None = None
        """The first failed commit: every later append fails with it (see `_write_loop`)."""
        # The writer thread's own caches (only it touches them once it runs).
        self._rids: dict[tuple[str, str], int] = {}
        self._next_seq: dict[int, int] = {}
        self._apply: dict[type[Any], Callable[[sqlite3.Connection, list[Any]], None]] = {
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
            _Purge: self._purge,
            _Ran: self._ran,
        }

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r}, fsync={self.fsync})"

    def disk_bytes(self) -> int:
        """Bytes the journal holds on disk now: the file and its write-ahead log (which
        grows between checkpoints). A `stat` each, cheap enough for every scrape."""
        total = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    # -- life --------------------------------------------------------------------------

    def open(self) -> None:
        """Create, or check and migrate, the file; start the writer thread.

        Raises `JournalCorrupt` for a file that is not a journal or is damaged, and
        `JournalTooNew` for one written by a newer version.
        """
        if self._state != "new":
            raise RuntimeError(f"{self!r} was already opened")
        path = self.path
        _schema.check_file(path)
        try:
            _schema.makedirs(path)
        except OSError as exc:
            raise JournalCorrupt(str(path), str(exc)) from exc
        self._lock_fd = _schema.lock(path)
        try:
            conn = _schema.connect(path, fsync=self.fsync, check_same_thread=False)
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise JournalCorrupt(str(path), str(exc)) from exc
        try:
            _schema.prepare(conn, path)
            self._rids = _run_keys(conn)
        except JournalError:
            conn.close()
            self._unlock()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            self._unlock()
            raise JournalCorrupt(str(path), str(exc)) from exc
        self._conn = conn
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="wiz-journal-read")
        # A daemon, so a store nobody closed cannot hang the interpreter's exit; `close`
        # is what writes the queue out (an unclosed store loses only unacknowledged work).
        self._writer = threading.Thread(
            target=self._write_loop, name="wiz-journal-write", daemon=True
        )
        self._state = "open"
        self._writer.start()

    async def close(self) -> None:
        with self._lock:
            if self._state != "open":
                return
            self._state = "closing"
            self._wake_writer()
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        if self._reader is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, self._close_reader)
            self._reader.shutdown()
        if self._conn is not None:
            self._conn.close()  # the last connection: SQLite checkpoints and drops the WAL
        self._unlock()
        self._state = "closed"

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.close()
            self._read_conn = None

    # -- appends (event loop) ----------------------------------------------------------

    def append(self, records: Sequence[Record]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._enqueue(records, future, loop)
        return future

    def append_nowait(self, records: Sequence[Record]) -> None:
        self._enqueue(records, None, None)

    async def purge(self, finished_before: float) -> list[tuple[str, str]]:
        purge = _Purge(finished_before)
        await self.append((purge,))  # type: ignore[arg-type]  # the writer's own record
        return purge.removed

    def _enqueue(
        self,
        records: Sequence[Any],
        future: asyncio.Future[None] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        with self._lock:
            if self._state != "open":
                raise RuntimeError(f"{self!r} is not open")
            if self._idle:
                self._wake_writer()
            self._queue.extend(records)
            if future is not None:
                self._waiters.append(future)
                self._loop = loop

    # -- the writer thread -------------------------------------------------------------

    def _wake_writer(self) -> None:
        """Wake the writer if it waits (called with `_lock` held)."""
        if self._idle:
            self._idle = False
            self._wake.release()

    def _write_loop(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            with self._lock:
                if not self._queue and not self._waiters and self._state == "open":
                    self._idle = True  # the next append (or close) releases `_wake`
                    batch = None
                else:
                    batch, waiters, loop = self._queue, self._waiters, self._loop
                    self._queue, self._waiters = [], []
                    closing = self._state == "closing"
            if batch is None:
                self._wake.acquire()
                continue
            error: BaseException | None = self._failed_write
            if batch and error is None:
                try:
                    self._write(conn, batch)
                except Exception as exc:
                    log.exception("journal: writing %d records to %s failed", len(batch), self)
                    error = JournalError(str(self.path), f"writing the journal failed: {exc}")
                    # Sticky: what came after a lost batch may depend on it (a start after
                    # its acceptance), so nothing more is written, and every later waiter
                    # (a flush, an AddData) hears of it, even when the lost batch had none.
                    self._failed_write = error
            if waiters and loop is not None:
                # A closed loop has nobody waiting any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_resolve, waiters, error)
            if closing:
                return

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        started = perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, group in groupby(_coalesce(batch), type):
                self._apply[kind](conn, list(group))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            # The caches may name rows the rollback undid: read them again from the file
            # (rare, so a failure pays, rather than every commit copying them).
            self._rids = _run_keys(conn)
            self._next_seq = {}
            raise
        self.commit_seconds.observe(perf_counter() - started)
        self.rows_written = conn.total_changes
        self.commits += 1
        self.records_written += len(batch)

    def _rid(self, proc_id: str, run_id: str) -> int | None:
        return self._rids.get((proc_id, run_id))

    def _configured(self, conn: sqlite3.Connection, records: list[RunConfigured]) -> None:
        for r in records:
            key = (r.proc_id, r.run_id)
            if key in self._rids:
                continue
            cur = conn.execute(
                "INSERT INTO runs (proc_id, run_id, configuration, created) VALUES (?, ?, ?, ?)",
                (r.proc_id, r.run_id, _encode(r.configuration), r.created),
            )
            assert cur.lastrowid is not None
            self._rids[key] = cur.lastrowid
            self._next_seq[cur.lastrowid] = 0

    def _accepted(self, conn: sqlite3.Connection, records: list[ChunksAccepted]) -> None:
        rows = []
        next_seq = self._next_seq
        for r in records:
            rid = self._rids.get((r.proc_id, r.run_id))
            if rid is None:
                continue
            seq = next_seq.get(rid)
            if seq is None:
                seq = conn.execute(
                    "SELECT coalesce(max(seq), 0) FROM chunks WHERE rid = ?", (rid,)
                ).fetchone()[0]
            for c in r.chunks:
                seq += 1
                data = (
                    c.in_format,
                    c.raw_data,
                    c.fs_driver,
                    c.fs_location,
                    c.generated_output_id,
                    r.time,
                )
                rows.append((rid, seq, c.chunk_id, c.output_id, _json(data, 1)))
            next_seq[rid] = seq
        _ACCEPTED.write(conn, rows)

    def _started(self, conn: sqlite3.Connection, records: list[ChunkStarted]) -> None:
        rids = self._rids
        rows = [
            (r.attempt, repr(r.time), r.host, r.pid, r.worker, r.node, rid, r.chunk_id)
            for r in records
            if (rid := rids.get((r.proc_id, r.run_id))) is not None
        ]
        conn.executemany(
            "UPDATE chunks SET state = 2, attempts = json_insert(coalesce(attempts, '[]'), '$[#]',"
            " json_array(?, json(?), NULL, NULL, NULL, ?, ?, ?, ?)) WHERE rid = ? AND chunk_id = ?",
            rows,
        )

    def _succeeded(self, conn: sqlite3.Connection, records: list[ChunkSucceeded]) -> None:
        rids = self._rids
        rows = [
            (
                _json((r.out_format, r.out_raw, r.out_driver, r.out_location), 1),
                r.attempt,
                repr(r.time),
                rid,
                r.chunk_id,
            )
            for r in records
            if (rid := rids.get((r.proc_id, r.run_id))) is not None
        ]
        conn.executemany(
            "UPDATE chunks SET state = 3, output = ?1, error = NULL, attempts = CASE WHEN ?2 > 0"
            " THEN json_set(attempts, '$[#-1][2]', json(?3), '$[#-1][3]', 'SUCCEEDED')"
            " ELSE attempts END WHERE rid = ?4 AND chunk_id = ?5",
            rows,
        )

    def _failed(self, conn: sqlite3.Connection, records: list[ChunkFailed]) -> None:
        rids = self._rids
        rows = [
            (r.error, r.attempt, repr(r.time), rid, r.chunk_id)
            for r in records
            if (rid := rids.get((r.proc_id, r.run_id))) is not None
        ]
        conn.executemany(
            "UPDATE chunks SET state = 4, error = ?1, attempts = CASE WHEN ?2 > 0 THEN"
            " json_set(attempts, '$[#-1][2]', json(?3), '$[#-1][3]', 'FAILED', '$[#-1][4]', ?1)"
            " ELSE attempts END WHERE rid = ?4 AND chunk_id = ?5",
            rows,
        )

    def _ran(self, conn: sqlite3.Connection, records: list[_Ran]) -> None:
        """Chunks that started and ended in this batch: the state, the output or error,
        and the whole attempt in one update. A first attempt (the common case) writes
        the attempts column outright; a later one appends to it."""
        rids = self._rids
        first: list[tuple[Any, ...]] = []
        later: list[tuple[Any, ...]] = []
        for r in records:
            s, e = r.start, r.end
            rid = rids.get((s.proc_id, s.run_id))
            if rid is None:
                continue
            if isinstance(e, ChunkSucceeded):
                state, output, error, outcome = (
                    3,
                    _json((e.out_format, e.out_raw, e.out_driver, e.out_location), 1),
                    None,
                    "SUCCEEDED",
                )
            else:
                state, output, error, outcome = 4, None, e.error, "FAILED"
            attempt = (s.attempt, s.time, e.time, outcome, error, s.host, s.pid, s.worker, s.node)
            if s.attempt == 1:
                row = (state, output, error, _encode((attempt,)).decode(), rid, s.chunk_id)
                first.append(row)
            else:
                later.append((state, output, error, _encode(attempt).decode(), rid, s.chunk_id))
        # (A failure keeps the output column as it was, as `_failed` does.)
        if first:
            _RAN_FIRST.write(conn, first)
        if later:
            conn.executemany(
                "UPDATE chunks SET state = ?1, output = CASE WHEN ?1 = 3 THEN ?2 ELSE output END,"
                " error = ?3, attempts = json_insert(coalesce(attempts, '[]'), '$[#]', json(?4))"
                " WHERE rid = ?5 AND chunk_id = ?6",
                later,
            )

    def _requeued(self, conn: sqlite3.Connection, records: list[ChunkRequeued]) -> None:
        rids = self._rids
        rows = [
            (r.error, repr(r.time), rid, r.chunk_id)
            for r in records
            if (rid := rids.get((r.proc_id, r.run_id))) is not None
        ]
        conn.executemany(
            "UPDATE chunks SET state = 1, attempts ="
            " json_set(attempts, '$[#-1][2]', json(?2), '$[#-1][4]', ?1)"
            " WHERE rid = ?3 AND chunk_id = ?4 AND attempts IS NOT NULL",
            rows,
        )

    def _delivery_rows(self, records: Iterable[Any]) -> list[tuple[int, str, int]]:
        rids = self._rids
        return [
            (rid, r.chunk_id, r.downstream)
            for r in records
            if (rid := rids.get((r.proc_id, r.run_id))) is not None
        ]

    def _delivery_pending(self, conn: sqlite3.Connection, records: list[DeliveryPending]) -> None:
        conn.executemany(
            "INSERT OR IGNORE INTO deliveries (rid, seq, downstream)"
            " SELECT rid, seq, ?3 FROM chunks WHERE rid = ?1 AND chunk_id = ?2",
            self._delivery_rows(records),
        )

    def _delivery_done(self, conn: sqlite3.Connection, records: list[Any]) -> None:
        conn.executemany(
            "DELETE FROM deliveries WHERE rid = ?1 AND downstream = ?3"
            " AND seq = (SELECT seq FROM chunks WHERE rid = ?1 AND chunk_id = ?2)",
            self._delivery_rows(records),
        )

    def _delivery_failed(self, conn: sqlite3.Connection, records: list[DeliveryFailed]) -> None:
        self._delivery_done(conn, records)
        rids = self._rids
        conn.executemany(
            "UPDATE chunks SET delivery_error = ? WHERE rid = ? AND chunk_id = ?",
            [
                (r.error, rid, r.chunk_id)
                for r in records
                if (rid := rids.get((r.proc_id, r.run_id))) is not None
            ],
        )

    def _input_closed(self, conn: sqlite3.Connection, records: list[InputClosed]) -> None:
        for r in records:
            rid = self._rid(r.proc_id, r.run_id)
            if rid is not None:
                conn.execute("UPDATE runs SET input_closed = 1 WHERE rid = ?", (rid,))

    def _run_retried(self, conn: sqlite3.Connection, records: list[RunRetried]) -> None:
        for r in records:
            rid = self._rid(r.proc_id, r.run_id)
            if rid is None:
                continue
            conn.execute(
                "UPDATE runs SET state = NULL, finished = NULL, counts = NULL WHERE rid = ?",
                (rid,),
            )
            conn.executemany(
                "UPDATE chunks SET state = 1, output = NULL, error = NULL, delivery_error = NULL"
                " WHERE rid = ? AND chunk_id = ?",
                [(rid, chunk_id) for chunk_id in r.chunk_ids],
            )
            conn.executemany(
                "UPDATE chunks SET delivery_error = NULL WHERE rid = ? AND chunk_id = ?",
                [(rid, chunk_id) for chunk_id in r.redelivered],
            )

    def _run_finished(self, conn: sqlite3.Connection, records: list[RunFinished]) -> None:
        for r in records:
            rid = self._rid(r.proc_id, r.run_id)
            if rid is None:
                continue
            counts = [0, 0, 0, 0]
            for state, n in conn.execute(
                "SELECT state, count(*) FROM chunks WHERE rid = ? GROUP BY state", (rid,)
            ):
                counts[state - 1] = n
            conn.execute(
                "UPDATE runs SET state = ?, finished = ?, counts = ? WHERE rid = ?",
                (_RUN_STATE_CODE[r.state], r.time, _encode(counts), rid),
            )

    def _forget(self, conn: sqlite3.Connection, rid: int) -> None:
        conn.execute("DELETE FROM deliveries WHERE rid = ?", (rid,))
        conn.execute("DELETE FROM chunks WHERE rid = ?", (rid,))
        conn.execute("DELETE FROM runs WHERE rid = ?", (rid,))
        self._next_seq.pop(rid, None)

    def _run_deleted(self, conn: sqlite3.Connection, records: list[RunDeleted]) -> None:
        for r in records:
            rid = self._rids.pop((r.proc_id, r.run_id), None)
            if rid is not None:
                self._forget(conn, rid)

    def _controlled(self, conn: sqlite3.Connection, records: list[RunControlled]) -> None:
        rids = self._rids
        conn.executemany(
            "UPDATE runs SET control = ? WHERE rid = ?",
            [
                (_encode(r.control), rid)
                for r in records
                if (rid := rids.get((r.proc_id, r.run_id))) is not None
            ],
        )

    def _setting(self, conn: sqlite3.Connection, records: list[SettingChanged]) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
            [(r.key, _encode(r.value)) for r in records],
        )

    def _purge(self, conn: sqlite3.Connection, records: list[_Purge]) -> None:
        for purge in records:
            rows = conn.execute(
                "SELECT rid, proc_id, run_id FROM runs WHERE finished < ? ORDER BY rid",
                (purge.before,),
            ).fetchall()
            for rid, proc_id, run_id in rows:
                self._rids.pop((proc_id, run_id), None)
                self._forget(conn, rid)
                purge.removed.append((proc_id, run_id))

    # -- recovery ----------------------------------------------------------------------

    def load(self) -> Recovered:
        """Read the whole journal in one pass, on this thread, through its own connection.

        Unfinished runs come with their chunks (one range scan per run, in arrival
        order), finished ones with their counts only. A read error means a damaged file:
        `JournalCorrupt`, never a partial recovery.
        """
        try:
            conn = _schema.connect(self.path, fsync=self.fsync)
        except sqlite3.DatabaseError as exc:
            raise JournalCorrupt(str(self.path), str(exc)) from exc
        # Recovery makes millions of objects and frees none: the collector's passes over
        # them (triggered by allocation counts) would find nothing, so they are put off.
        collecting = gc.isenabled()
        gc.disable()
        try:
            conn.execute("BEGIN")
            return self._load(conn)
        except sqlite3.DatabaseError as exc:
            raise JournalCorrupt(str(self.path), str(exc)) from exc
        finally:
            conn.close()
            if collecting:
                gc.enable()

    def _load(self, conn: sqlite3.Connection) -> Recovered:
        runs: dict[int, StoredRun] = {}
        for row in conn.execute(
            "SELECT rid, proc_id, run_id, configuration, created, input_closed, state,"
            " finished, counts, control FROM runs ORDER BY rid"
        ):
            rid, proc_id, run_id, config, created, closed, state, finished, counts, control = row
            run = StoredRun(proc_id, run_id, _decode(config), created, bool(closed))
            if control is not None:
                run.control = _decode(control)
            if state is not None:
                run.state = _RUN_STATES[state - 1]
                run.finished = finished
                run.counts = dict(zip(CHUNK_STATES, _decode(counts), strict=True))
            runs[rid] = run
        for rid, run in runs.items():
            if run.state is None:
                run.chunks = chunks = _chunks(
                    conn.execute(
                        f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE rid = ? ORDER BY seq", (rid,)
                    )
                )
                counts = dict.fromkeys(DataChunkState, 0)
                for chunk in chunks:
                    counts[chunk.state] += 1
                run.counts = counts
        for rid, chunk_id, downstream in conn.execute(
            "SELECT d.rid, c.chunk_id, d.downstream FROM deliveries d"
            " JOIN chunks c ON c.rid = d.rid AND c.seq = d.seq ORDER BY d.rid, d.seq, d.downstream"
        ):
            runs[rid].deliveries.append(PendingDelivery(chunk_id, downstream))
        settings = {key: _decode(value) for key, value in conn.execute("SELECT * FROM settings")}
        return Recovered(list(runs.values()), settings)

    # -- reads (the reader thread) -----------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._state != "open" or self._reader is None:
            raise RuntimeError(f"{self!r} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._on_reader, fn)

    def _on_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._read_conn
        if conn is None:
            conn = self._read_conn = _schema.connect(self.path, fsync=self.fsync)
        conn.execute("BEGIN")  # one snapshot for the whole read
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

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

        def read(conn: sqlite3.Connection) -> list[StoredChunk]:
            rid = _find_rid(conn, proc_id, run_id)
            seq = 0
            if after is not None:
                row = conn.execute(
                    "SELECT seq FROM chunks WHERE rid = ? AND chunk_id = ?", (rid, after)
                ).fetchone()
                if row is None:
                    raise ChunkNotFound(run_id, after, "input")
                seq = row[0]
            if state is None:
                rows = conn.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE rid = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (rid, seq, limit),
                )
            elif state is DataChunkState.FAILED:  # (the planner would take the run's range)
                rows = conn.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks INDEXED BY chunks_failed"
                    " WHERE rid = ? AND state = 4"
                    " AND seq > ? ORDER BY seq LIMIT ?",
                    (rid, seq, limit),
                )
            else:  # the run's range, in arrival order (no index: see `_schema._V3`)
                rows = conn.execute(
                    f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE rid = ? AND state = ?"
                    " AND seq > ? ORDER BY seq LIMIT ?",
                    (rid, STATE_CODE[state], seq, limit),
                )
            return _chunks(rows)

        return await self._read(read)

    async def chunk(self, proc_id: str, run_id: str, chunk_id: str) -> StoredChunk:
        def read(conn: sqlite3.Connection) -> StoredChunk:
            rid = _find_rid(conn, proc_id, run_id)
            rows = conn.execute(
                f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE rid = ? AND chunk_id = ?",
                (rid, chunk_id),
            )
            found = _chunks(rows)
            if not found:
                raise ChunkNotFound(run_id, chunk_id, "input")
            return found[0]

        return await self._read(read)

    async def output(self, proc_id: str, run_id: str, output_id: str) -> StoredChunk:
        """The first chunk (in arrival order) whose output ID is `output_id`: among the
        chosen ones (`chunks_by_chosen_output`: named, or the planner, which does not know
        how few it holds, scans the run) and, for an ID ending in "-out", the chunk whose
        ChunkID it was made of (see `_schema._V3`)."""

        def read(conn: sqlite3.Connection) -> StoredChunk:
            rid = _find_rid(conn, proc_id, run_id)
            found = conn.execute(
                f"SELECT seq, {_CHUNK_COLUMNS} FROM chunks INDEXED BY chunks_by_chosen_output"
                " WHERE rid = ? AND output_id = ? AND output_id != chunk_id || '-out'"
                " ORDER BY seq LIMIT 1",
                (rid, output_id),
            ).fetchall()
            if output_id.endswith("-out"):
                found += conn.execute(
                    f"SELECT seq, {_CHUNK_COLUMNS} FROM chunks WHERE rid = ? AND chunk_id = ?"
                    " AND output_id = ?",
                    (rid, output_id[:-4], output_id),
                ).fetchall()
            if not found:
                raise ChunkNotFound(run_id, output_id, "output")
            return _chunks([min(found)[1:]])[0]

        return await self._read(read)


def _resolve(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
    """On the event loop: settle one batch's futures (those still waited on)."""
    for future in waiters:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


def _run_keys(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    return {
        (proc, run): rid for rid, proc, run in conn.execute("SELECT rid, proc_id, run_id FROM runs")
    }


def _find_rid(conn: sqlite3.Connection, proc_id: str, run_id: str) -> int:
    row = conn.execute(
        "SELECT rid FROM runs WHERE proc_id = ? AND run_id = ?", (proc_id, run_id)
    ).fetchone()
    if row is None:
        raise RunNotFound(proc_id, run_id)
    rid: int = row[0]
    return rid


def _chunks(rows: Iterable[tuple[Any, ...]]) -> list[StoredChunk]:
    """Chunk rows (`_CHUNK_COLUMNS`) as `StoredChunk`s: the hot loop of recovery, so a
    WAITING chunk costs one decode and one constructor call, and only what a chunk has
    (an output, an error, attempts) costs more."""
    states, decode_input, decode_output, decode_attempts = (
        CHUNK_STATES,
        _decode_input,
        _decode_output,
        _decode_attempts,
    )
    out: list[StoredChunk] = []
    append = out.append
    for chunk_id, output_id, data, state, output, error, delivery_error, attempts in rows:
        chunk = StoredChunk(chunk_id, output_id, *decode_input(data))
        if state != 1:
            chunk.state = states[state - 1]
        if output is not None:
            chunk.out_format, chunk.out_raw, chunk.out_driver, chunk.out_location = decode_output(
                output
            )
        if error is not None:
            chunk.error = error
        if delivery_error is not None:
            chunk.delivery_error = delivery_error
        if attempts is not None:
            chunk.attempts = decode_attempts(attempts)
        append(chunk)
    return out
