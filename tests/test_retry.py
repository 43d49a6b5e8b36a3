"""Retrying what failed: `POST .../runs/{r}/retry` queues a run's FAILED chunks again and
resends its failed deliveries, idempotently, and the run leaves ERRORED."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from _gates import add, asgi_client, configure, run_path
from _stub_server import FlakyDownstream, serve_asgi
from conftest import live_server, wait_for, wait_run_done
from wiz_executor import (
    Context,
    Executor,
    Input,
    Processor,
    ProcessorConfig,
    Settings,
)
from wiz_executor.api import DataChunkState
from wiz_executor.cli import app
from wiz_executor.client import AsyncClient, Client
from wiz_executor.runs import Chunk, Run

pytestmark = pytest.mark.anyio


class Flaky(Processor[ProcessorConfig]):
    """Fails the chunks whose RawData says `{"flaky": true}` while `failing` is set."""

    id = "flaky"
    name = "Flaky (test)"
    Config = ProcessorConfig
    failing = True

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        if Flaky.failing and isinstance(data.raw_data, dict) and data.raw_data.get("flaky"):
            raise RuntimeError("flaky: not this time")
        return data.raw_data


@pytest.fixture
def flaky(executor: Executor) -> type[Flaky]:
    Flaky.failing = True
    executor.registry.register(Flaky)
    return Flaky


def chunks(*flaky: bool) -> list[dict[str, Any]]:
    return [{"ChunkID": f"c{i}", "RawData": {"i": i, "flaky": f}} for i, f in enumerate(flaky)]


async def retry(client: httpx.AsyncClient, proc: str, run: str) -> httpx.Response:
    return await client.post(run_path(proc, run) + "/retry")


@pytest.mark.parametrize("work_model", ["POOL", "LIFETIME"])
async def test_failed_chunks_run_again_and_the_run_succeeds(
    executor: Executor, client: httpx.AsyncClient, flaky: type[Flaky], work_model: str
) -> None:
    """ERRORED → RUNNING → SUCCEEDED: the work model, which let the run's workers go
    when it finished, gives it workers again."""
    states: list[str] = []

    def record(run: Run, chunk: Chunk | None) -> None:
        if chunk is None and run.run_id == "r":
            states.append(run.state.value)

    executor.runs.listeners.append(record)
    await configure(client, "flaky", "r", num_chunks=4, WorkModel=work_model)
    assert (await add(client, "flaky", "r", chunks(False, True, False, True))).is_success
    run = await wait_run_done(client, "flaky", "r")
    assert run["CurrentState"] == "ERRORED"
    assert run["ChunkCounts"]["FAILED"] == 2

    flaky.failing = False
    resp = await retry(client, "flaky", "r")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"RunID": "r", "CurrentState": "RUNNING", "Chunks": 2, "Deliveries": 0}
    run = await wait_run_done(client, "flaky", "r")
    assert run["CurrentState"] == "SUCCEEDED"
    assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 4, "FAILED": 0}
    data = (await client.get(run_path("flaky", "r") + "/data")).json()
    assert {c["State"] for c in data["In"] + data["Out"]} == {"SUCCEEDED"}
    assert all("Error" not in c for c in data["In"] + data["Out"])
    assert sorted(c["RawData"]["i"] for c in data["Out"]) == [0, 1, 2, 3]
    assert states == ["CONFIGURED", "RUNNING", "ERRORED", "RUNNING", "SUCCEEDED"]
    # Executor-wide counts follow; the finished-chunk counter counts every ending.
    assert executor.runs.counts[DataChunkState.FAILED] == 0
    assert executor.runs.counts[DataChunkState.SUCCEEDED] == 4
    totals = executor.runs.finished_totals["flaky"]
    assert (totals[DataChunkState.SUCCEEDED], totals[DataChunkState.FAILED]) == (4, 2)

    again = await retry(client, "flaky", "r")  # nothing failed: nothing to do
    assert again.json() == {"RunID": "r", "CurrentState": "SUCCEEDED", "Chunks": 0, "Deliveries": 0}
    assert (await client.get(run_path("flaky", "r"))).json()["CurrentState"] == "SUCCEEDED"


async def test_a_chunk_that_fails_again_leaves_the_run_errored_again(
    client: httpx.AsyncClient, flaky: type[Flaky]
) -> None:
    await configure(client, "flaky", "r", num_chunks=1)
    assert (await add(client, "flaky", "r", chunks(True))).is_success
    assert (await wait_run_done(client, "flaky", "r"))["CurrentState"] == "ERRORED"
    assert (await retry(client, "flaky", "r")).json()["Chunks"] == 1
    run = await wait_run_done(client, "flaky", "r")
    assert run["CurrentState"] == "ERRORED"
    out = (await client.get(run_path("flaky", "r") + "/data/input/c0")).json()
    assert out["Error"] == "RuntimeError: flaky: not this time"


async def test_a_running_run_s_failed_chunks_can_be_retried(
    client: httpx.AsyncClient, flaky: type[Flaky]
) -> None:
    await configure(client, "flaky", "r", num_chunks=3)
    assert (await add(client, "flaky", "r", chunks(False, True))).is_success
    await wait_for_counts(client, "r", lambda counts: counts["FAILED"] == 1)
    flaky.failing = False
    resp = await retry(client, "flaky", "r")
    assert resp.json() == {"RunID": "r", "CurrentState": "RUNNING", "Chunks": 1, "Deliveries": 0}
    assert (await add(client, "flaky", "r", {"ChunkID": "last"})).is_success
    assert (await wait_run_done(client, "flaky", "r"))["CurrentState"] == "SUCCEEDED"


async def wait_for_counts(client: httpx.AsyncClient, run: str, condition: Any) -> None:
    async def holds() -> bool:
        body = (await client.get(run_path("flaky", run))).json()
        return bool(condition(body["ChunkCounts"]))

    await wait_for(holds, what="the chunk counts")


async def test_retry_of_an_unknown_run_or_processor_is_a_404(client: httpx.AsyncClient) -> None:
    assert (await retry(client, "noop", "nope")).status_code == 404
    assert (await retry(client, "nope", "r")).status_code == 404
    await configure(client, "noop", "gone", num_chunks=1)
    assert (await client.delete(run_path("noop", "gone"))).status_code == 200
    resp = await retry(client, "noop", "gone")
    assert resp.status_code == 404
    assert resp.json()["value"].startswith("no run 'gone' of processor 'noop'")


async def test_a_retry_that_would_overflow_the_waiting_queue_is_a_429(tmp_path: Path) -> None:
    Flaky.failing = True
    settings = Settings(data_dir=tmp_path, max_pending=2)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        executor.registry.register(Flaky)
        await configure(client, "flaky", "r", num_chunks=3)
        three = chunks(True, True, True)
        assert (await add(client, "flaky", "r", three[:2])).is_success
        await wait_for_counts(client, "r", lambda counts: counts["FAILED"] == 2)
        assert (await add(client, "flaky", "r", three[2:])).is_success
        assert (await wait_run_done(client, "flaky", "r"))["CurrentState"] == "ERRORED"
        resp = await retry(client, "flaky", "r")
        assert resp.status_code == 429, resp.text
        assert resp.headers["Retry-After"] == "1"
        assert "--max-pending" in resp.json()["value"]
        run = (await client.get(run_path("flaky", "r"))).json()
        assert run["CurrentState"] == "ERRORED"
        assert run["ChunkCounts"]["FAILED"] == 3


async def test_failed_deliveries_are_sent_again_to_the_locations_that_failed(
    tmp_path: Path,
) -> None:
    refusing = FlakyDownstream([400], forever=True)  # a final answer: the delivery fails
    accepting = FlakyDownstream([])
    async with (
        serve_asgi(refusing) as host_1,
        serve_asgi(accepting) as host_2,
        live_server(Settings(data_dir=tmp_path, downstream_backoff=0.01)) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        where = [
            {"Hostname": host_1, "ProcID": "next", "RunID": "one"},
            {"Hostname": host_2, "ProcID": "next", "RunID": "two"},
        ]
        await configure(
            http, "noop", "r", num_chunks=2, SendDownstream=True, DownstreamLocations=where
        )
        assert (await add(http, "noop", "r", chunks(False, False))).is_success
        assert (await wait_run_done(http, "noop", "r"))["CurrentState"] == "ERRORED"
        out = (await http.get(run_path("noop", "r") + "/data/output/c0-out")).json()
        assert out["DeliveryError"] == f"{host_1} next/one: HTTP 400: stub: not now"

        refusing.forever = False  # it accepts from now on
        resp = await http.post(run_path("noop", "r") + "/retry")
        assert resp.json() == {
            "RunID": "r",
            "CurrentState": "RUNNING",
            "Chunks": 0,
            "Deliveries": 2,
        }
        assert (await wait_run_done(http, "noop", "r"))["CurrentState"] == "SUCCEEDED"
        data = (await http.get(run_path("noop", "r") + "/data")).json()
        assert all("DeliveryError" not in o for o in data["Out"])
        again = (await http.post(run_path("noop", "r") + "/retry")).json()
        assert (again["Chunks"], again["Deliveries"]) == (0, 0)
    assert refusing.tries == {"c0-out": 2, "c1-out": 2}
    assert sorted(c["ChunkID"] for c in refusing.accepted()) == ["c0-out", "c1-out"]
    assert accepting.tries == {"c0-out": 1, "c1-out": 1}  # delivered already: not resent


async def test_the_clients_and_the_cli_retry(tmp_path: Path) -> None:
    async with live_server(Settings(data_dir=tmp_path)) as (url, _):
        async with AsyncClient(url) as wiz:
            await wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": 1}})
            await wiz.add_data("noop", "r", {"ChunkID": "c", "RawData": {"Fail": True}})
            assert (await wiz.wait("noop", "r", timeout=10)).CurrentState.value == "ERRORED"
            done = await wiz.retry("noop", "r")
            assert (done.RunID, done.Chunks, done.Deliveries) == ("r", 1, 0)
            assert (await wiz.wait("noop", "r", timeout=10)).CurrentState.value == "ERRORED"

        def sync_retry() -> Any:
            with Client(url) as wiz:
                return wiz.retry("noop", "r")

        done = await anyio.to_thread.run_sync(sync_retry)
        assert (done.Chunks, done.Deliveries) == (1, 0)
        async with AsyncClient(url) as wiz:
            assert (await wiz.wait("noop", "r", timeout=10)).CurrentState.value == "ERRORED"

        def cli(*args: str) -> Any:
            return CliRunner().invoke(app, ["retry", "noop", *args, "--url", url])

        result = await anyio.to_thread.run_sync(cli, "r")
        assert result.exit_code == 0, result.output
        assert "retried noop/r: 1 chunks and 0 deliveries queued again" in result.output
        async with AsyncClient(url) as wiz:
            assert (await wiz.wait("noop", "r", timeout=10)).CurrentState.value == "ERRORED"
        result = await anyio.to_thread.run_sync(cli, "r", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["Chunks"] == 1
        result = await anyio.to_thread.run_sync(cli, "missing")
        assert result.exit_code != 0
        assert "missing" in result.output


async def test_retry_is_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"]["/processors/{procID}/runs/{runID}/retry"]["post"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/RetryResult"}
    assert set(document["components"]["schemas"]["RetryResult"]["properties"]) == {
        "RunID",
        "CurrentState",
        "Chunks",
        "Deliveries",
    }
    assert {"404", "429"} <= set(operation["responses"])


@pytest.mark.parametrize("work_model", ["POOL", "LIFETIME"])
async def test_a_retry_right_as_the_run_finishes_gets_workers(
    executor: Executor, client: httpx.AsyncClient, flaky: type[Flaky], work_model: str
) -> None:
    """Retried in the loop pass the run finished in, before its work model has let its
    workers go: the retry waits for that, then opens the run anew (else the release
    would close the reopened run and its chunks would wait for ever)."""
    await configure(client, "flaky", "r", num_chunks=2, WorkModel=work_model)
    assert (await add(client, "flaky", "r", chunks(True, True))).is_success
    run = await executor.wait("flaky", "r", timeout=10)
    assert run.state.value == "ERRORED"
    flaky.failing = False
    _, requeued, _ = await executor.retry("flaky", "r")
    assert requeued == 2
    assert (await executor.wait("flaky", "r", timeout=10)).state.value == "SUCCEEDED"
