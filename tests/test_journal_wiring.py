"""The journal behind the run map, in process: what an answer promises is in the file,
recovery is visible and refuses writes until done, shutdown keeps unfinished work,
DELETE forgets a run's rows and files, --ephemeral writes nothing."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import wiz_executor.executor as executor_module
from _gates import asgi_client, configure, run_path
from conftest import live_server, wait_for, wait_run_done
from wiz_executor import (
    Configuration,
    DataChunkState,
    DataFormat,
    Executor,
    Registry,
    Settings,
    WorkModel,
)
from wiz_executor.journal import (
    AcceptedChunk,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    DeliveryFailed,
    DeliveryPending,
    RunConfigured,
    SqliteStore,
)
from wiz_executor.processors import BUILTINS
from wiz_executor.runs import Chunk, Run, RunMap

pytestmark = pytest.mark.anyio


def rows(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the journal file through a connection of its own (what a restart would see)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


async def write_journal(db: Path, proc: str, chunks: int, starts: int = 0) -> None:
    """A journal as a killed executor leaves it: run `r` of `proc` with `chunks`
    accepted, the first one started `starts` times and never ended."""
    store = SqliteStore(db)
    store.open()
    config = Configuration.model_validate({"Processor": {}}).model_dump(mode="json")
    accepted = tuple(AcceptedChunk(f"c{i}", f"c{i}-out", "RAW", {"i": i}) for i in range(chunks))
    records: list[Any] = [
        RunConfigured(proc, "r", config, 1.0),
        ChunksAccepted(proc, "r", accepted, 2.0),
    ]
    records += [ChunkStarted(proc, "r", "c0", n, 3.0 + n) for n in range(1, starts + 1)]
    await store.append(records)
    await store.close()


async def test_an_answered_add_data_is_in_the_journal_file(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await configure(client, "noop", "r")
    resp = await client.post(
        run_path("noop", "r") + "/data", json=[{"ChunkID": "a"}, {"ChunkID": "b"}]
    )
    assert resp.status_code == 200, resp.text
    assert settings.db_path is not None
    held = rows(settings.db_path, "SELECT chunk_id FROM chunks ORDER BY seq")
    assert held == [("a",), ("b",)]
    resp = await client.post(run_path("noop", "r") + "/end-of-input")
    assert resp.status_code == 200
    assert rows(settings.db_path, "SELECT input_closed FROM runs") == [(1,)]


async def test_recovery_is_visible_and_refuses_writes_until_done(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.db_path is not None
    await write_journal(settings.db_path, "noop", chunks=3, starts=1)
    release = threading.Event()

    class HeldLoad(SqliteStore):
        def load(self) -> Any:
            assert release.wait(30)
            return super().load()

    monkeypatch.setattr(executor_module, "SqliteStore", HeldLoad)
    async with Executor(settings) as ex, asgi_client(ex) as client:
        health = (await client.get("/healthz")).json()
        assert health["status"] == "recovering"
        resp = await client.post(run_path("noop", "r") + "/data", json={"ChunkID": "new"})
        assert resp.status_code == 503
        assert resp.headers["Retry-After"]
        assert "recovering" in resp.json()["value"]
        resp = await client.post(run_path("noop", "other") + "/config", json={})
        assert resp.status_code == 503
        release.set()
        await ex.recovered()
        assert (await client.get("/healthz")).json()["status"] == "ok"
        assert ex.recovery["requeued"] == 3
        resp = await client.post(run_path("noop", "r") + "/end-of-input")
        assert resp.status_code == 200
        run = await wait_run_done(client, "noop", "r")
        assert run["CurrentState"] == "SUCCEEDED"
        first = (await client.get(run_path("noop", "r") + "/data/input/c0")).json()
        # Its first attempt died with the process; the second ended.
        assert [a["Outcome"] for a in first["Attempts"]] == [None, "SUCCEEDED"]
        assert [a["Attempt"] for a in first["Attempts"]] == [1, 2]


async def test_recovery_fails_chunks_that_reached_max_attempts(settings: Settings) -> None:
    assert settings.db_path is not None
    await write_journal(settings.db_path, "noop", chunks=2, starts=3)
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await ex.recovered()
        assert ex.recovery["poison"] == 1
        resp = await client.post(run_path("noop", "r") + "/end-of-input")
        assert resp.status_code == 200
        run = await wait_run_done(client, "noop", "r")
        assert run["ChunkCounts"]["FAILED"] == 1
        assert run["ChunkCounts"]["SUCCEEDED"] == 1
        poison = (await client.get(run_path("noop", "r") + "/data/input/c0")).json()
        assert poison["Error"] == (
            "ran 3 times without ending (the executor stopped or crashed each time); "
            "giving up after --max-attempts 3"
        )


async def test_a_run_whose_processor_is_gone_fails_its_unfinished_chunks(
    settings: Settings,
) -> None:
    assert settings.db_path is not None
    await write_journal(settings.db_path, "vanished", chunks=2)
    async with Executor(settings) as ex:
        await ex.recovered()
        run = ex.runs.get("vanished", "r")
        errors = {c.error for c in run.chunks.values()}
        assert len(errors) == 1
        (error,) = errors
        assert error is not None
        assert "'vanished' is not served" in error
        assert run.counts[DataChunkState.FAILED] == 2


async def test_durable_shutdown_keeps_unfinished_chunks_for_the_restart(
    settings: Settings,
) -> None:
    assert settings.db_path is not None
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await configure(client, "noop", "r", MaxWorkers=1)
        body = [{"ChunkID": c, "RawData": {"SleepMs": 60_000}} for c in ("a", "b", "c")]
        assert (await client.post(run_path("noop", "r") + "/data", json=body)).is_success
        await wait_for(lambda: ex.runs.get("noop", "r").chunks["a"].state.value == "RUNNING")
        await ex.shutdown(grace=0)
        # In memory too: the cancelled chunk is back to WAITING, its attempt ended.
        held = ex.runs.get("noop", "r").chunks
        assert held["a"].state is DataChunkState.WAITING
        assert held["a"].attempts is not None
        assert held["a"].attempts[-1].ended is not None
        assert ex.runs.counts[DataChunkState.RUNNING] == 0
    store = SqliteStore(settings.db_path)
    store.open()
    try:
        (run,) = store.load().runs
    finally:
        await store.close()
    assert run.chunks is not None
    states = {c.chunk_id: c.state.value for c in run.chunks}
    assert states == {"a": "RUNNING", "b": "WAITING", "c": "WAITING"}  # none FAILED
    (attempt,) = run.chunks[0].attempts
    assert attempt.outcome is None  # cut short: it runs again after the restart


async def test_delete_removes_the_run_s_journal_rows_and_files(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.db_path is not None
    await configure(client, "noop", "r", num_chunks=1)
    assert (await client.post(run_path("noop", "r") + "/data", json={"ChunkID": "a"})).is_success
    await wait_run_done(client, "noop", "r")
    await configure(client, "noop", "kept")
    folder = settings.data_dir / "noop" / "r" / "a"
    folder.mkdir(parents=True)
    (folder / "scratch.txt").write_text("left by the processor")
    assert rows(settings.db_path, "SELECT count(*) FROM chunks") == [(1,)]
    resp = await client.delete(run_path("noop", "r"))
    assert resp.status_code == 200
    assert not (settings.data_dir / "noop" / "r").exists()
    assert rows(settings.db_path, "SELECT run_id FROM runs") == [("kept",)]
    assert rows(settings.db_path, "SELECT count(*) FROM chunks") == [(0,)]


async def test_ephemeral_writes_no_journal(settings: Settings) -> None:
    ephemeral = dataclasses.replace(settings, ephemeral=True)
    async with Executor(ephemeral) as ex, asgi_client(ex) as client:
        await configure(client, "noop", "r", num_chunks=1)
        assert (
            await client.post(run_path("noop", "r") + "/data", json={"ChunkID": "a"})
        ).is_success
        await wait_run_done(client, "noop", "r")
        assert not ex.runs.durable
    assert settings.db_path is not None
    assert not settings.db_path.exists()


async def test_a_pending_delivery_is_resent_after_a_restart(
    tmp_path: Path, settings: Settings
) -> None:
    """An output journalled with its delivery pending (the process died before it was
    delivered) is sent after the restart, and is no longer pending once delivered."""
    assert settings.db_path is not None
    receiver = Settings(data_dir=tmp_path / "receiver", ephemeral=True)
    async with live_server(receiver) as (url, downstream):
        sink = Configuration.model_validate({})
        downstream.configure("noop", "sink", sink)
        hostname = url.removeprefix("http://")
        config = Configuration.model_validate(
            {
                "ExecutorConfig": {
                    "SendDownstream": True,
                    "DownstreamLocations": [
                        {"Hostname": hostname, "ProcID": "noop", "RunID": "sink"}
                    ],
                }
            }
        ).model_dump(mode="json")
        store = SqliteStore(settings.db_path)
        store.open()
        await store.append(
            [
                RunConfigured("noop", "r", config, 1.0),
                ChunksAccepted("noop", "r", (AcceptedChunk("c0", "c0-out", "RAW", {"x": 1}),), 2.0),
                ChunkStarted("noop", "r", "c0", 1, 3.0),
                ChunkSucceeded("noop", "r", "c0", 1, DataFormat.RAW, {"x": 1}, 4.0),
                DeliveryPending("noop", "r", "c0", 0),
            ]
        )
        await store.close()
        async with Executor(settings) as ex:
            await ex.recovered()
            assert ex.recovery["deliveries"] == 1
            sink_run = downstream.runs.get("noop", "sink")
            await wait_for(lambda: "c0-out" in sink_run.chunks, what="the resent output")
            assert sink_run.chunks["c0-out"].raw_data == {"x": 1}
            await wait_for(lambda: ex.runs.get("noop", "r").deliveries_pending == 0)
    store = SqliteStore(settings.db_path)
    store.open()
    try:
        (run,) = store.load().runs
    finally:
        await store.close()
    assert run.deliveries == []


async def test_a_recovered_run_is_held_to_this_start_s_ceilings(settings: Settings) -> None:
    """`MaxBytes` 0 means the operator's --max-download-bytes: after a restart too (it
    was restored unlimited, since only Configure applied the ceilings)."""
    assert settings.db_path is not None
    store = SqliteStore(settings.db_path)
    store.open()
    config = Configuration.model_validate({"Processor": {"MaxBytes": 0}}).model_dump(mode="json")
    await store.append([RunConfigured("get", "r", config, 1.0)])
    await store.close()
    limited = dataclasses.replace(settings, max_download_bytes=1000)
    async with Executor(limited) as ex:
        await ex.recovered()
        assert ex.runs.get("get", "r").processor_config.MaxBytes == 1000  # type: ignore[attr-defined]


async def test_a_failed_delivery_is_still_failed_and_retried_after_a_restart(
    settings: Settings,
) -> None:
    """A run whose output could not be delivered ends ERRORED after a restart too, and
    `retry` sends that output again (recovery kept its delivery error only on the chunk,
    so the run could end SUCCEEDED and retry skipped it)."""
    assert settings.db_path is not None
    where = [{"Hostname": "127.0.0.1:1", "ProcID": "noop", "RunID": "sink"}]
    config = Configuration.model_validate(
        {
            "ExpectedData": {"NumChunks": 2},
            "ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": where},
        }
    ).model_dump(mode="json")
    accepted = tuple(AcceptedChunk(c, f"{c}-out", "RAW", 1) for c in ("c0", "c1"))
    store = SqliteStore(settings.db_path)
    store.open()
    await store.append(
        [
            RunConfigured("noop", "r", config, 1.0),
            ChunksAccepted("noop", "r", accepted, 2.0),
            ChunkSucceeded("noop", "r", "c0", 0, DataFormat.RAW, 1, 4.0),
            DeliveryPending("noop", "r", "c0", 0),
            DeliveryFailed("noop", "r", "c0", 0, "127.0.0.1:1 noop/sink: refused"),
        ]
    )
    await store.close()
    async with Executor(settings) as ex:
        await ex.recovered()
        run = ex.runs.get("noop", "r")
        assert run.undelivered == {"c0": (0,)}
        await wait_for(lambda: run.counts[DataChunkState.SUCCEEDED] == 1, what="c1 to run")
        # c1's output waits for its delivery (to a closed port) through the window: the
        # run is not SUCCEEDED, and c0's failure counts.
        assert run.deliveries_failed == 1
        assert run.state.value != "SUCCEEDED"


async def test_retry_is_refused_while_recovering(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings.db_path is not None
    await write_journal(settings.db_path, "noop", chunks=1)
    release = threading.Event()

    class HeldLoad(SqliteStore):
        def load(self) -> Any:
            assert release.wait(30)
            return super().load()

    monkeypatch.setattr(executor_module, "SqliteStore", HeldLoad)
    async with Executor(settings) as ex, asgi_client(ex) as client:
        resp = await client.post(run_path("noop", "r") + "/retry")
        assert resp.status_code == 503, resp.text
        release.set()
        await ex.recovered()
        resp = await client.post(run_path("noop", "r") + "/retry")
        assert resp.status_code == 200, resp.text


def test_interrupting_a_running_chunk_puts_it_back_to_waiting() -> None:
    """The run map's side of a durable shutdown: RUNNING back to WAITING, the attempt
    ended without an outcome, counts and listeners told, the finished totals untouched."""
    runs = RunMap()
    run = Run("noop", "r", Configuration(), Configuration(), 1, WorkModel.POOL, None)
    runs.insert(run)
    chunk = Chunk("c", "c-out", DataFormat.RAW, None, "", "", False)
    runs.accept(run, [chunk])
    runs.start(run, chunk, "worker-1")
    told: list[str] = []
    runs.listeners.append(lambda _run, c: told.append(c.state.value if c else "run"))
    runs.interrupt(run, chunk)
    assert chunk.state is DataChunkState.WAITING
    assert told == ["WAITING"]
    assert run.counts[DataChunkState.WAITING] == 1
    assert run.counts[DataChunkState.RUNNING] == 0
    assert run.finished_totals == {DataChunkState.SUCCEEDED: 0, DataChunkState.FAILED: 0}
    assert chunk.attempts is not None
    (attempt,) = chunk.attempts
    assert attempt.ended is not None
    assert attempt.outcome is None


async def test_adddata_to_a_run_of_a_processor_no_longer_served_is_a_404(
    settings: Settings,
) -> None:
    """A run recovered for a processor the restarted executor no longer serves answers
    AddData as GetRun does, 404 for the processor, not 409 (its input closed) or 200."""
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await configure(client, "noop", "r")
        resp = await client.post(run_path("noop", "r") + "/data", json={"ChunkID": "c"})
        assert resp.status_code == 200, resp.text
    without_noop = Registry([p for p in BUILTINS if p.id != "noop"])
    async with Executor(settings, without_noop) as ex, asgi_client(ex) as client:
        await ex.recovered()
        assert ex.runs.find("noop", "r") is not None  # recovered, for the journal's sake
        for chunk_id in ("c", "d"):  # a resend and a new chunk
            resp = await client.post(run_path("noop", "r") + "/data", json={"ChunkID": chunk_id})
            assert resp.status_code == 404, resp.text
        assert (await client.get(run_path("noop", "r"))).status_code == 404
