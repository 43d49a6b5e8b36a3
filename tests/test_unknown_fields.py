"""Unknown fields in Configure and AddData bodies: ignored and reported in `Warnings`
(and the log), never dropped silently; a 400 under `strict_config` (`--strict-config`).
Wrong types stay a 400 either way."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure, run_path
from conftest import wait_run_done
from wiz_executor import Executor, Settings
from wiz_executor.api import AddDataResult, Run
from wiz_executor.server._fastpath import DECODE_OFF_LOOP_BYTES

pytestmark = pytest.mark.anyio

CONFIG = "/processors/noop/runs/r/config"
DATA = "/processors/noop/runs/r/data"


@pytest.fixture
async def strict_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(data_dir=tmp_path / "wiz-data", strict_config=True, shutdown_grace=5)
    async with Executor(settings) as ex, asgi_client(ex) as client:
        yield client


# -- Configure ------------------------------------------------------------------------


async def test_the_managers_example_processor_config_is_accepted_with_a_warning(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The original repository's example pipeline sends `"Processor": {"test": "test"}`."""
    body = {"ExpectedData": {"NumChunks": 1}, "Processor": {"test": "test"}}
    with caplog.at_level(logging.WARNING):
        resp = await client.post(CONFIG, json=body)
    assert resp.status_code == 200, resp.text
    warnings = ["unknown field Processor.test ignored"]
    assert resp.json()["Warnings"] == warnings
    assert (await client.get(run_path("noop", "r"))).json()["Warnings"] == warnings
    assert [r["Warnings"] for r in (await client.get("/processors/noop/runs")).json()] == [warnings]
    # GetConfig returns what was sent.
    assert (await client.get(CONFIG)).json()["Processor"] == {"test": "test"}
    assert any("Processor.test" in r.getMessage() for r in caplog.records)
    assert all(
        r.levelno == logging.WARNING for r in caplog.records if "Processor.test" in r.message
    )
    # The run works with the defaults of the fields it knows.
    await add(client, "noop", "r", {"ChunkID": "c", "RawData": 1})
    assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "SUCCEEDED"


async def test_top_level_typos_are_reported_not_dropped(client: httpx.AsyncClient) -> None:
    body = {
        "ExpectedData": {"NumChunk": 3},
        "ExecutorConfg": {"MaxWorkers": 2},
        "ExecutorConfig": {
            "SendDownstream": True,
            "DownstreamLocations": [{"Hostname": "h:1", "ProcID": "noop", "RunID": "x", "Port": 1}],
        },
    }
    resp = await client.post(CONFIG, json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["Warnings"] == [
        "unknown field ExpectedData.NumChunk ignored",
        "unknown field ExecutorConfg ignored",
        "unknown field ExecutorConfig.DownstreamLocations[0].Port ignored",
    ]


async def test_nested_unknown_fields_of_a_processor_config_are_reported_with_their_path(
    client: httpx.AsyncClient,
) -> None:
    body = {"Processor": {"config": {"Sites": [], "Foo": 1}, "colly": {"Bar": 2}, "Top": 3}}
    resp = await client.post("/processors/scrape/runs/s/config", json=body)
    assert resp.status_code == 200, resp.text
    assert sorted(resp.json()["Warnings"]) == [
        "unknown field Processor.Top ignored",
        "unknown field Processor.colly.Bar ignored",
        "unknown field Processor.config.Foo ignored",
    ]


async def test_a_clean_configuration_has_no_warnings_field(client: httpx.AsyncClient) -> None:
    run = await configure(client, "noop", "r", num_chunks=1)
    assert "Warnings" not in run
    assert "Warnings" not in (await client.get(run_path("noop", "r"))).json()


async def test_unknown_and_wrongly_typed_fields_together_are_a_400(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.post(CONFIG, json={"Processor": {"test": "test", "SleepMs": "5"}})
    assert resp.status_code == 400, resp.text
    assert "SleepMs" in resp.json()["value"]
    assert (await client.get(run_path("noop", "r"))).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"Processor": {"test": "test"}},
        {"Processor": {"SleepMs": 1, "Extra": {"a": 1}}},
        {"ExpectedData": {"NumChunk": 3}},
        {"ExecutorConfg": {"MaxWorkers": 2}},
        {"ExecutorConfig": {"MaxWorker": 2}},
        {
            "ExecutorConfig": {
                "SendDownstream": True,
                "DownstreamLocations": [{"Hostname": "h:1", "ProcID": "p", "RunID": "r", "X": 1}],
            }
        },
    ],
)
async def test_unknown_fields_are_a_400_under_strict_config(
    strict_client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    resp = await strict_client.post(CONFIG, json=body)
    assert resp.status_code == 400, resp.text
    assert "unknown" in resp.json()["value"] or "Extra inputs" in resp.json()["value"]
    assert (await strict_client.get(run_path("noop", "r"))).status_code == 404


async def test_strict_config_still_takes_a_clean_configuration(
    strict_client: httpx.AsyncClient,
) -> None:
    run = await configure(strict_client, "noop", "r", num_chunks=1)
    assert run["CurrentState"] == "CONFIGURED"


@pytest.mark.parametrize(
    ("proc", "processor"),
    [
        ("noop", {"SleepMs": "5"}),
        ("noop", {"Fail": "true"}),
        ("noop", {"Fail": 1}),
        ("noop", {"SleepMs": 1.5}),
        ("noop", {"SleepMs": True}),
        ("get", {"URL": "http://127.0.0.1:9/x", "Retries": "3"}),
        ("get", {"URL": "http://127.0.0.1:9/x", "Concurrent": {"Enabled": 1}}),
        ("git", {"URL": "http://127.0.0.1:9/r.git", "SingleBranch": "yes"}),
        ("ls", {"Recursive": 0}),
        ("scrape", {"config": {"MaxPages": "10"}}),
    ],
)
@pytest.mark.parametrize("strict", [False, True])
async def test_wrong_types_in_a_processor_config_are_a_400(
    tmp_path: Path, proc: str, processor: dict[str, Any], strict: bool
) -> None:
    settings = Settings(data_dir=tmp_path / "wiz-data", strict_config=strict, shutdown_grace=5)
    async with Executor(settings) as ex, asgi_client(ex) as client:
        resp = await client.post(f"/processors/{proc}/runs/r/config", json={"Processor": processor})
        assert resp.status_code == 400, resp.text
        assert (await client.get(run_path(proc, "r"))).status_code == 404


@pytest.mark.parametrize(
    ("proc", "processor"),
    [
        ("noop", {"SleepMs": 5, "Fail": False}),
        (
            "get",
            {
                "URL": "http://127.0.0.1:9/x",
                "Method": "POST",
                "Headers": {"A": "b"},
                "Body": {"k": [1]},
                "Timeout": 5,  # an integer where a float is expected: JSON has one number
                "Backoff": 0.25,
                "Concurrent": {"Enabled": True, "Num": 2},
            },
        ),
        ("git", {"URL": "http://127.0.0.1:9/r.git", "Depth": 1, "SingleBranch": True}),
        ("ls", {"Recursive": True, "MaxEntries": 10}),
        (
            "scrape",
            {
                "config": {"Sites": ["http://127.0.0.1:9/"], "Timeout": 1},
                "colly": {"AllowedDomains": ["127.0.0.1"]},
                "scraper": {"title": {"selector": "h1", "values": {"text": "text"}}},
            },
        ),
    ],
)
async def test_what_json_can_express_still_validates_strictly(
    client: httpx.AsyncClient, proc: str, processor: dict[str, Any]
) -> None:
    resp = await client.post(f"/processors/{proc}/runs/r/config", json={"Processor": processor})
    assert resp.status_code == 200, resp.text
    assert "Warnings" not in resp.json()


# -- AddData --------------------------------------------------------------------------


async def test_unknown_chunk_fields_are_reported_in_the_answer(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await configure(client, "noop", "r", num_chunks=2)
    chunk = {"ChunkID": "a", "RawData": {"Foo": 1}, "Foo": 1, "FilesystemReference": {"Bar": 2}}
    with caplog.at_level(logging.WARNING):
        resp = await add(client, "noop", "r", chunk)
    assert resp.status_code == 200, resp.text
    # RawData's own keys are data, never the wire's to judge.
    assert resp.json() == {
        "Accepted": 1,
        "Duplicates": 0,
        "Warnings": [
            "unknown field Foo ignored",
            "unknown field FilesystemReference.Bar ignored",
        ],
    }
    assert any("FilesystemReference.Bar" in r.getMessage() for r in caplog.records)
    assert AddDataResult.model_validate(resp.json()).Warnings == resp.json()["Warnings"]
    # Every answer says it; the log says it once per run, not once per request.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        resp = await add(client, "noop", "r", {**chunk, "ChunkID": "b"})
    assert resp.json()["Warnings"] == [
        "unknown field Foo ignored",
        "unknown field FilesystemReference.Bar ignored",
    ]
    assert not [r for r in caplog.records if "FilesystemReference.Bar" in r.getMessage()]


async def test_unknown_fields_in_a_batch_are_counted(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=3)
    batch = [{"ChunkID": "a", "Foo": 1}, {"ChunkID": "b", "Foo": 2}, {"ChunkID": "c", "Baz": 3}]
    resp = await add(client, "noop", "r", batch)
    assert resp.status_code == 200, resp.text
    assert resp.json()["Accepted"] == 3
    assert resp.json()["Warnings"] == [
        "unknown field Foo (in 2 chunks) ignored",
        "unknown field Baz ignored",
    ]


async def test_unknown_fields_in_a_batch_decoded_off_the_loop_are_reported(
    client: httpx.AsyncClient, strict_client: httpx.AsyncClient
) -> None:
    """A body past `DECODE_OFF_LOOP_BYTES` is decoded item by item on a thread: its
    unknown fields are reported, and refused under --strict-config, all the same."""
    n = 20_000
    batch = [{"ChunkID": f"c{i}", "RawData": "x" * 20} for i in range(n)]
    batch[7]["Foo"] = 1
    batch[n - 1]["Foo"] = 2
    assert len(json.dumps(batch)) > DECODE_OFF_LOOP_BYTES
    await configure(client, "noop", "big", num_chunks=n)
    resp = await add(client, "noop", "big", batch)
    assert resp.status_code == 200, resp.text
    assert resp.json()["Accepted"] == n
    assert resp.json()["Warnings"] == ["unknown field Foo (in 2 chunks) ignored"]
    await configure(strict_client, "noop", "big", num_chunks=n)
    resp = await add(strict_client, "noop", "big", batch)
    assert resp.status_code == 400, resp.text
    assert "Foo" in resp.json()["value"]


async def test_a_clean_chunk_has_no_warnings(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=1)
    chunk = {
        "ChunkID": "a",
        "Format": "RAW",
        "Type": "INPUT",
        "State": "WAITING",
        "RawData": {"anything": {"nested": 1}},
        "FilesystemReference": {"Driver": "", "Location": ""},
        "AssociatedChunkID": "a-out",
    }
    resp = await add(client, "noop", "r", chunk)
    assert resp.json() == {"Accepted": 1, "Duplicates": 0}


async def test_a_wrong_type_beside_an_unknown_field_is_still_a_400(
    client: httpx.AsyncClient,
) -> None:
    await configure(client, "noop", "r", num_chunks=1)
    resp = await add(client, "noop", "r", {"ChunkID": 5, "Foo": 1})
    assert resp.status_code == 400, resp.text
    assert (await client.get(f"{DATA}")).json()["In"] == []


async def test_unknown_chunk_fields_are_a_400_under_strict_config(
    strict_client: httpx.AsyncClient,
) -> None:
    await configure(strict_client, "noop", "r", num_chunks=1)
    resp = await add(strict_client, "noop", "r", [{"ChunkID": "a"}, {"ChunkID": "b", "Foo": 1}])
    assert resp.status_code == 400, resp.text
    assert "Foo" in resp.json()["value"]
    assert (await strict_client.get(DATA)).json()["In"] == []
    resp = await add(strict_client, "noop", "r", {"ChunkID": "a"})
    assert resp.json() == {"Accepted": 1, "Duplicates": 0}


# -- the contract -------------------------------------------------------------------


async def test_warnings_are_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    for model in ("Run", "AddDataResult"):
        assert "Warnings" in schemas[model]["properties"], model


def test_the_client_models_read_warnings() -> None:
    run = Run.model_validate(
        {
            "RunID": "r",
            "Configuration": {},
            "CurrentState": "CONFIGURED",
            "Warnings": ["unknown field X ignored"],
        }
    )
    assert run.Warnings == ["unknown field X ignored"]
    assert "Warnings" not in Run.model_validate({**run.model_dump(), "Warnings": None}).model_dump()


@pytest.mark.parametrize(
    "body",
    [
        b'{"ChunkID": "a", "Foo": 1e400}',
        b'{"ChunkID": "a", "Foo": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
async def test_an_unknown_fields_bad_value_is_a_400_not_a_500(
    client: httpx.AsyncClient, body: bytes
) -> None:
    """The typed decoders skip an unknown field's value; looking at it must not crash."""
    await configure(client, "noop", "r", num_chunks=1)
    resp = await client.post(DATA, content=body)
    assert resp.status_code == 400, resp.text
