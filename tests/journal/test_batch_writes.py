"""What the writer stores from a batch (records regrouped and merged by `_sqlite._coalesce`,
written per kind) must be what writing each record on its own stores, whatever the
values: NULs and escapes in IDs and errors, floats that need all their digits, values
that are not JSON, several attempts of one chunk in one batch, changes to chunks that
are not there."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from wiz_executor.api import DataFormat
from wiz_executor.journal import (
    AcceptedChunk,
    ChunkFailed,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    Record,
    Recovered,
    RunConfigured,
    SqliteStore,
    _schema,
)
from wiz_executor.journal import _sqlite as sqlite_module

pytestmark = pytest.mark.anyio

T0 = 1_795_000_000.123456789
ODD_IDS = ("plain", "nul\x00inside", 'quote"back\\slash', "tab\tnewline\n", "é😀", "\\u0000")
"""ChunkIDs that JSON escapes (and a NUL, which SQLite's `->>` would cut)."""


def accepted(ids: tuple[str, ...], raw: Any = None) -> ChunksAccepted:
    return ChunksAccepted(
        "noop",
        "r1",
        tuple(
            AcceptedChunk(
                c, f"{c}-out", DataFormat.RAW, {"id": c, "f": 0.1 + 0.2} if raw is None else raw
            )
            for c in ids
        ),
        T0,
    )


def lives(ids: tuple[str, ...]) -> list[Record]:
    """Each chunk: accepted, then started and ended (ended alternately SUCCEEDED with an
    output holding long floats and escapes, and FAILED with an odd error)."""
    records: list[Record] = [RunConfigured("noop", "r1", {}, T0), accepted(ids)]
    for i, c in enumerate(ids):
        records.append(ChunkStarted("noop", "r1", c, 1, T0 + i / 3, "hö\x00st", 7, f'w"{i}'))
        if i % 2:
            records.append(ChunkFailed("noop", "r1", c, 1, f'bad\x00{c}\n"', T0 + i / 7))
        else:
            out = {"c": c, "x": [1e300, -2.5e-300, 2**63 - 1, None, True], "s": "\u2028\\"}
            records.append(
                ChunkSucceeded("noop", "r1", c, 1, DataFormat.FILESYSTEM_REF, out, T0 + i / 7)
            )
    return records


async def stored(path: Path, batches: list[list[Record]]) -> Recovered:
    store = SqliteStore(path)
    store.open()
    try:
        for batch in batches:
            await store.append(batch)
        return store.load()
    finally:
        await store.close()


@pytest.mark.parametrize("ids", [ODD_IDS, ODD_IDS[2:]], ids=["with-a-nul", "without-a-nul"])
async def test_a_batch_stores_what_one_record_per_commit_stores(
    tmp_path: Path, ids: tuple[str, ...]
) -> None:
    records = lives(ids)
    batched = await stored(tmp_path / "a.db", [records])
    single = await stored(tmp_path / "b.db", [[r] for r in records])
    assert batched == single
    (run,) = batched.runs
    chunks = {c.chunk_id: c for c in run.chunks or []}
    assert sorted(chunks) == sorted(ids)
    for i, c in enumerate(ids):
        chunk = chunks[c]
        assert chunk.raw_data == {"id": c, "f": 0.1 + 0.2}
        assert chunk.accepted == T0
        (attempt,) = chunk.attempts
        assert (attempt.started, attempt.host, attempt.worker) == (T0 + i / 3, "hö\x00st", f'w"{i}')
        assert attempt.ended == T0 + i / 7
        if i % 2:
            assert chunk.state.value == "FAILED"
            assert chunk.error == attempt.error == f'bad\x00{c}\n"'
        else:
            assert chunk.state.value == "SUCCEEDED"
            assert chunk.out_raw == {
                "c": c,
                "x": [1e300, -2.5e-300, 2**63 - 1, None, True],
                "s": "\u2028\\",
            }


async def test_starts_and_ends_in_separate_batches_keep_every_digit(tmp_path: Path) -> None:
    ids = ODD_IDS[2:]
    records = lives(ids)
    head, starts, ends = records[:2], records[2::2], records[3::2]
    apart = await stored(tmp_path / "a.db", [head, starts, ends])
    single = await stored(tmp_path / "b.db", [[r] for r in head + starts + ends])
    assert apart == single
    chunks = {c.chunk_id: c for c in apart.runs[0].chunks or []}
    assert chunks[ids[0]].attempts[0].started == T0
    assert chunks[ids[1]].attempts[0].ended == T0 + 1 / 7


async def test_later_attempts_of_one_chunk_in_one_batch_apply_in_order(tmp_path: Path) -> None:
    def attempt(n: int, ok: bool) -> list[Record]:
        end: Record = (
            ChunkSucceeded("noop", "r1", "c", n, DataFormat.RAW, n, T0 + n + 0.5)
            if ok
            else ChunkFailed("noop", "r1", "c", n, f"fail {n}", T0 + n + 0.5)
        )
        return [ChunkStarted("noop", "r1", "c", n, T0 + n), end]

    records = [RunConfigured("noop", "r1", {}, T0), accepted(("c",))]
    records += attempt(1, False) + attempt(2, False) + attempt(3, False) + attempt(4, True)
    batched = await stored(tmp_path / "a.db", [records])
    single = await stored(tmp_path / "b.db", [[r] for r in records])
    assert batched == single
    (chunk,) = batched.runs[0].chunks or []
    assert [(a.number, a.outcome.value, a.error) for a in chunk.attempts] == [
        (1, "FAILED", "fail 1"),
        (2, "FAILED", "fail 2"),
        (3, "FAILED", "fail 3"),
        (4, "SUCCEEDED", None),
    ]
    assert (chunk.state.value, chunk.out_raw, chunk.error) == ("SUCCEEDED", 4, None)


async def test_changes_to_chunks_that_are_not_there_create_no_row(tmp_path: Path) -> None:
    records = [
        RunConfigured("noop", "r1", {}, T0),
        accepted(("c1",)),
        ChunkStarted("noop", "r1", "ghost", 1, T0),
        ChunkSucceeded("noop", "r1", "ghost", 1, DataFormat.RAW, 1, T0),
        ChunkStarted("noop", "r1", "c1", 1, T0),
        ChunkFailed("noop", "r1", "ghost2", 0, "x", T0),
        ChunkSucceeded("noop", "r1", "c1", 1, DataFormat.RAW, 1, T0),
    ]
    recovered = await stored(tmp_path / "a.db", [records[:2], records[2:]])
    (chunk,) = recovered.runs[0].chunks or []
    assert (chunk.chunk_id, chunk.state.value, len(chunk.attempts)) == ("c1", "SUCCEEDED", 1)


async def test_an_input_that_is_not_json_is_kept_as_its_string_and_the_batch_too(
    tmp_path: Path,
) -> None:
    class NotJson:
        def __str__(self) -> str:
            return "a NotJson"

    records = [
        RunConfigured("noop", "r1", {}, T0),
        accepted(("ok1",)),
        accepted(("bad",), NotJson()),
    ]
    records.append(accepted(("ok2",)))
    (run,) = (await stored(tmp_path / "a.db", [records])).runs
    chunks = {c.chunk_id: c.raw_data for c in run.chunks or []}
    assert chunks == {
        "ok1": {"id": "ok1", "f": 0.1 + 0.2},
        "bad": "a NotJson",
        "ok2": {"id": "ok2", "f": 0.1 + 0.2},
    }


async def test_a_batch_of_chunks_is_written_in_a_few_statements(tmp_path: Path) -> None:
    """200 chunks accepted in one batch, then started and ended in another: a handful of
    statements of many rows each, not one per row (`executemany` runs its statement, and
    takes the GIL back, once per row)."""
    store = SqliteStore(tmp_path / "a.db")
    store.open()
    statements: list[str] = []
    try:
        await store.append([RunConfigured("noop", "r1", {}, T0)])
        assert store._conn is not None
        store._conn.set_trace_callback(statements.append)  # (called on the writer thread)
        ids = tuple(f"c{i}" for i in range(200))
        await store.append([accepted(ids)])
        ran: list[Record] = []
        for i, c in enumerate(ids):
            ran.append(ChunkStarted("noop", "r1", c, 1, T0 + i, "host", 7, "w"))
            ran.append(ChunkSucceeded("noop", "r1", c, 1, DataFormat.RAW, i, T0 + i))
        await store.append(ran)
        store._conn.set_trace_callback(None)
        (run,) = store.load().runs
    finally:
        await store.close()
    assert [c.state.value for c in run.chunks or []] == ["SUCCEEDED"] * 200
    writes = [sql for sql in statements if "chunks" in sql]
    assert len(writes) <= 12, [sql[:80] for sql in writes[:20]]


def test_the_many_row_changes_find_each_chunk_by_its_index(tmp_path: Path) -> None:
    """The statements that change many chunks at once join their rows to `chunks`: the
    plan must search `chunks` by (rid, ChunkID) for each row, never scan it."""
    conn = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    try:
        _schema.prepare(conn, tmp_path / "a.db")
        changes = [v for v in vars(sqlite_module).values() if isinstance(v, sqlite_module._Changes)]
        assert changes
        for change in changes:
            for sql in change.sql.values():
                params = [None] * sql.count("?")
                plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
                assert any(step.startswith("SEARCH c USING") for step in plan), plan
                assert not [step for step in plan if step.startswith("SCAN c")], plan
    finally:
        conn.close()
