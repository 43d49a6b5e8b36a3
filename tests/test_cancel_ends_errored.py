"""A cancelled run ends ERRORED, never SUCCEEDED, even when nothing waited at the
cancel (nothing failed) or it never reached its NumChunks; the mark is journalled (the
run's live control record, `"Cancelled": true`), survives a restart, and a retry that
runs chunks again takes it away."""

from __future__ import annotations

from pathlib import Path

import pytest

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import wait_for, wait_run_done
from test_cancel import chunks
from wiz_executor import DataChunkState, Executor, ProcessorConfig, Settings
from wiz_executor.api import Configuration, WorkModel
from wiz_executor.journal import JournalStore, MemoryStore, SqliteStore
from wiz_executor.runs import Run, RunMap

pytestmark = pytest.mark.anyio


async def test_cancel_with_nothing_waiting_before_num_chunks_ends_errored(
    executor: Executor,
) -> None:
    async with asgi_client(executor) as client:
        await configure(client, "noop", "r", 5)
        assert (await add(client, "noop", "r", chunks(2))).status_code == 200
        run = executor.get_run("noop", "r")
        await wait_for(lambda: run.counts[DataChunkState.SUCCEEDED] == 2, what="2 chunks done")
        resp = await client.post(run_path("noop", "r") + "/cancel")
        assert resp.json() == {"RunID": "r", "CurrentState": "ERRORED", "Cancelled": 0}
        body = (await client.get(run_path("noop", "r"))).json()
        assert body["CurrentState"] == "ERRORED"
        assert body["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 2, "FAILED": 0}
        # a retry has nothing failed to run again: the run stays as the cancel left it
        retried = (await client.post(run_path("noop", "r") + "/retry")).json()
        assert (retried["Chunks"], retried["Deliveries"]) == (0, 0)
        assert (await client.get(run_path("noop", "r"))).json()["CurrentState"] == "ERRORED"


async def test_cancel_of_a_fresh_run_ends_errored(executor: Executor) -> None:
    async with asgi_client(executor) as client:
        await configure(client, "noop", "r", 5)
        resp = await client.post(run_path("noop", "r") + "/cancel")
        assert resp.json() == {"RunID": "r", "CurrentState": "ERRORED", "Cancelled": 0}


async def test_a_retry_after_a_cancel_can_end_succeeded(executor: Executor) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", 0, MaxWorkers=1)
        await add(client, "gate", "r", chunks(3))
        await wait_for(lambda: gate.active == 1, what="one chunk to run")
        assert (await client.post(run_path("gate", "r") + "/cancel")).json()["Cancelled"] == 2
        gate.release_all()
        assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "ERRORED"
        assert (await client.post(run_path("gate", "r") + "/retry")).json()["Chunks"] == 2
        assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "SUCCEEDED"
        assert executor.get_run("gate", "r").control == {"Cancelled": False}


async def test_a_cancelled_run_still_running_at_a_restart_ends_errored(
    settings: Settings,
) -> None:
    # c0 runs when the cancel comes (nothing waits: nothing fails) and when the
    # executor stops: the durable journal keeps it unfinished, and it runs again after
    # the restart. It succeeds; the run must still end ERRORED, for it was cancelled.
    gate = Gate()
    async with Executor(settings) as executor:
        executor.registry.register(gate_processor(gate))
        async with asgi_client(executor) as client:
            await configure(client, "gate", "r", 3, MaxWorkers=1)
            await add(client, "gate", "r", chunks(1))
            await wait_for(lambda: gate.active == 1, what="c0 to run")
            resp = await client.post(run_path("gate", "r") + "/cancel")
            assert resp.json() == {"RunID": "r", "CurrentState": "RUNNING", "Cancelled": 0}
            await executor.shutdown(grace=0)
    again = Gate()
    again.release_all()
    async with Executor(settings) as executor:
        executor.registry.register(gate_processor(again))
        await executor.recovered()
        async with asgi_client(executor) as client:
            done = await wait_run_done(client, "gate", "r")
        assert again.entered == 1
        assert done["CurrentState"] == "ERRORED"
        assert done["ChunkCounts"]["SUCCEEDED"] == 1


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_the_cancel_mark_is_in_what_the_store_loads(tmp_path: Path, kind: str) -> None:
    store: JournalStore = SqliteStore(tmp_path / "wiz.db") if kind == "sqlite" else MemoryStore()
    store.open()
    try:
        runs = RunMap(store)
        run = Run("noop", "r", Configuration(), ProcessorConfig(), 1, WorkModel.POOL, None)
        runs.insert(run)
        runs.cancel(run)
        await store.flush()
        (loaded,) = store.load().runs
        assert loaded.control == {"Cancelled": True}
    finally:
        await store.close()
