"""Cancelling a run: `POST .../runs/{r}/cancel` declares end of input and fails the
run's WAITING chunks without running them; RUNNING ones finish, then the run is
ERRORED. Journalled, idempotent, behind the token, and in the clients and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import live_server, wait_for, wait_run_done
from wiz_executor import Executor, Settings, create_app
from wiz_executor.cli import app
from wiz_executor.client import AsyncClient, Client
from wiz_executor.runs import CANCELLED

pytestmark = pytest.mark.anyio


def chunks(n: int) -> list[dict[str, Any]]:
    return [{"ChunkID": f"c{i}", "RawData": {"i": i}} for i in range(n)]


@pytest.mark.parametrize("work_model", ["POOL", "LIFETIME"])
async def test_cancel_fails_the_waiting_chunks_and_lets_the_running_one_finish(
    executor: Executor, work_model: str
) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", 0, MaxWorkers=1, WorkModel=work_model)
        assert (await add(client, "gate", "r", chunks(4))).status_code == 200
        await wait_for(lambda: gate.active == 1, what="one chunk to run")
        resp = await client.post(run_path("gate", "r") + "/cancel")
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"RunID": "r", "CurrentState": "RUNNING", "Cancelled": 3}
        run = (await client.get(run_path("gate", "r"))).json()
        assert run["InputClosed"] is True
        assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 1, "SUCCEEDED": 0, "FAILED": 3}
        # no more chunks: the input is closed
        assert (await add(client, "gate", "r", chunks(5)[4:])).status_code == 409
        gate.release_all()
        done = await wait_run_done(client, "gate", "r")
        assert done["CurrentState"] == "ERRORED"
        assert done["ChunkCounts"]["SUCCEEDED"] == 1
        assert gate.entered == 1  # the cancelled chunks never ran
        failed = (await client.get(run_path("gate", "r") + "/data?state=FAILED")).json()
        assert {c["Error"] for c in failed["In"]} == {CANCELLED}
        assert all("Attempts" not in c for c in failed["In"])  # never started
        # again: nothing waits, nothing changes
        again = await client.post(run_path("gate", "r") + "/cancel")
        assert again.json() == {"RunID": "r", "CurrentState": "ERRORED", "Cancelled": 0}
        # a retry runs them after all
        assert (await client.post(run_path("gate", "r") + "/retry")).json()["Chunks"] == 3
        done = await wait_run_done(client, "gate", "r")
        assert done["CurrentState"] == "SUCCEEDED"
        assert gate.entered == 4


async def test_cancel_of_an_unknown_run_or_processor_is_a_404(client: httpx.AsyncClient) -> None:
    assert (await client.post(run_path("noop", "nope") + "/cancel")).status_code == 404
    assert (await client.post(run_path("nope", "r") + "/cancel")).status_code == 404


async def test_a_cancel_is_journalled(settings: Settings) -> None:
    gate = Gate()
    async with Executor(settings) as executor:
        executor.registry.register(gate_processor(gate))
        async with asgi_client(executor) as client:
            await configure(client, "gate", "r", 0, MaxWorkers=1)
            await add(client, "gate", "r", chunks(3))
            await wait_for(lambda: gate.active == 1, what="one chunk to run")
            assert (await client.post(run_path("gate", "r") + "/cancel")).status_code == 200
            gate.release_all()
            await wait_run_done(client, "gate", "r")
    async with Executor(settings) as executor:
        executor.registry.register(gate_processor(Gate()))
        await executor.recovered()
        run = executor.get_run("gate", "r")
        assert run.state.value == "ERRORED"
        assert run.input_closed
        stored = await executor.chunks_of(run)
        assert [(c.id, c.state.value, c.error) for c in stored] == [
            ("c0", "SUCCEEDED", None),
            ("c1", "FAILED", CANCELLED),
            ("c2", "FAILED", CANCELLED),
        ]


async def test_cancel_needs_the_token(settings: Settings) -> None:
    token = "cancel-token-1"
    async with Executor(replace(settings, token=token)) as executor:
        transport = httpx.ASGITransport(app=create_app(executor=executor))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            auth = {"Authorization": f"Bearer {token}"}
            body = {"ExpectedData": {"NumChunks": 2}}
            path = run_path("noop", "r")
            assert (await http.post(path + "/config", json=body, headers=auth)).status_code == 200
            assert (await http.post(path + "/cancel")).status_code == 401
            assert executor.get_run("noop", "r").input_closed is False  # nothing changed
            assert (await http.post(path + "/cancel", headers=auth)).status_code == 200
            assert executor.get_run("noop", "r").input_closed is True


async def test_the_clients_and_the_cli_cancel(settings: Settings) -> None:
    async with live_server(settings) as (url, executor):
        gate = Gate()
        executor.registry.register(gate_processor(gate))
        async with AsyncClient(url) as wiz:
            await wiz.configure("gate", "a", {"ExecutorConfig": {"MaxWorkers": 1}})
            await wiz.add_data("gate", "a", [{"ChunkID": "x"}, {"ChunkID": "y"}])
            await wait_for(lambda: gate.active == 1, what="one chunk to run")
            done = await wiz.cancel("gate", "a")
            assert (done.RunID, done.Cancelled) == ("a", 1)

        def sync_cancel() -> Any:
            with Client(url) as wiz:
                return wiz.cancel("gate", "a")

        assert (await anyio.to_thread.run_sync(sync_cancel)).Cancelled == 0

        def cli(*args: str) -> Any:
            return CliRunner().invoke(app, ["cancel", "gate", *args, "--url", url])

        result = await anyio.to_thread.run_sync(cli, "a")
        assert result.exit_code == 0, result.output
        assert "cancelled gate/a: 0 waiting chunks failed; the run is RUNNING" in result.output
        result = await anyio.to_thread.run_sync(cli, "a", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["Cancelled"] == 0
        result = await anyio.to_thread.run_sync(cli, "missing")
        assert result.exit_code != 0
        assert "missing" in result.output
        gate.release_all()


async def test_cancel_and_history_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    cancel = paths["/processors/{procID}/runs/{runID}/cancel"]["post"]
    schema = cancel["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/CancelResult"}
    history = paths["/processors/{procID}/runs/{runID}/history"]["get"]
    schema = history["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/RunHistory"}
    run = document["components"]["schemas"]["Run"]["properties"]
    assert {"Started", "Ended", "DurationSeconds", "ChunksPerSecond", "EtaSeconds"} <= set(run)
