"""Live changes and pauses survive a restart: the `RunControlled` record in both stores,
a journal of schema version 1 migrated, and real `wiz executor` processes killed with
SIGKILL while a run is paused and changed."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from _wiz_process import WizProcess, chunk, configure, get_json, run_path, wait_finished
from wiz_executor.journal import (
    JournalStore,
    MemoryStore,
    RunConfigured,
    RunControlled,
    RunDeleted,
    SqliteStore,
    _schema,
)

pytestmark = pytest.mark.anyio

T0 = 1_795_000_000.0


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_the_last_control_record_is_what_load_gives(tmp_path: Path, kind: str) -> None:
    store: JournalStore = SqliteStore(tmp_path / "wiz.db") if kind == "sqlite" else MemoryStore()
    store.open()
    try:
        await store.append(
            [
                RunConfigured("noop", "r1", {}, T0),
                RunConfigured("noop", "r2", {}, T0),
                RunControlled("noop", "r1", {"Paused": True}),
                RunControlled("noop", "r1", {"Paused": False, "MaxWorkers": 3}),
                RunControlled("noop", "gone", {"Paused": True}),  # (no such run: ignored)
            ]
        )
        runs = {r.run_id: r for r in store.load().runs}
        assert runs["r1"].control == {"Paused": False, "MaxWorkers": 3}
        assert runs["r2"].control is None
        await store.append([RunDeleted("noop", "r1")])
        assert [r.run_id for r in store.load().runs] == ["r2"]
    finally:
        await store.close()


async def test_a_version_1_journal_is_migrated_and_takes_control_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "wiz.db"
    with monkeypatch.context() as old:  # written by the release before live control
        old.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:1])
        old.setattr(_schema, "VERSION", 1)
        store = SqliteStore(path)
        store.open()
        await store.append([RunConfigured("noop", "r1", {"x": 1}, T0)])
        await store.close()
    store = SqliteStore(path)
    store.open()
    try:
        [run] = store.load().runs
        assert (run.configuration, run.control) == ({"x": 1}, None)
        await store.append([RunControlled("noop", "r1", {"Paused": True})])
        assert store.load().runs[0].control == {"Paused": True}
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(_schema.VERSION,)]
    finally:
        conn.close()


N = 40


async def test_a_paused_and_changed_run_survives_sigkill(tmp_path: Path) -> None:
    """Paused, changed (MaxWorkers, ChunkTimeout, WorkModel), chunks accepted while
    paused, then SIGKILL: after the restart the run is still paused with every chunk
    WAITING, its configuration is the changed one (and the original Configure is still
    a no-op); resumed, every chunk runs exactly once."""
    wiz = WizProcess(tmp_path)
    path = run_path("noop", "r")
    original: dict[str, Any] = {
        "ExpectedData": {"NumChunks": N},
        "ExecutorConfig": {"MaxWorkers": 2, "WorkModel": "POOL"},
        "Processor": {},
    }
    try:
        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            await configure(
                client,
                "noop",
                "r",
                {},
                MaxWorkers=2,
                WorkModel="POOL",
                extra={"ExpectedData": {"NumChunks": N}},
            )
            resp = await client.post(f"{path}/pause")
            assert resp.status_code == 200, resp.text
            change = {"MaxWorkers": 5, "ChunkTimeout": 30, "WorkModel": "LIFETIME"}
            resp = await client.patch(f"{path}/config", json=change)
            assert resp.status_code == 200, resp.text
            for i in range(0, N, 10):
                body = [chunk(f"c{j:02d}") for j in range(i, i + 10)]
                resp = await client.post(f"{path}/data", json=body)
                assert resp.status_code == 200, resp.text
            run = await get_json(client, path)
            assert run["Paused"] is True
            assert run["ChunkCounts"]["WAITING"] == N
        assert await wiz.kill(signal.SIGKILL) == -signal.SIGKILL

        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            run = await get_json(client, path)
            assert run["Paused"] is True
            assert run["CurrentState"] == "RUNNING"
            assert run["ChunkCounts"]["WAITING"] == N
            ec = (await get_json(client, f"{path}/config"))["ExecutorConfig"]
            assert (ec["MaxWorkers"], ec["ChunkTimeout"], ec["WorkModel"]) == (5, 30, "LIFETIME")
            again = await client.post(f"{path}/config", json=original)
            assert again.status_code == 200, again.text
            resp = await client.post(f"{path}/resume")
            assert resp.status_code == 200, resp.text
            final = await wait_finished(client, "noop", "r")
            assert final["CurrentState"] == "SUCCEEDED", final
            assert "Paused" not in final
            data = await get_json(client, f"{path}/data")
            ids = sorted(c["ChunkID"] for c in data["In"])
            assert ids == [f"c{j:02d}" for j in range(N)]
            assert all(len(c["Attempts"]) == 1 for c in data["In"])  # ran exactly once
            assert sorted(o["AssociatedChunkID"] for o in data["Out"]) == ids
        # Resumed is journalled too: a second restart finds the run finished, not paused.
        assert await wiz.kill(signal.SIGKILL) == -signal.SIGKILL
        await wiz.start()
        async with httpx.AsyncClient(base_url=wiz.url, timeout=30) as client:
            run = await get_json(client, path)
            assert run["CurrentState"] == "SUCCEEDED"
            assert "Paused" not in run
    finally:
        await wiz.stop()
