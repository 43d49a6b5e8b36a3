"""Version 3 of the journal's schema: two partial indexes in place of `chunks_by_output`
and `chunks_by_state` (`_schema._V3`). A version-2 file opens, migrates and recovers, and
the reads that used the old indexes find the same chunks through the new ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from wiz_executor.api import DataChunkState
from wiz_executor.errors import ChunkNotFound
from wiz_executor.journal import ChunkFailed, SqliteStore, _schema

pytestmark = pytest.mark.anyio

T0 = 1_795_000_000.5
FAILED, SUCCEEDED = DataChunkState.FAILED, DataChunkState.SUCCEEDED
CHUNKS: dict[str, list[tuple[str, str, int]]] = {
    # run: (ChunkID, output ID, state code) in arrival order
    "r1": [("c1", "c1-out", 1), ("c2", "c2-out", 3), ("c3", "c3-out", 4), ("c4", "mine", 2)],
    "r2": [("s1", "s1-out", 3), ("f1", "f1-out", 4), ("x1", "s1-out-2", 3), ("f2", "f2-out", 4)],
}


def version_2_journal(path: Path) -> None:
    """A journal as version 2 wrote it, from the schema text of versions 1 and 2 and
    rows in the form the writer of that version gave them."""
    encode = msgspec.json.encode
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA application_id={_schema.APPLICATION_ID}")
        for script in _schema.MIGRATIONS[:2]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute("UPDATE schema_version SET version = 2")
        conn.execute(
            "INSERT INTO runs (rid, proc_id, run_id, configuration, created) VALUES"
            " (1, 'noop', 'r1', '{}', ?), (2, 'noop', 'r2', '{}', ?)",
            (T0, T0),
        )
        conn.execute(
            "UPDATE runs SET state = 3, finished = ?, counts = '[0,0,2,2]' WHERE rid = 2", (T0,)
        )
        for rid, run in ((1, "r1"), (2, "r2")):
            for seq, (chunk_id, output_id, state) in enumerate(CHUNKS[run], 1):
                data = ("RAW", {"n": seq}, "", "", output_id.endswith("-out"), T0)
                attempts = None
                if state > 1:
                    outcome = {3: "SUCCEEDED", 4: "FAILED"}.get(state)
                    attempt = (1, T0, T0 + 1 if outcome else None, outcome, None, "h", 1, "w", "")
                    attempts = encode([attempt]).decode()
                conn.execute(
                    "INSERT INTO chunks (rid, seq, chunk_id, output_id, input, state, output,"
                    " error, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rid,
                        seq,
                        chunk_id,
                        output_id,
                        encode(data),
                        state,
                        encode(("RAW", f"out {chunk_id}", "", "")) if state == 3 else None,
                        "boom" if state == 4 else None,
                        attempts,
                    ),
                )
    finally:
        conn.close()


async def ids(store: SqliteStore, run: str, state: DataChunkState | None = None) -> list[str]:
    return [c.chunk_id for c in await store.chunks("noop", run, state=state)]


async def test_a_version_2_journal_opens_migrates_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "wiz.db"
    version_2_journal(path)
    store = SqliteStore(path)
    store.open()
    try:
        recovered = store.load()
        r1, r2 = recovered.runs
        assert [(c.chunk_id, c.output_id, c.state.value) for c in r1.chunks or []] == [
            ("c1", "c1-out", "WAITING"),
            ("c2", "c2-out", "SUCCEEDED"),
            ("c3", "c3-out", "FAILED"),
            ("c4", "mine", "RUNNING"),
        ]
        assert (r1.chunks or [])[1].out_raw == "out c2"
        assert r2.state is not None  # finished: counts only, its chunks stay on disk
        assert r2.chunks is None
        assert r2.counts == {
            DataChunkState.WAITING: 0,
            DataChunkState.RUNNING: 0,
            SUCCEEDED: 2,
            FAILED: 2,
        }
        # The reads the dropped indexes served.
        assert await ids(store, "r2", FAILED) == ["f1", "f2"]
        assert await ids(store, "r2", SUCCEEDED) == ["s1", "x1"]
        assert await ids(store, "r1", DataChunkState.WAITING) == ["c1"]
        assert (await store.output("noop", "r2", "s1-out-2")).chunk_id == "x1"
        assert (await store.output("noop", "r2", "s1-out")).chunk_id == "s1"
        assert (await store.output("noop", "r1", "mine")).chunk_id == "c4"
        for gone in ("c4-out", "c4", "nothing-out", "-out"):
            with pytest.raises(ChunkNotFound):
                await store.output("noop", "r1", gone)
        # New writes keep the new index: c1 fails, and is paged as FAILED.
        await store.append([ChunkFailed("noop", "r1", "c1", 0, "late", T0 + 5)])
        assert await ids(store, "r1", FAILED) == ["c1", "c3"]
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(3,)]
        indexes = {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'chunks'"
                " AND sql IS NOT NULL"
            )
        }
        assert indexes == {"chunks_by_id", "chunks_failed", "chunks_by_chosen_output"}
    finally:
        conn.close()


async def test_the_reads_by_state_and_output_use_the_partial_indexes(tmp_path: Path) -> None:
    """The planner takes a partial index only when the query's WHERE implies the index's:
    the statements the store runs must name them in their plans, not scan the run."""
    path = tmp_path / "wiz.db"
    version_2_journal(path)
    store = SqliteStore(path)
    store.open()
    statements: list[str] = []
    try:
        # (set on the reader's thread, which owns its connection)
        await store._read(lambda conn: conn.set_trace_callback(statements.append))
        await store.chunks("noop", "r2", state=FAILED)
        await store.output("noop", "r1", "mine")
        await store.output("noop", "r1", "c2-out")
        await store._read(lambda conn: conn.set_trace_callback(None))
    finally:
        await store.close()
    plans: dict[str, list[Any]] = {}
    conn = sqlite3.connect(path)
    try:
        for sql in statements:
            if "FROM chunks" in sql:
                plans[sql] = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    finally:
        conn.close()
    steps = [step for plan in plans.values() for step in plan]
    assert any("INDEX chunks_failed" in step for step in steps), plans
    assert any("INDEX chunks_by_chosen_output" in step for step in steps), plans
    assert any("INDEX chunks_by_id" in step for step in steps), plans
    assert not [step for step in steps if step.startswith("SCAN")], plans
