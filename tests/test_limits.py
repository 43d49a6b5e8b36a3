"""Worker limits (per run and executor-wide) under both work models, and backpressure.

Processors from `_gates` count how many chunks are inside `run` at once and hold them
until the test opens the gate, so "the limit is reached" is observed, not hoped for, and
the recorded peak proves the limit was never exceeded at any instant.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import (
    Gate,
    add,
    asgi_client,
    chunk_counts,
    configure,
    gate_processor,
    run_path,
    sync_gate_processor,
)
from conftest import wait_for, wait_run_done
from wiz_executor import DataChunkState, Executor, Settings

pytestmark = pytest.mark.anyio

WORK_MODELS = ["LIFETIME", "POOL"]


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def gate_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, max_workers=4, default_run_workers=2, max_pending=1000)


@pytest.fixture
async def gated(
    gate_settings: Settings, gate: Gate
) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    async with Executor(gate_settings) as executor, asgi_client(executor) as client:
        executor.registry.register(gate_processor(gate))
        executor.registry.register(sync_gate_processor(gate))
        try:
            yield executor, client
        finally:
            gate.release_all()  # never leave a worker thread blocked


def chunks(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    return [{"ChunkID": f"{prefix}{i}", "RawData": {"i": i}} for i in range(n)]


async def assert_all_outputs(client: httpx.AsyncClient, proc: str, run: str, n: int) -> None:
    data = (await client.get(f"{run_path(proc, run)}/data")).json()
    assert sorted(o["RawData"]["i"] for o in data["Out"]) == list(range(n))
    assert {o["State"] for o in data["Out"]} == {"SUCCEEDED"}


@pytest.mark.parametrize("work_model", WORK_MODELS)
@pytest.mark.parametrize("proc", ["gate", "sync-gate"])
async def test_run_limit_is_reached_and_never_exceeded(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, proc: str, work_model: str
) -> None:
    executor, client = gated
    await configure(client, proc, "r", num_chunks=10, MaxWorkers=3, WorkModel=work_model)
    assert (await add(client, proc, "r", chunks(10))).is_success
    await wait_for(lambda: gate.active == 3, what="three chunks inside the processor")
    counts = await chunk_counts(client, proc, "r")
    assert (counts["RUNNING"], counts["WAITING"]) == (3, 7)
    gate.release_all()
    assert (await wait_run_done(client, proc, "r"))["CurrentState"] == "SUCCEEDED"
    assert gate.peak == 3
    assert gate.entered == 10
    assert executor.scheduler.limiter.peak == 3
    if work_model == "LIFETIME":
        run = executor.runs.get(proc, "r")
        assert run.sched.limiter.peak == 3
    await assert_all_outputs(client, proc, "r", 10)


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_max_workers_zero_means_the_executor_default(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, work_model: str
) -> None:
    _, client = gated
    await configure(client, "gate", "r", num_chunks=6, MaxWorkers=0, WorkModel=work_model)
    assert (await add(client, "gate", "r", chunks(6))).is_success
    await wait_for(lambda: gate.active == 2)  # Settings.default_run_workers
    gate.release_all()
    await wait_run_done(client, "gate", "r")
    assert gate.peak == 2


@pytest.mark.parametrize("models", [["LIFETIME"] * 3, ["POOL"] * 3, ["LIFETIME", "POOL", "POOL"]])
async def test_executor_limit_holds_across_runs(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, models: list[str]
) -> None:
    """Three runs of three workers each share an executor limited to four."""
    executor, client = gated
    for i, model in enumerate(models):
        await configure(client, "gate", f"r{i}", num_chunks=6, MaxWorkers=3, WorkModel=model)
    for i in range(len(models)):
        assert (await add(client, "gate", f"r{i}", chunks(6))).is_success
    await wait_for(lambda: gate.active == 4, what="four chunks inside the processor")
    assert executor.scheduler.limiter.in_use == 4
    assert executor.runs.counts[DataChunkState.WAITING] == 14
    gate.release_all()
    for i in range(len(models)):
        assert (await wait_run_done(client, "gate", f"r{i}"))["CurrentState"] == "SUCCEEDED"
        await assert_all_outputs(client, "gate", f"r{i}", 6)
    assert gate.peak == 4
    assert gate.entered == 18
    assert executor.scheduler.limiter.peak == 4
    # A run is SUCCEEDED when its chunks are; a POOL instance keeps its slot until it
    # is torn down, which a finished run's workers do after that, in the background.
    # Wait for exactly that (not for a time), then check every slot came back.
    for i in range(len(models)):
        await executor.scheduler.released(executor.runs.get("gate", f"r{i}"))
    assert executor.scheduler.limiter.in_use == 0


async def test_a_pool_slot_is_held_until_its_instance_is_torn_down(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate
) -> None:
    """A run is SUCCEEDED when its chunks are; its POOL instance counts against the
    executor-wide limit until its `teardown` ends, after that (a slot is what an
    instance holds, not what a chunk does). `Scheduler.released` says when it has."""
    executor, client = gated
    torn_down = asyncio.Event()

    class SlowTeardown(gate_processor(gate, "slow-teardown")):  # type: ignore[misc]
        async def teardown(self) -> None:
            await torn_down.wait()

    executor.registry.register(SlowTeardown)
    gate.release_all()
    await configure(client, "slow-teardown", "r", num_chunks=1, WorkModel="POOL")
    assert (await add(client, "slow-teardown", "r", chunks(1))).is_success
    assert (await wait_run_done(client, "slow-teardown", "r"))["CurrentState"] == "SUCCEEDED"
    assert executor.scheduler.limiter.in_use == 1  # its instance is still being torn down
    torn_down.set()
    await executor.scheduler.released(executor.runs.get("slow-teardown", "r"))
    assert executor.scheduler.limiter.in_use == 0


@pytest.mark.parametrize(("work_model", "setups"), [("LIFETIME", 8), ("POOL", 2)])
async def test_pool_sets_up_once_per_worker(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, work_model: str, setups: int
) -> None:
    """LIFETIME makes an instance per chunk; POOL reuses at most MaxWorkers of them."""
    _, client = gated
    gate.release_all()
    await configure(client, "gate", "r", num_chunks=8, MaxWorkers=2, WorkModel=work_model)
    assert (await add(client, "gate", "r", chunks(8))).is_success
    await wait_run_done(client, "gate", "r")
    await wait_for(lambda: gate.teardowns == gate.setups, what="every instance torn down")
    assert gate.setups == setups


# -- backpressure ----------------------------------------------------------------------


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_a_full_queue_answers_429_and_loses_nothing(
    tmp_path: Path, gate: Gate, work_model: str
) -> None:
    settings = Settings(data_dir=tmp_path, max_pending=5, retry_after=3)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        executor.registry.register(gate_processor(gate))
        await configure(client, "gate", "r", num_chunks=8, MaxWorkers=1, WorkModel=work_model)
        await configure(client, "gate", "other", num_chunks=1)
        assert (await add(client, "gate", "r", {"ChunkID": "c0", "RawData": {"i": 0}})).is_success
        await wait_for(lambda: gate.active == 1)
        batch = [{"ChunkID": f"c{i}", "RawData": {"i": i}} for i in range(1, 6)]
        assert (await add(client, "gate", "r", batch)).json() == {"Accepted": 5, "Duplicates": 0}

        late = [{"ChunkID": f"c{i}", "RawData": {"i": i}} for i in (6, 7)]
        resp = await add(client, "gate", "r", late[0])
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "3"
        assert "5 waiting chunks" in resp.json()["value"]
        # A batch that would overflow is refused whole, even if part of it is held.
        resp = await add(client, "gate", "r", [batch[0], *late])
        assert resp.status_code == 429
        # The queue is executor-wide: other runs are told to wait too.
        assert (await add(client, "gate", "other", {"ChunkID": "x"})).status_code == 429
        # Resending chunks already held needs no room and stays a no-op.
        assert (await add(client, "gate", "r", batch)).json() == {"Accepted": 0, "Duplicates": 5}
        counts = await chunk_counts(client, "gate", "r")
        assert (counts["WAITING"], counts["RUNNING"]) == (5, 1)

        gate.release_all()
        for chunk in late:  # a client retrying as told: nothing is lost

            async def accepted(chunk: dict[str, Any] = chunk) -> bool:
                resp = await add(client, "gate", "r", chunk)
                assert resp.status_code in (200, 429), resp.text
                return resp.status_code == 200

            await wait_for(accepted, what=f"{chunk['ChunkID']} to be accepted")
        assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "SUCCEEDED"
        await assert_all_outputs(client, "gate", "r", 8)
        assert executor.runs.counts[DataChunkState.SUCCEEDED] == 8
        assert sum(executor.runs.counts.values()) == 8
