"""A chunk that fails, times out or crashes its processor ends FAILED with a message a
person can act on, its run ends ERRORED, and the executor carries on serving."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure, run_path
from conftest import wait_run_done
from wiz_executor import Context, Executor, Input, Processor, ProcessorConfig

pytestmark = pytest.mark.anyio

WORK_MODELS = ["LIFETIME", "POOL", "RAY"]


class SyncCrash(Processor[ProcessorConfig]):
    id = "sync-crash"
    name = "raises in a blocking run"

    def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        if data.raw_data == "ok":
            return "fine"
        raise ValueError(f"cannot digest {data.raw_data!r}")


class AsyncCrash(Processor[ProcessorConfig]):
    id = "async-crash"
    name = "raises in an async run"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        if data.raw_data == "ok":
            return "fine"
        raise KeyError("missing")


class SetupCrash(Processor[ProcessorConfig]):
    id = "setup-crash"
    name = "fails in setup"

    async def setup(self) -> None:
        raise ConnectionError("model server unreachable")

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        raise AssertionError("never reached")


class TeardownCrash(Processor[ProcessorConfig]):
    id = "teardown-crash"
    name = "fails in teardown"

    async def teardown(self) -> None:
        raise RuntimeError("teardown exploded")

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        return data.raw_data


class Exits(Processor[ProcessorConfig]):
    """Calls sys.exit: a library doing that must not stop the executor."""

    id = "exits"
    name = "calls sys.exit"

    def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        sys.exit(3)


class AsyncExits(Processor[ProcessorConfig]):
    id = "async-exits"
    name = "raises SystemExit on the loop"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        raise SystemExit("bye")


class NotJson(Processor[ProcessorConfig]):
    id = "not-json"
    name = "returns something JSON cannot hold"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        return {"when": object()}


class OwnTimeout(Processor[ProcessorConfig]):
    id = "own-timeout"
    name = "raises TimeoutError itself"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        raise TimeoutError


CRASHERS = [SyncCrash, AsyncCrash, SetupCrash, TeardownCrash, Exits, AsyncExits, NotJson]


@pytest.fixture
async def crash_client(executor: Executor) -> AsyncIterator[httpx.AsyncClient]:
    for cls in [*CRASHERS, OwnTimeout]:
        executor.registry.register(cls)
    async with asgi_client(executor) as client:
        yield client


async def outcome(client: httpx.AsyncClient, proc: str, run: str) -> dict[str, dict[str, Any]]:
    data = (await client.get(f"{run_path(proc, run)}/data")).json()
    outputs = {o["AssociatedChunkID"]: o for o in data["Out"]}
    result = {}
    for inp in data["In"]:
        out = outputs[inp["ChunkID"]]
        assert out["State"] == inp["State"], "an output mirrors its input's state"
        assert out.get("Error") == inp.get("Error")
        result[inp["ChunkID"]] = inp
    return result


async def test_noop_fail_fails_every_chunk_with_its_message(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        f"{run_path('noop', 'r')}/config",
        json={"ExpectedData": {"NumChunks": 2}, "Processor": {"Fail": True}},
    )
    assert resp.status_code == 200
    assert (await add(client, "noop", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}])).is_success
    run = await wait_run_done(client, "noop", "r")
    assert run["CurrentState"] == "ERRORED"
    chunks = await outcome(client, "noop", "r")
    assert chunks["a"]["State"] == "FAILED"
    assert chunks["a"]["Error"] == "noop was asked to fail chunk 'a' (Fail=true)"
    out = (await client.get(f"{run_path('noop', 'r')}/data/output/a-out")).json()
    assert out["State"] == "FAILED"
    assert out["RawData"] is None
    assert out["Error"] == chunks["a"]["Error"]


async def test_a_chunk_override_fails_only_that_chunk(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=3)
    chunks = [
        {"ChunkID": "ok", "RawData": {"v": 1}},
        {"ChunkID": "fail", "RawData": {"v": 2, "Fail": True}},
        {"ChunkID": "invalid", "RawData": {"SleepMs": -5}},
    ]
    assert (await add(client, "noop", "r", chunks)).is_success
    assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "ERRORED"
    result = await outcome(client, "noop", "r")
    assert result["ok"]["State"] == "SUCCEEDED"
    assert "Error" not in result["ok"]
    assert result["fail"]["State"] == "FAILED"
    assert "Fail=true" in result["fail"]["Error"]
    assert result["invalid"]["State"] == "FAILED"
    assert "SleepMs" in result["invalid"]["Error"]


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_a_chunk_past_its_timeout_fails(client: httpx.AsyncClient, work_model: str) -> None:
    await configure(client, "noop", "r", num_chunks=2, ChunkTimeout=0.05, WorkModel=work_model)
    chunks = [{"ChunkID": "slow", "RawData": {"SleepMs": 60_000}}, {"ChunkID": "quick"}]
    assert (await add(client, "noop", "r", chunks)).is_success
    assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "ERRORED"
    result = await outcome(client, "noop", "r")
    assert result["quick"]["State"] == "SUCCEEDED"
    assert result["slow"]["State"] == "FAILED"
    assert result["slow"]["Error"] == "processor did not finish the chunk within 0.05 s (timeout)"


async def test_the_executor_default_timeout_applies(tmp_path: Any) -> None:
    from wiz_executor import Settings

    async with (
        Executor(Settings(data_dir=tmp_path, chunk_timeout=0.05)) as executor,
        asgi_client(executor) as client,
    ):
        await configure(client, "noop", "r", num_chunks=1)
        assert await add(client, "noop", "r", {"ChunkID": "c", "RawData": {"SleepMs": 60_000}})
        await wait_run_done(client, "noop", "r")
        assert "(timeout)" in (await outcome(client, "noop", "r"))["c"]["Error"]


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_a_shorter_timeout_started_later_fires_first(
    client: httpx.AsyncClient, work_model: str
) -> None:
    """The running chunks' timeouts share one timer (`scheduling._deadlines`): a chunk
    that starts after one with a long timeout, with a shorter one, must not wait for
    the long one's deadline."""
    await configure(client, "noop", "long", num_chunks=1, ChunkTimeout=600, WorkModel=work_model)
    await configure(client, "noop", "short", num_chunks=2, ChunkTimeout=0.05, WorkModel=work_model)
    assert await add(client, "noop", "long", {"ChunkID": "c", "RawData": {"SleepMs": 60_000}})
    slow = [{"ChunkID": f"c{i}", "RawData": {"SleepMs": 60_000}} for i in range(2)]
    assert (await add(client, "noop", "short", slow)).is_success
    assert (await wait_run_done(client, "noop", "short", timeout=5))["CurrentState"] == "ERRORED"
    result = await outcome(client, "noop", "short")
    for chunk_id in ("c0", "c1"):  # the second one by a firing after the first
        assert result[chunk_id]["Error"].endswith("within 0.05 s (timeout)")
    run = (await client.get(run_path("noop", "long"))).json()
    assert run["CurrentState"] == "RUNNING"  # its deadline is far off: still running
    assert (await client.delete(run_path("noop", "long"))).is_success


async def test_a_chunk_that_ends_leaves_no_deadline_behind(tmp_path: Any) -> None:
    """A chunk that ends in time takes its deadline out: later chunks of the worker are
    not cancelled by it, and nothing is left registered once the run is done."""
    from wiz_executor import Settings

    async with (
        Executor(Settings(data_dir=tmp_path, chunk_timeout=0.2)) as executor,
        asgi_client(executor) as client,
    ):
        await configure(client, "noop", "r", num_chunks=3, MaxWorkers=1)
        chunks = [{"ChunkID": f"c{i}", "RawData": {"SleepMs": 100}} for i in range(3)]
        assert (await add(client, "noop", "r", chunks)).is_success
        assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "SUCCEEDED"
        assert len(executor.scheduler.runner.deadlines) == 0


async def test_a_processor_raising_timeouterror_is_not_a_deadline(
    crash_client: httpx.AsyncClient,
) -> None:
    await configure(crash_client, "own-timeout", "r", num_chunks=1, ChunkTimeout=30)
    assert (await add(crash_client, "own-timeout", "r", {"ChunkID": "c"})).is_success
    await wait_run_done(crash_client, "own-timeout", "r")
    error = (await outcome(crash_client, "own-timeout", "r"))["c"]["Error"]
    assert error == "RuntimeError: TimeoutError raised by the processor"


EXPECTED_ERRORS = {
    "sync-crash": "ValueError: cannot digest 'boom'",
    "async-crash": "KeyError: 'missing'",
    "setup-crash": "processor setup failed: ConnectionError: model server unreachable",
    "exits": "SystemExit: 3",
    "async-exits": "SystemExit: bye",
    "not-json": "processor output is not JSON",
}


@pytest.mark.parametrize("work_model", WORK_MODELS)
@pytest.mark.parametrize("proc", sorted(EXPECTED_ERRORS))
async def test_a_crashing_processor_fails_the_chunk_not_the_executor(
    crash_client: httpx.AsyncClient, proc: str, work_model: str
) -> None:
    await configure(crash_client, proc, "r", num_chunks=4, MaxWorkers=2, WorkModel=work_model)
    chunks = [{"ChunkID": f"c{i}", "RawData": "boom"} for i in range(4)]
    assert (await add(crash_client, proc, "r", chunks)).is_success
    run = await wait_run_done(crash_client, proc, "r")
    assert run["CurrentState"] == "ERRORED"
    assert run["ChunkCounts"]["FAILED"] == 4
    for chunk in (await outcome(crash_client, proc, "r")).values():
        assert chunk["State"] == "FAILED"
        assert chunk["Error"].startswith(EXPECTED_ERRORS[proc]), chunk["Error"]
    # The executor still serves, and still runs chunks.
    health = (await crash_client.get("/healthz")).json()
    assert health["status"] == "ok"
    await configure(crash_client, "noop", "after", num_chunks=1)
    assert (await add(crash_client, "noop", "after", {"ChunkID": "c"})).is_success
    assert (await wait_run_done(crash_client, "noop", "after"))["CurrentState"] == "SUCCEEDED"


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_a_crash_in_some_chunks_leaves_the_others(
    crash_client: httpx.AsyncClient, work_model: str
) -> None:
    """In POOL the same instance serves the next chunk after one crashed."""
    for proc in ("sync-crash", "async-crash"):
        await configure(crash_client, proc, "r", num_chunks=4, MaxWorkers=1, WorkModel=work_model)
        chunks = [{"ChunkID": f"c{i}", "RawData": "boom" if i % 2 else "ok"} for i in range(4)]
        assert (await add(crash_client, proc, "r", chunks)).is_success
        assert (await wait_run_done(crash_client, proc, "r"))["CurrentState"] == "ERRORED"
        states = {k: v["State"] for k, v in (await outcome(crash_client, proc, "r")).items()}
        assert states == {"c0": "SUCCEEDED", "c1": "FAILED", "c2": "SUCCEEDED", "c3": "FAILED"}


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_a_failing_teardown_does_not_fail_the_chunk(
    crash_client: httpx.AsyncClient, work_model: str
) -> None:
    await configure(crash_client, "teardown-crash", "r", num_chunks=2, WorkModel=work_model)
    assert await add(crash_client, "teardown-crash", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}])
    run = await wait_run_done(crash_client, "teardown-crash", "r")
    assert run["CurrentState"] == "SUCCEEDED"


async def test_many_crashes_at_once_leave_no_chunk_behind(
    crash_client: httpx.AsyncClient,
) -> None:
    # (not RAY: 18 actors at once, each a process, cost more than the test is worth)
    runs = [(proc, model) for proc in EXPECTED_ERRORS for model in ("LIFETIME", "POOL")]

    async def one(proc: str, model: str) -> dict[str, Any]:
        await configure(crash_client, proc, model, num_chunks=10, MaxWorkers=3, WorkModel=model)
        chunks = [{"ChunkID": f"c{i}", "RawData": "boom"} for i in range(10)]
        assert (await add(crash_client, proc, model, chunks)).is_success
        return await wait_run_done(crash_client, proc, model)

    for run in await asyncio.gather(*(one(p, m) for p, m in runs)):
        assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 0, "FAILED": 10}


class TooDeep(Processor[ProcessorConfig]):
    id = "too-deep"
    name = "returns a value nested 500 levels deep"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        value: Any = []
        for _ in range(500):
            value = [value]
        return value


async def test_an_output_nested_too_deep_fails_the_chunk(
    executor: Executor, client: httpx.AsyncClient
) -> None:
    """Such an output could not be written back on GetData: refuse it at the source."""
    executor.registry.register(TooDeep)
    await configure(client, "too-deep", "r", num_chunks=1)
    assert (await add(client, "too-deep", "r", {"ChunkID": "c"})).is_success
    await wait_run_done(client, "too-deep", "r")
    error = (await outcome(client, "too-deep", "r"))["c"]["Error"]
    assert error == "processor output nests deeper than 200 levels"


async def test_a_pool_worker_whose_blocking_call_timed_out_is_replaced(tmp_path: Any) -> None:
    """The thread of a timed-out blocking `run` cannot be stopped and may still use its
    instance, so POOL must not hand that instance another chunk."""
    import threading

    from wiz_executor import Registry, Settings

    release = threading.Event()
    instances: dict[str, int] = {}

    class Sticky(Processor[ProcessorConfig]):
        id = "sticky"
        name = "blocks on its first chunk"

        def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            instances[data.chunk_id] = id(self)
            if data.raw_data == "block":
                release.wait(timeout=30)
            return data.raw_data

    registry = Registry([Sticky])
    try:
        async with (
            Executor(Settings(data_dir=tmp_path), registry) as executor,
            asgi_client(executor) as client,
        ):
            await configure(
                client,
                "sticky",
                "r",
                num_chunks=2,
                MaxWorkers=1,
                WorkModel="POOL",
                ChunkTimeout=0.05,
            )
            assert (
                await add(client, "sticky", "r", {"ChunkID": "a", "RawData": "block"})
            ).is_success
            assert (await add(client, "sticky", "r", {"ChunkID": "b", "RawData": "go"})).is_success
            await wait_run_done(client, "sticky", "r")
            result = await outcome(client, "sticky", "r")
            assert result["a"]["State"] == "FAILED"
            assert result["b"]["State"] == "SUCCEEDED"
            assert instances["a"] != instances["b"]
    finally:
        release.set()
