"""Live processor instances never exceed `--max-workers`, across runs and work models.

An instance may hold what the executor-wide limit exists for (GPU memory, connections),
so it counts from the start of its `setup` to the end of its `teardown`, idle or not.
`Counted` keeps that count and its peak; its `setup` waits on an event the test opens,
so every run's workers are trying to set up at once when the limit is checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure
from conftest import wait_for, wait_run_done
from wiz_executor import Context, Executor, Input, Processor, ProcessorConfig, Settings

pytestmark = pytest.mark.anyio


class Census:
    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self.setups = 0
        self.open = asyncio.Event()


def counted_processor(census: Census) -> type[Processor[Any]]:
    class Counted(Processor[ProcessorConfig]):
        id = "counted"
        name = "counts its live instances (test)"

        async def setup(self) -> None:
            census.live += 1
            census.setups += 1
            census.peak = max(census.peak, census.live)
            await census.open.wait()

        async def teardown(self) -> None:
            census.live -= 1

        async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            return data.raw_data

    return Counted


@pytest.fixture
def census() -> Census:
    return Census()


async def serve(
    tmp_path: Path, census: Census, max_workers: int
) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    settings = Settings(data_dir=tmp_path, max_workers=max_workers, max_pending=10_000)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        executor.registry.register(counted_processor(census))
        try:
            yield executor, client
        finally:
            census.open.set()


@pytest.fixture
async def four(tmp_path: Path, census: Census) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    async for served in serve(tmp_path, census, 4):
        yield served


@pytest.fixture
async def two(tmp_path: Path, census: Census) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    async for served in serve(tmp_path, census, 2):
        yield served


def chunks(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"ChunkID": f"c{i}", "RawData": i} for i in range(start, start + n)]


@pytest.mark.parametrize("models", [["POOL"], ["LIFETIME"], ["POOL", "LIFETIME"]])
async def test_fifty_runs_never_hold_more_instances_than_the_executor_limit(
    four: tuple[Executor, httpx.AsyncClient], census: Census, models: list[str]
) -> None:
    executor, client = four
    runs = [f"r{i}" for i in range(50)]
    for i, run in enumerate(runs):
        # MaxWorkers 8 on an executor of 4: no clamp at Configure is relied on here
        await configure(
            client, "counted", run, num_chunks=3, MaxWorkers=8, WorkModel=models[i % len(models)]
        )
    for run in runs:
        assert (await add(client, "counted", run, chunks(3))).is_success
    await wait_for(lambda: census.live >= 4, what="workers setting up")
    census.open.set()
    for run in runs:
        assert (await wait_run_done(client, "counted", run, 30))["CurrentState"] == "SUCCEEDED"
    await wait_for(lambda: census.live == 0, what="every instance torn down")
    assert census.peak == 4
    assert executor.scheduler.limiter.peak <= 4


async def test_idle_instances_of_an_open_run_make_way_for_other_runs(
    two: tuple[Executor, httpx.AsyncClient], census: Census
) -> None:
    """A POOL run that is open but idle keeps its instances until someone needs the
    room: then they are torn down, and the other runs (POOL or LIFETIME) go ahead."""
    executor, client = two
    census.open.set()
    await configure(client, "counted", "idle", num_chunks=4, MaxWorkers=2, WorkModel="POOL")
    assert (await add(client, "counted", "idle", chunks(2))).is_success
    await wait_for(
        lambda: executor.runs.get("counted", "idle").counts["SUCCEEDED"] == 2,
        what="the first two chunks",
    )
    assert census.live == 2  # kept for the run's next chunks
    workers = (await client.get("/healthz")).json()["workers"]
    assert (workers["instances"], workers["busy"], workers["max"]) == (2, 0, 2)

    for model in ("POOL", "LIFETIME"):
        await configure(client, "counted", model, num_chunks=3, MaxWorkers=2, WorkModel=model)
        assert (await add(client, "counted", model, chunks(3))).is_success
        assert (await wait_run_done(client, "counted", model))["CurrentState"] == "SUCCEEDED"

    assert (await add(client, "counted", "idle", chunks(2, start=2))).is_success
    assert (await wait_run_done(client, "counted", "idle"))["CurrentState"] == "SUCCEEDED"
    await wait_for(lambda: census.live == 0, what="every instance torn down")
    assert census.peak == 2
    assert executor.scheduler.limiter.peak <= 2


async def test_a_busy_pool_run_does_not_starve_another(
    two: tuple[Executor, httpx.AsyncClient], census: Census
) -> None:
    """Instances of a run with a long queue hold the executor's slots; another run that
    waits still gets one (the busy run's workers give theirs up after a while)."""
    executor, client = two
    census.open.set()
    await configure(client, "counted", "long", num_chunks=0, MaxWorkers=2, WorkModel="POOL")
    await configure(client, "counted", "short", num_chunks=1, WorkModel="POOL")
    feeding = True

    async def feed() -> None:
        i = 0
        while feeding:  # the long run never runs out of chunks while "short" waits
            assert (await add(client, "counted", "long", chunks(20, start=i))).is_success
            i += 20
            await wait_for(
                lambda: executor.runs.counts["WAITING"] < 10, what="the long run's queue"
            )

    feeder = asyncio.create_task(feed())
    try:
        await wait_for(lambda: census.live == 2, what="the long run's workers")
        assert (await add(client, "counted", "short", chunks(1))).is_success
        assert (await wait_run_done(client, "counted", "short"))["CurrentState"] == "SUCCEEDED"
    finally:
        feeding = False
        await feeder
    assert census.peak == 2
