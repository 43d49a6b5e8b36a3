"""Configure: creates a run once; the same body again is a no-op, another one a 409; an
invalid processor configuration or a malformed body is a 400 and creates nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import wait_run_done
from wiz_executor import (
    Executor,
    Settings,
)

pytestmark = pytest.mark.anyio

CONFIG = "/processors/noop/runs/r/config"


async def assert_no_run(client: httpx.AsyncClient, proc: str = "noop", run: str = "r") -> None:
    resp = await client.get(run_path(proc, run))
    assert resp.status_code == 404, resp.text
    assert "configure it first" in resp.json()["value"]
    assert (await client.get(f"/processors/{proc}/runs")).json() == []


async def test_configure_creates_a_configured_run(client: httpx.AsyncClient) -> None:
    body = {
        "ExpectedData": {"NumChunks": 2},
        "ExecutorConfig": {"MaxWorkers": 3, "WorkModel": "POOL", "ChunkTimeout": 2.5},
        "Processor": {"SleepMs": 1},
    }
    resp = await client.post(CONFIG, json=body)
    assert resp.status_code == 200, resp.text
    run = resp.json()
    assert run["RunID"] == "r"
    assert run["CurrentState"] == "CONFIGURED"
    assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 0, "FAILED": 0}
    config = (await client.get(CONFIG)).json()
    assert config == {
        "ExpectedData": {"NumChunks": 2},
        "ExecutorConfig": {
            "MaxWorkers": 3,
            "SendDownstream": False,
            "DownstreamLocations": None,
            "WorkModel": "POOL",
            "ChunkTimeout": 2.5,
        },
        "Processor": {"SleepMs": 1},
    }


async def test_missing_fields_take_go_zero_values(client: httpx.AsyncClient) -> None:
    resp = await client.post(CONFIG, content=b"{}")
    assert resp.status_code == 200, resp.text
    assert (await client.get(CONFIG)).json() == {
        "ExpectedData": {"NumChunks": 0},
        "ExecutorConfig": {"MaxWorkers": 0, "SendDownstream": False, "DownstreamLocations": None},
        "Processor": None,
    }


async def test_same_configuration_again_is_a_no_op(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=2)
    assert (await add(client, "noop", "r", {"ChunkID": "c0", "RawData": 0})).status_code == 200
    # The same configuration, spelled with the zero values written out: still the same.
    again = {
        "ExpectedData": {"NumChunks": 2},
        "ExecutorConfig": {"MaxWorkers": 0, "SendDownstream": False, "DownstreamLocations": None},
        "Processor": None,
    }
    resp = await client.post(CONFIG, json=again)
    assert resp.status_code == 200, resp.text
    assert resp.json()["CurrentState"] in ("RUNNING", "SUCCEEDED")  # not reset to CONFIGURED
    data = (await client.get(f"{run_path('noop', 'r')}/data")).json()
    assert [c["ChunkID"] for c in data["In"]] == ["c0"]


@pytest.mark.parametrize(
    "different",
    [
        {"ExpectedData": {"NumChunks": 3}},
        {"ExpectedData": {"NumChunks": 2}, "ExecutorConfig": {"MaxWorkers": 1}},
        {"ExpectedData": {"NumChunks": 2}, "ExecutorConfig": {"WorkModel": "POOL"}},
        {"ExpectedData": {"NumChunks": 2}, "Processor": {"SleepMs": 1}},
        # Different and also invalid: the conflict is what the client must hear about.
        {"ExpectedData": {"NumChunks": 2}, "Processor": {"Bogus": 1}},
    ],
)
async def test_different_configuration_is_a_409(
    client: httpx.AsyncClient, different: dict[str, Any]
) -> None:
    await configure(client, "noop", "r", num_chunks=2)
    resp = await client.post(CONFIG, json=different)
    assert resp.status_code == 409, resp.text
    assert "configured differently" in resp.json()["value"]
    assert (await client.get(CONFIG)).json()["ExpectedData"] == {"NumChunks": 2}


@pytest.mark.parametrize(
    ("processor", "why"),
    [
        ({"SleepMs": -1}, "SleepMs"),
        ({"SleepMs": "soon"}, "SleepMs"),
        ({"SleepMs": "5"}, "SleepMs"),
        ({"Fail": 1}, "Fail"),
        ("fast", "configuration"),
        ([1, 2], "configuration"),
    ],
)
async def test_invalid_processor_configuration_is_a_400_and_creates_nothing(
    client: httpx.AsyncClient, processor: Any, why: str
) -> None:
    body = {"ExpectedData": {"NumChunks": 1}, "Processor": processor}
    resp = await client.post(CONFIG, json=body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["value"]
    assert "noop" in message
    assert why in message
    await assert_no_run(client)
    # The run ID is still free for a valid configuration.
    await configure(client, "noop", "r", num_chunks=1)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b"null",
        b"[]",
        b'"config"',
        b'{"ExpectedData": {"NumChunks": -1}}',
        b'{"ExpectedData": {"NumChunks": 4294967296}}',
        b'{"ExpectedData": {"NumChunks": "3"}}',
        b'{"ExpectedData": 3}',
        b'{"ExecutorConfig": {"MaxWorkers": -2}}',
        b'{"ExecutorConfig": {"MaxWorkers": 1.5}}',
        b'{"ExecutorConfig": {"WorkModel": "FORK"}}',
        b'{"ExecutorConfig": {"ChunkTimeout": -1}}',
        b'{"ExecutorConfig": {"ChunkTimeout": NaN}}',
        b'{"ExecutorConfig": {"SendDownstream": "yes"}}',
        b'{"ExecutorConfig": {"DownstreamLocations": [{"Hostname": "h:1"}]}}',
        b'{"ExecutorConfig": {"DownstreamLocations": "h:1"}}',
    ],
)
async def test_malformed_body_is_a_400_and_creates_nothing(
    client: httpx.AsyncClient, body: bytes
) -> None:
    resp = await client.post(CONFIG, content=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["value"]
    await assert_no_run(client)


async def test_body_type_is_read_as_json_whatever_the_content_type(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(
        CONFIG, content=b'{"ExpectedData":{"NumChunks":1}}', headers={"content-type": "text/plain"}
    )
    assert resp.status_code == 200, resp.text


async def test_oversized_configuration_is_a_413(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_body_bytes=1024)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        body = b'{"Processor": {"Bogus": "' + b"x" * 2048 + b'"}}'
        resp = await client.post(CONFIG, content=body)
        assert resp.status_code == 413, resp.text
        assert "1024" in resp.json()["value"]
        await assert_no_run(client)


async def test_unknown_processor_is_a_404(client: httpx.AsyncClient) -> None:
    resp = await client.post("/processors/nope/runs/r/config", json={})
    assert resp.status_code == 404
    assert resp.json() == {"value": "no processor 'nope' on this executor"}


async def test_runs_are_partitioned_by_processor(executor: Executor) -> None:
    """The same run ID under two processors names two different runs."""
    executor.registry.register(gate_processor(Gate()))
    async with asgi_client(executor) as client:
        await configure(client, "noop", "same", num_chunks=1)
        await configure(client, "gate", "same", num_chunks=5, MaxWorkers=2)
        noop_cfg = (await client.get("/processors/noop/runs/same/config")).json()
        gate_cfg = (await client.get("/processors/gate/runs/same/config")).json()
        assert noop_cfg["ExpectedData"]["NumChunks"] == 1
        assert gate_cfg["ExpectedData"]["NumChunks"] == 5
        assert [r["RunID"] for r in (await client.get("/processors/noop/runs")).json()] == ["same"]
        assert (await client.delete("/processors/gate/runs/same")).status_code == 200
        assert (await client.get("/processors/noop/runs/same")).status_code == 200


async def test_concurrent_configures_of_one_run_agree(client: httpx.AsyncClient) -> None:
    """Many clients configure at once: identical bodies all succeed; among different
    bodies exactly one wins and every other one hears 409."""
    same = {"ExpectedData": {"NumChunks": 4}}
    answers = await asyncio.gather(*(client.post(CONFIG, json=same) for _ in range(20)))
    assert {r.status_code for r in answers} == {200}

    bodies = [{"ExpectedData": {"NumChunks": n}} for n in range(1, 21)]
    answers = await asyncio.gather(
        *(client.post("/processors/noop/runs/race/config", json=b) for b in bodies)
    )
    codes = [r.status_code for r in answers]
    assert codes.count(200) == 1
    assert codes.count(409) == 19
    winner = bodies[codes.index(200)]
    config = (await client.get("/processors/noop/runs/race/config")).json()
    assert config["ExpectedData"] == winner["ExpectedData"]


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


async def test_configure_again_with_true_for_1_is_a_conflict(client: httpx.AsyncClient) -> None:
    """The same `True == 1` trap in the processor's own configuration: noop reads
    either as true, but they are two different configurations."""
    path = run_path("noop", "r") + "/config"
    first = await client.post(path, json={"Processor": {"Fail": True}})
    assert first.status_code == 200, first.text
    again = await client.post(path, json={"Processor": {"Fail": 1}})
    assert again.status_code == 409, again.text
    assert (await client.post(path, json={"Processor": {"Fail": True}})).status_code == 200


@pytest.mark.parametrize("locations", [[], None])
async def test_send_downstream_with_no_locations_is_accepted_and_sends_nothing(
    client: httpx.AsyncClient, locations: list[Any] | None
) -> None:
    """How the original manager configures every leaf of a pipeline."""
    body = {
        "ExpectedData": {"NumChunks": 1},
        "ExecutorConfig": {
            "MaxWorkers": 0,
            "SendDownstream": True,
            "DownstreamLocations": locations,
        },
        "Processor": None,
    }
    resp = await client.post(CONFIG, json=body)
    assert resp.status_code == 200, resp.text
    assert "Warnings" not in resp.json()
    assert (await client.get(CONFIG)).json() == body
    await add(client, "noop", "r", {"ChunkID": "c", "RawData": 1})
    run = await wait_run_done(client, "noop", "r")
    assert run["CurrentState"] == "SUCCEEDED"
    out = (await client.get(f"{run_path('noop', 'r')}/data/output/c-out")).json()
    assert "DeliveryError" not in out


async def test_max_workers_above_the_executor_limit_is_clamped_with_a_warning(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "wiz-data", max_workers=4, shutdown_grace=5)
    async with Executor(settings) as ex, asgi_client(ex) as client:
        body = {"ExecutorConfig": {"MaxWorkers": 100}}
        resp = await client.post(CONFIG, json=body)
        assert resp.status_code == 200, resp.text
        (warning,) = resp.json()["Warnings"]
        assert "MaxWorkers 100" in warning
        assert "--max-workers 4" in warning
        assert ex.get_run("noop", "r").max_workers == 4
        # GetConfig returns what was sent; the clamp is the run's, said in Warnings.
        assert (await client.get(CONFIG)).json()["ExecutorConfig"]["MaxWorkers"] == 100
        resp = await client.post(
            "/processors/noop/runs/r2/config", json={"ExecutorConfig": {"MaxWorkers": 4}}
        )
        assert "Warnings" not in resp.json()
        assert ex.get_run("noop", "r2").max_workers == 4
