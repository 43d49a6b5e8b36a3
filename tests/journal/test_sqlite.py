"""What only the SQLite store does: group commit, its modes, refusing files it must not
use, migrations, and surviving a failed write."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from wiz_executor.api import DataFormat, State
from wiz_executor.errors import JournalCorrupt, JournalError, JournalTooNew
from wiz_executor.journal import (
    AcceptedChunk,
    ChunkFailed,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    DeliveryDone,
    DeliveryPending,
    Record,
    RunConfigured,
    RunControlled,
    RunFinished,
    RunRetried,
    SqliteStore,
    _schema,
)

pytestmark = pytest.mark.anyio

T0 = 1_795_000_000.0


def chunk(i: int) -> ChunksAccepted:
    return ChunksAccepted(
        "noop", "r1", (AcceptedChunk(f"c{i}", f"c{i}-out", DataFormat.RAW, {"i": i}),), T0
    )


async def test_concurrent_appends_share_few_commits(sqlite_store: SqliteStore) -> None:
    await sqlite_store.append([RunConfigured("noop", "r1", {}, T0)])
    before = sqlite_store.commits
    n = 2000
    futures = [sqlite_store.append([chunk(i)]) for i in range(n)]
    await asyncio.gather(*futures)
    commits = sqlite_store.commits - before
    # One transaction per append would be 2000; the writer takes whatever is queued.
    assert 1 <= commits <= n // 20, commits
    assert sqlite_store.records_written == n + 1
    chunks = sqlite_store.load().runs[0].chunks or []
    assert [c.chunk_id for c in chunks] == [f"c{i}" for i in range(n)]


async def test_appends_from_many_tasks_share_commits(sqlite_store: SqliteStore) -> None:
    await sqlite_store.append([RunConfigured("noop", "r1", {}, T0)])
    before = sqlite_store.commits
    go = asyncio.Event()

    async def client(i: int) -> None:
        await go.wait()
        await sqlite_store.append([chunk(i)])

    tasks = [asyncio.create_task(client(i)) for i in range(500)]
    go.set()
    await asyncio.gather(*tasks)
    assert sqlite_store.commits - before <= 500 // 10
    assert len(sqlite_store.load().runs[0].chunks or []) == 500


async def test_a_cancelled_waiter_does_not_unjournal_or_disturb_others(
    sqlite_store: SqliteStore,
) -> None:
    first = sqlite_store.append([RunConfigured("noop", "r1", {}, T0)])
    second = sqlite_store.append([chunk(1)])
    first.cancel()
    await second
    assert [c.chunk_id for c in sqlite_store.load().runs[0].chunks or []] == ["c1"]


async def test_wal_mode_and_synchronous_follow_fsync(tmp_path: Path) -> None:
    for fsync, expected in ((False, 1), (True, 2)):  # NORMAL, FULL
        store = SqliteStore(tmp_path / f"{fsync}.db", fsync=fsync)
        store.open()
        try:
            conn = store._conn
            assert conn is not None
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA synchronous").fetchone()[0] == expected
        finally:
            await store.close()


async def test_the_journal_is_created_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "wiz.db"
    store = SqliteStore(path)
    store.open()
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == _schema.APPLICATION_ID
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(_schema.VERSION,)]
    finally:
        conn.close()


async def test_a_failed_write_fails_its_batch_and_every_later_one(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a failed commit nothing more is written, and every later waiter hears of it,
    even when the lost batch had no waiter (records appended without waiting): what
    came after may depend on what was lost, and the executor must refuse writes."""

    def broken(conn: sqlite3.Connection, records: list[object]) -> None:
        conn.execute("INSERT INTO settings VALUES ('half-done', NULL)")
        raise sqlite3.OperationalError("disk I/O error")

    await sqlite_store.append([RunConfigured("noop", "r0", {}, T0)])
    monkeypatch.setitem(sqlite_store._apply, RunConfigured, broken)
    sqlite_store.append_nowait([RunConfigured("noop", "r1", {}, T0)])  # nobody waits on it
    with pytest.raises(JournalError, match="writing the journal failed: disk I/O error"):
        await sqlite_store.append([RunConfigured("noop", "r2", {}, T0), chunk(1)])
    monkeypatch.undo()  # the disk is fine again, but what follows may need what was lost
    with pytest.raises(JournalError, match="disk I/O error"):
        await sqlite_store.append([RunConfigured("noop", "r3", {}, T0)])
    with pytest.raises(JournalError, match="disk I/O error"):
        await sqlite_store.flush()
    recovered = sqlite_store.load()
    assert [r.run_id for r in recovered.runs] == ["r0"]
    assert recovered.settings == {}  # the failed batch was rolled back whole


async def test_appending_to_a_closed_store_is_refused(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "wiz.db")
    store.open()
    fut = store.append([RunConfigured("noop", "r1", {}, T0)])
    await store.close()
    assert fut.done()
    assert fut.result() is None
    with pytest.raises(RuntimeError, match="not open"):
        store.append_nowait([chunk(1)])
    await store.close()  # idempotent


async def test_an_output_that_is_not_json_is_kept_as_its_string(
    sqlite_store: SqliteStore,
) -> None:
    class NotJson:
        def __str__(self) -> str:
            return "a NotJson"

    await sqlite_store.append([RunConfigured("noop", "r1", {}, T0), chunk(1)])
    await sqlite_store.append(
        [ChunkSucceeded("noop", "r1", "c1", 0, DataFormat.RAW, NotJson(), T0), chunk(2)]
    )
    stored = await sqlite_store.chunk("noop", "r1", "c1")
    assert stored.out_raw == "a NotJson"
    assert (await sqlite_store.chunk("noop", "r1", "c2")).chunk_id == "c2"  # batch kept


# -- files the store must refuse ----------------------------------------------------------


async def written_journal(path: Path, chunks: int = 0) -> None:
    store = SqliteStore(path)
    store.open()
    await store.append([RunConfigured("noop", "r1", {"x": "y" * 200}, T0)])
    for start in range(0, chunks, 500):
        await store.append([chunk(i) for i in range(start, min(chunks, start + 500))])
    await store.close()


async def refused(path: Path, error: type[JournalError] = JournalCorrupt) -> JournalError:
    """The error opening and loading `path` raises (whichever of the two finds it)."""
    store = SqliteStore(path)
    try:
        with pytest.raises(error) as info:  # noqa: PT012 (the damage may show at either step)
            store.open()
            store.load()
    finally:
        await store.close()
    assert str(path) in str(info.value)
    return info.value


@pytest.mark.parametrize(
    "content",
    [b"garbage, not a database\n" * 10, b"\x00" * 4096, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text", "zeros", "bad-header"],
)
async def test_a_file_that_is_not_a_journal_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "wiz.db"
    path.write_bytes(content)
    error = await refused(path)
    assert "restore it from a backup, or move it aside" in str(error)
    assert path.read_bytes() == content  # and left as it was


async def test_an_empty_file_is_refused_not_taken_for_a_new_journal(tmp_path: Path) -> None:
    path = tmp_path / "wiz.db"
    path.touch()
    assert "empty" in str(await refused(path))


async def test_a_truncated_journal_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wiz.db"
    await written_journal(path, chunks=3000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in str(await refused(path))


async def test_a_journal_damaged_inside_is_refused_at_load(tmp_path: Path) -> None:
    path = tmp_path / "wiz.db"
    await written_journal(path, chunks=3000)
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for at in range(4 * page, len(data), page):  # scribble over every page but the first few
        data[at : at + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    error = await refused(path)
    assert "malformed" in str(error) or "not a database" in str(error)


async def test_another_programs_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    assert "not a wiz journal" in str(await refused(path))
    conn = sqlite3.connect(path)
    try:  # untouched
        assert conn.execute("SELECT name FROM sqlite_schema").fetchall() == [("mine",)]
    finally:
        conn.close()


async def test_a_journal_of_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wiz.db"
    await written_journal(path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = ?", (_schema.VERSION + 1,))
    conn.commit()
    conn.close()
    error = await refused(path, JournalTooNew)
    assert isinstance(error, JournalTooNew)
    assert (error.version, error.supported) == (_schema.VERSION + 1, _schema.VERSION)
    assert "run the newer executor" in str(error)


async def test_an_older_journal_is_migrated_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wiz.db"
    await written_journal(path, chunks=3)
    newer = _schema.VERSION + 1
    v2 = "ALTER TABLE runs ADD COLUMN label TEXT DEFAULT 'v2'"
    monkeypatch.setattr(_schema, "MIGRATIONS", (*_schema.MIGRATIONS, v2))
    monkeypatch.setattr(_schema, "VERSION", newer)
    store = SqliteStore(path)
    store.open()
    try:
        [run] = store.load().runs
        assert [c.chunk_id for c in run.chunks or []] == ["c0", "c1", "c2"]
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(newer,)]
        assert conn.execute("SELECT label FROM runs").fetchall() == [("v2",)]
    finally:
        conn.close()


async def test_delete_and_purge_remove_the_rows_from_the_file(sqlite_store: SqliteStore) -> None:
    records: list[Any] = []
    for run in ("deleted", "purged", "kept"):
        records += [
            RunConfigured("noop", run, {}, T0),
            ChunksAccepted(
                "noop",
                run,
                tuple(AcceptedChunk(f"c{i}", f"c{i}-out", DataFormat.RAW, i) for i in range(50)),
                T0,
            ),
            DeliveryPending("noop", run, "c1", 0),
        ]
    records.append(RunFinished("noop", "purged", State.SUCCEEDED, T0))
    await sqlite_store.append(records)
    await sqlite_store.delete_run("noop", "deleted")
    assert await sqlite_store.purge(T0 + 1) == [("noop", "purged")]

    conn = sqlite3.connect(sqlite_store.path)
    try:
        rows = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("runs", "chunks", "deliveries")
        }
        run_ids = conn.execute("SELECT run_id FROM runs").fetchall()
    finally:
        conn.close()
    assert rows == {"runs": 1, "chunks": 50, "deliveries": 1}
    assert run_ids == [("kept",)]


async def test_a_journal_in_use_by_another_store_is_refused(sqlite_store: SqliteStore) -> None:
    # Two writers would each count a run's chunks from their own cache and overwrite
    # each other's rows: the second executor must not start.
    other = SqliteStore(sqlite_store.path)
    with pytest.raises(JournalError, match="in use by another executor") as info:
        other.open()
    assert str(sqlite_store.path) in str(info.value)
    await other.close()
    await sqlite_store.close()
    again = SqliteStore(sqlite_store.path)  # free once the first is closed
    again.open()
    await again.close()


async def test_a_rolled_back_batch_leaves_no_stale_run_behind(
    sqlite_store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(conn: sqlite3.Connection, records: list[object]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(sqlite_store._apply, ChunksAccepted, broken)
    with pytest.raises(JournalError):
        await sqlite_store.append([RunConfigured("noop", "r1", {}, T0), chunk(1)])
    monkeypatch.undo()
    await sqlite_store.close()  # a failed store writes nothing more: the executor restarts
    store = SqliteStore(sqlite_store.path)
    store.open()
    # r1 was rolled back with its batch: configuring it again must create it again.
    await store.append([RunConfigured("noop", "r1", {"again": 1}, T0), chunk(2)])
    [run] = store.load().runs
    await store.close()
    assert run.configuration == {"again": 1}
    assert [c.chunk_id for c in run.chunks or []] == ["c2"]


def _interleaved_life() -> list[Record]:
    """The records of several chunks interleaved as a busy executor emits them: starts
    and ends of different chunks mixed with acceptances, a retry in the middle, a
    delivery, a chunk left running, an attempt after a retry."""

    def started(c: str, n: int, t: float) -> ChunkStarted:
        return ChunkStarted("noop", "r1", c, n, T0 + t, "host", 7, f"w{n}")

    def succeeded(c: str, n: int, t: float) -> ChunkSucceeded:
        return ChunkSucceeded("noop", "r1", c, n, DataFormat.RAW, {"out": c}, T0 + t)

    config = {"ExecutorConfig": {"SendDownstream": True}}
    return [
        RunConfigured("noop", "r1", config, T0),
        ChunksAccepted(
            "noop",
            "r1",
            tuple(AcceptedChunk(f"c{i}", f"c{i}-out", DataFormat.RAW, {"i": i}) for i in range(4)),
            T0,
        ),
        started("c0", 1, 1),
        started("c1", 1, 1.5),
        chunk(4),
        succeeded("c0", 1, 2),
        DeliveryPending("noop", "r1", "c0", 0),
        started("c2", 1, 2.5),
        ChunkFailed("noop", "r1", "c1", 1, "boom", 3),
        started("c3", 1, 3.5),
        ChunkFailed("noop", "r1", "c2", 1, "bang", 4),
        DeliveryDone("noop", "r1", "c0", 0),
        RunRetried("noop", "r1", ("c1",), T0 + 5),
        started("c1", 2, 6),
        RunControlled("noop", "r1", {"MaxWorkers": 2, "Paused": False}),  # a live change
        chunk(5),
        succeeded("c1", 2, 7),
        started("c4", 1, 8),  # still running at the end
    ]


async def test_one_batch_leaves_what_one_commit_per_record_leaves(tmp_path: Path) -> None:
    """The writer merges a chunk's start with its end in the same batch and groups the
    batch's chunk records by kind (`_sqlite._coalesce`); what it stores must be what
    writing each record on its own stores."""
    records = _interleaved_life()
    batched, single = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    batched.open()
    single.open()
    try:
        await batched.append(records)
        for record in records:
            await single.append([record])
        assert batched.commits == 1
        assert single.commits == len(records)
        a, b = batched.load(), single.load()
    finally:
        await batched.close()
        await single.close()
    assert a == b
    (run,) = a.runs
    chunks = {c.chunk_id: c for c in run.chunks or []}
    assert [chunks[f"c{i}"].state.value for i in range(6)] == [
        "SUCCEEDED",
        "SUCCEEDED",
        "FAILED",
        "RUNNING",
        "RUNNING",
        "WAITING",
    ]
    assert chunks["c1"].out_raw == {"out": "c1"}
    assert chunks["c1"].error is None
    assert [(t.number, t.outcome) for t in chunks["c1"].attempts] == [
        (1, chunks["c2"].state),
        (2, chunks["c0"].state),
    ]
    assert chunks["c2"].attempts[0].error == "bang"
    assert run.deliveries == []
    assert run.control == {"MaxWorkers": 2, "Paused": False}
