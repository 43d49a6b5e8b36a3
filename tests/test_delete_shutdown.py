"""Deleting a run cancels its work and frees it; shutting the executor down lets running
chunks finish within the grace period and fails the rest with a clear message."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import (
    Gate,
    add,
    asgi_client,
    configure,
    gate_processor,
    run_path,
    sync_gate_processor,
)
from conftest import live_server, wait_for
from wiz_executor import (
    Context,
    DataChunkState,
    Executor,
    Input,
    Processor,
    ProcessorConfig,
    Settings,
    State,
)

pytestmark = pytest.mark.anyio

WORK_MODELS = ["LIFETIME", "POOL"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """`--ephemeral`: the shutdown tests here check that unfinished chunks fail with a
    message when nothing survives the process. (With the durable journal, the default,
    they are kept for the restart instead: test_durability, test_journal_wiring.)"""
    return dataclasses.replace(settings, ephemeral=True)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def gated(executor: Executor, gate: Gate) -> AsyncIterator[httpx.AsyncClient]:
    executor.registry.register(gate_processor(gate))
    executor.registry.register(sync_gate_processor(gate))
    async with asgi_client(executor) as client:
        try:
            yield client
        finally:
            gate.release_all()


def states(executor: Executor, proc: str, run: str) -> dict[str, tuple[str, str | None]]:
    return {c.id: (c.state.value, c.error) for c in executor.runs.get(proc, run).chunks.values()}


# -- delete ----------------------------------------------------------------------------


@pytest.mark.parametrize("work_model", WORK_MODELS)
@pytest.mark.parametrize("proc", ["gate", "sync-gate"])
async def test_delete_cancels_the_run_and_frees_it(
    executor: Executor, gated: httpx.AsyncClient, gate: Gate, proc: str, work_model: str
) -> None:
    client = gated
    await configure(client, proc, "r", num_chunks=6, MaxWorkers=2, WorkModel=work_model)
    assert (await add(client, proc, "r", [{"ChunkID": f"c{i}"} for i in range(6)])).is_success
    await wait_for(lambda: gate.active == 2)
    run = executor.runs.get(proc, "r")
    assert executor.runs.counts[DataChunkState.WAITING] == 4

    resp = await client.delete(run_path(proc, "r"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["RunID"] == "r"

    for path in ("", "/config", "/data", "/data/input/c0", "/data/output/c0-out"):
        resp = await client.get(run_path(proc, "r") + path)
        assert resp.status_code == 404, path
        assert "no run 'r'" in resp.json()["value"]
    assert (await client.get(f"/processors/{proc}/runs")).json() == []
    assert (await add(client, proc, "r", {"ChunkID": "late"})).status_code == 404
    assert (await client.delete(run_path(proc, "r"))).status_code == 404
    # Its memory is given back and nothing of it is counted or scheduled any more.
    assert run.removed
    assert run.chunks == {}
    assert run.outputs == {}
    assert sum(executor.runs.counts.values()) == 0
    assert executor.scheduler.limiter.in_use == 0
    assert all(run not in model._runs for model in executor.scheduler.models.values())
    if proc == "gate":  # a blocked thread cannot be interrupted, only abandoned
        assert gate.active == 0
    # The run ID is free again.
    gate.release_all()
    await configure(client, proc, "r", num_chunks=1, WorkModel=work_model)
    assert (await add(client, proc, "r", {"ChunkID": "again"})).is_success
    await wait_for(lambda: executor.runs.get(proc, "r").state is State.SUCCEEDED)


async def test_delete_of_a_finished_run(client: httpx.AsyncClient, executor: Executor) -> None:
    await configure(client, "noop", "r", num_chunks=1)
    assert (await add(client, "noop", "r", {"ChunkID": "c"})).is_success
    await wait_for(lambda: executor.runs.get("noop", "r").state is State.SUCCEEDED)
    resp = await client.delete(run_path("noop", "r"))
    assert resp.status_code == 200
    assert resp.json()["CurrentState"] == "SUCCEEDED"
    assert (await client.get(run_path("noop", "r"))).status_code == 404
    assert (await client.delete("/processors/nope/runs/r")).status_code == 404


# -- shutdown --------------------------------------------------------------------------


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_shutdown_finishes_or_fails_every_chunk(
    executor: Executor, gated: httpx.AsyncClient, gate: Gate, work_model: str
) -> None:
    client = gated
    await configure(client, "gate", "r", num_chunks=4, MaxWorkers=2, WorkModel=work_model)
    await configure(client, "gate", "other", num_chunks=1, WorkModel=work_model)
    body = [
        {"ChunkID": "quick", "RawData": {"hold": "quick"}},
        {"ChunkID": "stuck", "RawData": {"hold": "never"}},
        {"ChunkID": "queued1"},
        {"ChunkID": "queued2"},
    ]
    assert (await add(client, "gate", "r", body)).is_success
    await wait_for(lambda: gate.active == 2)

    stopping = asyncio.create_task(executor.shutdown(grace=0.5))
    await wait_for(lambda: executor.closing)
    # New work is refused while stopping.
    resp = await add(client, "gate", "other", {"ChunkID": "new"})
    assert resp.status_code == 503
    assert resp.headers["retry-after"]
    assert "shutting down" in resp.json()["value"]
    assert (await client.post(run_path("gate", "x") + "/config", json={})).status_code == 503
    assert (await client.get("/healthz")).json()["status"] == "stopping"
    gate.hold("quick").set()  # finishes within the grace period
    await stopping

    assert states(executor, "gate", "r") == {
        "quick": ("SUCCEEDED", None),
        "stuck": ("FAILED", "executor shut down before the chunk finished"),
        "queued1": ("FAILED", "executor shut down before this chunk ran"),
        "queued2": ("FAILED", "executor shut down before this chunk ran"),
    }
    assert executor.runs.get("gate", "r").state is State.ERRORED
    assert executor.scheduler.limiter.in_use == 0
    assert executor.runs.counts[DataChunkState.RUNNING] == 0
    assert executor.runs.counts[DataChunkState.WAITING] == 0
    await executor.shutdown()  # a second call is a no-op


async def test_shutdown_abandons_a_blocked_thread_but_fails_its_chunk(
    executor: Executor, gated: httpx.AsyncClient, gate: Gate
) -> None:
    await configure(gated, "sync-gate", "r", num_chunks=1)
    assert (await add(gated, "sync-gate", "r", {"ChunkID": "c"})).is_success
    await wait_for(lambda: gate.active == 1)
    await executor.shutdown(grace=0.1)
    assert states(executor, "sync-gate", "r") == {
        "c": ("FAILED", "executor shut down before the chunk finished")
    }


class SlowSetup(Processor[ProcessorConfig]):
    """Its setup never ends on its own (a model that takes forever to load)."""

    id = "slow-setup"
    name = "slow setup"
    entered: asyncio.Event

    async def setup(self) -> None:
        SlowSetup.entered.set()
        await asyncio.Event().wait()

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        return data.raw_data


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_shutdown_during_processor_setup_fails_the_chunk(
    executor: Executor, client: httpx.AsyncClient, work_model: str
) -> None:
    SlowSetup.entered = asyncio.Event()
    executor.registry.register(SlowSetup)
    await configure(client, "slow-setup", "r", num_chunks=2, WorkModel=work_model)
    assert await add(client, "slow-setup", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}])
    await SlowSetup.entered.wait()
    await executor.shutdown(grace=0.1)
    chunks = states(executor, "slow-setup", "r")
    assert chunks == {
        "a": ("FAILED", "executor shut down before this chunk ran"),
        "b": ("FAILED", "executor shut down before this chunk ran"),
    }


async def test_a_live_server_stops_gracefully(tmp_path: Path) -> None:
    """Stopping uvicorn runs the app's lifespan, which shuts the executor down."""
    settings = Settings(data_dir=tmp_path, shutdown_grace=0.2, ephemeral=True)
    async with live_server(settings) as (url, executor), httpx.AsyncClient(base_url=url) as http:
        await configure(http, "noop", "r", num_chunks=2)
        chunks = [
            {"ChunkID": "done", "RawData": 1},
            {"ChunkID": "sleepy", "RawData": {"SleepMs": 60_000}},
        ]
        assert (await add(http, "noop", "r", chunks)).is_success
        await wait_for(lambda: executor.runs.get("noop", "r").counts[DataChunkState.SUCCEEDED] == 1)
    assert executor.closing
    assert states(executor, "noop", "r") == {
        "done": ("SUCCEEDED", None),
        "sleepy": ("FAILED", "executor shut down before the chunk finished"),
    }


@pytest.mark.parametrize("work_model", ["LIFETIME", "POOL"])
async def test_delete_fails_the_queued_chunks_too(executor: Executor, work_model: str) -> None:
    """A deleted run's queued chunks are cancelled like its running ones: none is left
    WAITING in the answer, and every cancelled chunk counts as failed in the metrics."""
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", num_chunks=4, MaxWorkers=1, WorkModel=work_model)
        assert (await add(client, "gate", "r", [{"ChunkID": f"c{i}"} for i in range(4)])).is_success
        await wait_for(lambda: gate.active == 1)
        run = executor.runs.get("gate", "r")
        chunks = list(run.chunks.values())

        resp = await client.delete(run_path("gate", "r"))
        assert resp.status_code == 200, resp.text
        assert resp.json()["ChunkCounts"] == {
            "WAITING": 0,
            "RUNNING": 0,
            "SUCCEEDED": 0,
            "FAILED": 4,
        }
        assert {c.state for c in chunks} == {DataChunkState.FAILED}
        assert {c.error for c in chunks} == {"run was deleted before the chunk finished"}
        assert run.finished_totals[DataChunkState.FAILED] == 4
        assert sum(executor.runs.counts.values()) == 0
        gate.release_all()


async def test_delete_stops_the_run_s_deliveries(tmp_path: Path) -> None:
    """A deleted run's outputs are cancelled with it: a delivery being retried stops,
    so the run's memory is given back rather than held through every retry."""
    posts: list[httpx.Request] = []

    def busy(request: httpx.Request) -> httpx.Response:
        posts.append(request)
        return httpx.Response(503, json={"value": "busy"})

    settings = Settings(data_dir=tmp_path, downstream_attempts=1_000_000, downstream_backoff=0.001)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        assert executor.downstream is not None
        executor.downstream.client = httpx.AsyncClient(transport=httpx.MockTransport(busy))
        location = {"Hostname": "127.0.0.1:9", "ProcID": "noop", "RunID": "next"}
        await configure(client, "noop", "r", SendDownstream=True, DownstreamLocations=[location])
        assert (await add(client, "noop", "r", {"ChunkID": "c"})).is_success
        await wait_for(lambda: len(posts) >= 2, what="the delivery being retried")
        assert (await client.delete(run_path("noop", "r"))).status_code == 200
        await wait_for(lambda: not executor.downstream._senders, what="the sender to stop")
        await executor.downstream.client.aclose()
