"""Run completion: by ExpectedData.NumChunks, or by the end-of-input call when the count
is not known in advance (NumChunks 0); SUCCEEDED when no chunk failed, else ERRORED."""

from __future__ import annotations

import httpx
import pytest

from _gates import Gate, add, asgi_client, chunk_counts, configure, gate_processor, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import Configuration, Data, Executor

pytestmark = pytest.mark.anyio


async def end_of_input(client: httpx.AsyncClient, proc: str, run: str) -> httpx.Response:
    return await client.post(f"{run_path(proc, run)}/end-of-input")


async def test_run_completes_after_num_chunks_and_not_before(executor: Executor) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", num_chunks=3)
        for i in range(2):
            assert (await add(client, "gate", "r", {"ChunkID": f"c{i}"})).is_success
        gate.release_all()

        async def two_done() -> bool:
            return (await chunk_counts(client, "gate", "r"))["SUCCEEDED"] == 2

        await wait_for(two_done)
        assert (await client.get(run_path("gate", "r"))).json()["CurrentState"] == "RUNNING"
        assert (await add(client, "gate", "r", {"ChunkID": "c2"})).is_success
        run = await wait_run_done(client, "gate", "r")
        assert run["CurrentState"] == "SUCCEEDED"
        assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 3, "FAILED": 0}


async def test_unknown_count_completes_only_at_end_of_input(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=0)
    resp = await add(client, "noop", "r", [{"ChunkID": f"c{i}", "RawData": i} for i in range(4)])
    assert resp.json() == {"Accepted": 4, "Duplicates": 0}

    async def all_done() -> bool:
        return (await chunk_counts(client, "noop", "r"))["SUCCEEDED"] == 4

    await wait_for(all_done)
    # Every chunk is done, but more may come: the run is still open.
    run = (await client.get(run_path("noop", "r"))).json()
    assert run["CurrentState"] == "RUNNING"
    assert run["InputClosed"] is False
    assert (await add(client, "noop", "r", {"ChunkID": "c4", "RawData": 4})).is_success
    resp = await end_of_input(client, "noop", "r")
    assert resp.status_code == 200
    assert resp.json()["RunID"] == "r"
    assert resp.json()["Accepted"] == 5
    run = await wait_run_done(client, "noop", "r")
    assert run["CurrentState"] == "SUCCEEDED"
    assert run["InputClosed"] is True
    assert run["ChunkCounts"]["SUCCEEDED"] == 5


async def test_end_of_input_before_chunks_finish(executor: Executor) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r")
        assert (await add(client, "gate", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}])).is_success
        resp = await end_of_input(client, "gate", "r")
        assert resp.json() == {"RunID": "r", "CurrentState": "RUNNING", "Accepted": 2}
        # Closing twice is harmless.
        assert (await end_of_input(client, "gate", "r")).status_code == 200
        assert (await add(client, "gate", "r", {"ChunkID": "c"})).status_code == 409
        gate.release_all()
        assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "SUCCEEDED"


async def test_end_of_input_with_fewer_chunks_than_expected(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=10)
    assert (await add(client, "noop", "r", {"ChunkID": "only"})).is_success
    assert (await end_of_input(client, "noop", "r")).is_success
    run = await wait_run_done(client, "noop", "r")
    assert run["CurrentState"] == "SUCCEEDED"
    assert run["ChunkCounts"]["SUCCEEDED"] == 1


async def test_end_of_input_on_an_empty_run_succeeds_at_once(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r")
    resp = await end_of_input(client, "noop", "r")
    assert resp.json() == {"RunID": "r", "CurrentState": "SUCCEEDED", "Accepted": 0}


async def test_end_of_input_of_an_unknown_run_is_a_404(client: httpx.AsyncClient) -> None:
    resp = await end_of_input(client, "noop", "nope")
    assert resp.status_code == 404
    assert "nope" in resp.json()["value"]
    assert (await end_of_input(client, "nope", "r")).status_code == 404


async def test_one_failed_chunk_makes_the_run_errored(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=3)
    chunks = [
        {"ChunkID": "ok1", "RawData": {"v": 1}},
        {"ChunkID": "bad", "RawData": {"v": 2, "Fail": True}},
        {"ChunkID": "ok2", "RawData": {"v": 3}},
    ]
    assert (await add(client, "noop", "r", chunks)).is_success
    run = await wait_run_done(client, "noop", "r")
    assert run["CurrentState"] == "ERRORED"
    assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 2, "FAILED": 1}


async def test_executor_wait_returns_the_finished_run(executor: Executor) -> None:
    """The library form: configure, add and wait without HTTP."""
    config = Configuration.model_validate({"ExpectedData": {"NumChunks": 2}})
    executor.configure("noop", "lib", config)
    result = executor.add_data("noop", "lib", [Data(ChunkID="a", RawData=1), Data(ChunkID="b")])
    assert (result.accepted, result.duplicates) == (2, 0)
    run = await executor.wait("noop", "lib", timeout=10)
    assert run.state.value == "SUCCEEDED"
    assert [c.out_raw for c in run.chunks.values()] == [1, None]
