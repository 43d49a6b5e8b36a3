"""Regression tests for defects found in the pre-release review of the executor core."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import wait_for
from wiz_executor import (
    Configuration,
    DataChunkState,
    DataFormat,
    Executor,
    ProcessorConfig,
    Settings,
    WorkModel,
)
from wiz_executor.downstream import Downstream
from wiz_executor.runs import Chunk, Run, RunMap

pytestmark = pytest.mark.anyio


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


async def test_an_infinite_chunk_timeout_is_refused(client: httpx.AsyncClient) -> None:
    """`1e400` reads as infinity: it must be a 400, not a run whose configuration then
    reads back as `"ChunkTimeout": null` (and conflicts with itself when resent)."""
    body = b'{"ExecutorConfig": {"ChunkTimeout": 1e400}}'
    resp = await client.post(run_path("noop", "r") + "/config", content=body)
    assert resp.status_code == 400, resp.text
    assert "ChunkTimeout" in resp.json()["value"]
    assert (await client.get(run_path("noop", "r"))).status_code == 404


async def test_a_configuration_with_nan_is_refused(client: httpx.AsyncClient) -> None:
    """pydantic reads `NaN` in the processor's configuration; NaN equals nothing, so the
    same Configure sent again would be a 409, and it reads back as null."""
    body = b'{"Processor": {"Anything": NaN}}'
    resp = await client.post(run_path("noop", "r") + "/config", content=body)
    assert resp.status_code == 400, resp.text
    assert "finite" in resp.json()["value"]


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


async def test_an_output_queued_as_the_last_sender_ends_is_still_sent() -> None:
    """A sender that found the queue empty has ended, but its task leaves the sender
    set only in a later loop pass. An output queued in between must still get a
    sender, or it waits for the next output (never, for a run's last one: the run
    would stay RUNNING)."""
    posted: list[bytes] = []

    def accept(request: httpx.Request) -> httpx.Response:
        posted.append(request.content)
        return httpx.Response(200, json={"Accepted": 1, "Duplicates": 0})

    runs = RunMap()
    config = Configuration.model_validate(
        {
            "ExecutorConfig": {
                "SendDownstream": True,
                "DownstreamLocations": [{"Hostname": "h:1", "ProcID": "p", "RunID": "next"}],
            }
        }
    )
    run = Run("noop", "r", config, ProcessorConfig(), 1, WorkModel.POOL, None)
    runs.insert(run)
    async with httpx.AsyncClient(transport=httpx.MockTransport(accept)) as http:
        downstream = Downstream(runs, http, senders=1)
        for name in ("a", "b"):
            chunk = Chunk(name, f"{name}-out", DataFormat.RAW, None, "", "", False)
            runs.delivery_started(run)
            downstream.deliver(run, chunk)
            (sender,) = downstream._senders
            # One loop pass at a time, to act right after the sender ends (an event
            # would be set by a done-callback, a pass too late).
            while not sender.done():  # noqa: ASYNC110
                await asyncio.sleep(0)
        await wait_for(lambda: run.deliveries_pending == 0, what="both outputs delivered")
    assert len(posted) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_body_bytes", 0),
        ("downstream_attempts", 0),
        ("chunk_timeout", -1.0),
        ("chunk_timeout", float("nan")),
        ("shutdown_grace", -1.0),
        ("downstream_backoff", -0.5),
    ],
)
def test_settings_that_would_fail_everything_are_refused(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("first", "again"),
    [(True, 1), (0, False), ({"a": [True]}, {"a": [1]}), ([1.0, False], [1, 0])],
)
async def test_a_resend_with_true_for_1_is_a_conflict(
    client: httpx.AsyncClient, first: object, again: object
) -> None:
    """Python's `True == 1` must not make different JSON content a no-op resend."""
    await configure(client, "noop", "r", num_chunks=2)
    assert (await add(client, "noop", "r", {"ChunkID": "c", "RawData": first})).is_success
    resp = await add(client, "noop", "r", {"ChunkID": "c", "RawData": again})
    assert resp.status_code == 409, resp.text
    assert "different content" in resp.json()["value"]


async def test_a_resend_with_the_same_number_written_differently_is_a_no_op(
    client: httpx.AsyncClient,
) -> None:
    """1 and 1.0 are one number in JSON (Go reads both as float64): a no-op resend."""
    await configure(client, "noop", "r", num_chunks=2)
    assert (await add(client, "noop", "r", {"ChunkID": "c", "RawData": {"n": 1}})).is_success
    resp = await add(client, "noop", "r", {"ChunkID": "c", "RawData": {"n": 1.0}})
    assert resp.json() == {"Accepted": 0, "Duplicates": 1}


async def test_configure_again_with_true_for_1_is_a_conflict(client: httpx.AsyncClient) -> None:
    """The same `True == 1` trap in the processor's own configuration: noop reads
    either as true, but they are two different configurations."""
    path = run_path("noop", "r") + "/config"
    first = await client.post(path, json={"Processor": {"Fail": True}})
    assert first.status_code == 200, first.text
    again = await client.post(path, json={"Processor": {"Fail": 1}})
    assert again.status_code == 409, again.text
    assert (await client.post(path, json={"Processor": {"Fail": True}})).status_code == 200


@pytest.mark.parametrize("hostname", ["bad host:abc", "127.0.0.1:99999"])
async def test_a_downstream_address_httpx_cannot_use_is_a_delivery_error(
    executor: Executor, client: httpx.AsyncClient, hostname: str
) -> None:
    """An address that is not a URL at all (httpx raises InvalidURL, or an exception
    group for a port out of range) fails the delivery with that reason; it used to
    kill the sender and be reported as "executor shut down"."""
    location = {"Hostname": hostname, "ProcID": "noop", "RunID": "next"}
    await configure(
        client, "noop", "r", num_chunks=1, SendDownstream=True, DownstreamLocations=[location]
    )
    assert (await add(client, "noop", "r", {"ChunkID": "c"})).is_success
    await executor.wait("noop", "r", timeout=10)
    output = (await client.get(run_path("noop", "r") + "/data/output/c-out")).json()
    assert output["State"] == "SUCCEEDED"
    assert "shut down" not in output["DeliveryError"]
    assert hostname in output["DeliveryError"]
    assert executor.runs.get("noop", "r").state.value == "ERRORED"
