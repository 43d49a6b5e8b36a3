"""Compatibility with the original Go executor and client, on their real captured bodies.

`tests/data/wire/` holds requests and responses recorded from the original (copies, so the
tests run on any clone). A Go client must be able to send us the requests unchanged, and
read our answers with the decoder it already has: the same field names and nesting, with
extension fields only added, never renamed or removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, configure, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import DataChunkState, DataFormat, DataType, State
from wiz_executor.api import Configuration, Data, DataSpec, Processor, Run

# Marked at collection (not only by conftest's late hook) so parametrized async tests keep
# their parameters under anyio's plugin.
pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[1]
WIRE = Path(__file__).resolve().parent / "data" / "wire"

# Fields an old client does not know and ignores; everything else must match its capture.
EXTENSIONS = {
    "ChunkCounts",
    "InputClosed",
    "Error",
    "DeliveryError",
    "Progress",
    "Attempts",
    # a run's timing and rates (issue #13)
    "Started",
    "Ended",
    "DurationSeconds",
    "ChunksPerSecond",
    "EtaSeconds",
    "Waiting",
    "FreeRoom",
    "RunningSince",
    "Slow",
}


def captured(name: str) -> Any:
    return json.loads((WIRE / name).read_text())


def captured_bytes(name: str) -> bytes:
    return (WIRE / name).read_bytes().strip()


def without_extensions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_extensions(v) for k, v in value.items() if k not in EXTENSIONS}
    if isinstance(value, list):
        return [without_extensions(v) for v in value]
    return value


def assert_same_shape(ours: Any, theirs: Any, where: str = "$") -> None:
    """Same field names and nesting as the capture; only known extensions added."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{where}: expected an object, got {ours!r}"
        missing = set(theirs) - set(ours)
        extra = set(ours) - set(theirs) - EXTENSIONS
        assert not missing, f"{where}: fields missing from our answer: {missing}"
        assert not extra, f"{where}: fields the original never sent: {extra}"
        for key, value in theirs.items():
            if value is not None and key != "RawData":
                assert_same_shape(ours[key], value, f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{where}: expected a list, got {ours!r}"
        assert ours, f"{where}: expected a non-empty list"
        for item in ours:
            assert_same_shape(item, theirs[0], f"{where}[]")
    else:
        assert type(ours) is type(theirs), f"{where}: {ours!r} is not like {theirs!r}"


def test_captures_are_present() -> None:
    assert len(list(WIRE.glob("*.json"))) >= 11


def test_captures_are_read_from_inside_the_repository() -> None:
    """A user's clone has no shared folder beside it: the tests read their copies."""
    assert WIRE.resolve().is_relative_to(REPO), WIRE
    assert (WIRE / "manager-pipeline.md").is_file()


def test_no_source_or_test_refers_to_a_path_outside_the_repository() -> None:
    outside = ("/" + "work/", "shared/" + "spec")  # spelled in parts, so this file passes
    offenders = [
        f"{path.relative_to(REPO)}: {needle}"
        for folder in ("src", "tests", "benchmarks")
        for path in sorted((REPO / folder).rglob("*.py"))
        for needle in outside
        if needle in path.read_text(encoding="utf-8")
    ]
    assert not offenders


async def test_get_processors_match_the_capture(client: httpx.AsyncClient) -> None:
    resp = await client.get("/processors")
    assert resp.status_code == 200
    # The original served only noop; this executor serves more built-ins, each shaped alike.
    ours, theirs = resp.json(), captured("GET_processors.json")
    assert_same_shape(ours, theirs)
    assert [p for p in ours if p["ProcID"] == "noop"] == theirs
    resp = await client.get("/processors/noop")
    assert resp.status_code == 200
    assert resp.json() == captured("GET_processor_noop.json")


async def test_replay_of_the_captured_session(client: httpx.AsyncClient) -> None:
    """Configure r1 and r2 with the captured body, run r2's three chunks with the Go
    client's bodies, and compare every GET answer with what the original answered."""
    config_body = captured_bytes("POST_config_request_body.json")
    for run in ("r1", "r2"):
        resp = await client.post(f"{run_path('noop', run)}/config", content=config_body)
        assert resp.status_code == 200, resp.text
    template = captured("POST_data_request_body_statewaiting.json")
    for i in range(3):
        body = {
            **template,
            "ChunkID": f"in-r2-{i}",
            "AssociatedChunkID": f"out-r2-{i}",
            "RawData": {"i": i, "msg": "hello"},
        }
        resp = await add(client, "noop", "r2", body)
        assert resp.status_code == 200, resp.text
    await wait_run_done(client, "noop", "r2")

    config = (await client.get(f"{run_path('noop', 'r2')}/config")).json()
    assert config == captured("GET_config_r2.json")

    run = (await client.get(run_path("noop", "r2"))).json()
    assert without_extensions(run) == captured("GET_run_r2.json")
    assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 3, "FAILED": 0}

    runs = (await client.get("/processors/noop/runs")).json()
    by_id = sorted(without_extensions(runs), key=lambda r: r["RunID"])
    assert by_id == captured("GET_runs_list.json")

    data = (await client.get(f"{run_path('noop', 'r2')}/data")).json()
    theirs = captured("GET_data_r2.json")
    assert_same_shape(data, theirs)

    def by_chunk(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(items, key=lambda d: d["ChunkID"])

    assert by_chunk(without_extensions(data["In"])) == by_chunk(theirs["In"])
    assert by_chunk(data["Out"]) == by_chunk(theirs["Out"])
    # Ours keep arrival order (the original's came in Go map order).
    assert [d["ChunkID"] for d in data["In"]] == ["in-r2-0", "in-r2-1", "in-r2-2"]


async def test_go_client_unset_state_is_accepted(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r1", num_chunks=2)
    body = captured_bytes("POST_data_request_body_stateunset.json")
    assert b'"State":"DataChunkState(0)"' in body
    resp = await client.post(f"{run_path('noop', 'r1')}/data", content=body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"Accepted": 1, "Duplicates": 0}
    # Go's standard encoder writes the unset State as 0.
    as_zero = json.loads(body) | {"ChunkID": "in-r1-1", "AssociatedChunkID": "", "State": 0}
    resp = await add(client, "noop", "r1", as_zero)
    assert resp.status_code == 200, resp.text
    run = await wait_run_done(client, "noop", "r1")
    assert run["CurrentState"] == "SUCCEEDED"
    out = (await client.get(f"{run_path('noop', 'r1')}/data/output/out-r1-0")).json()
    assert out["RawData"] == {"i": 0, "msg": "hello"}
    assert out["State"] == "SUCCEEDED"


ENUM_SPELLINGS: list[tuple[str, Any, str]] = [
    ("Format", "RAW", "RAW"),
    ("Format", 1, "RAW"),
    ("Format", 0, "RAW"),
    ("Format", "DataFormat(0)", "RAW"),
    ("Format", "FILESYSTEM_REF", "FILESYSTEM_REF"),
    ("Format", 2, "FILESYSTEM_REF"),
    ("State", "DataChunkState(0)", "SUCCEEDED"),
    ("State", 0, "SUCCEEDED"),
    ("State", 1, "SUCCEEDED"),
    ("State", "WAITING", "SUCCEEDED"),
    ("State", "FAILED", "SUCCEEDED"),
    ("State", 4, "SUCCEEDED"),
    ("Type", "INPUT", "INPUT"),
    ("Type", 1, "INPUT"),
    ("Type", "OUTPUT", "INPUT"),
    ("Type", 2, "INPUT"),
    ("Type", "DataType(0)", "INPUT"),
]


@pytest.mark.parametrize(("field", "sent", "held"), ENUM_SPELLINGS)
async def test_enum_names_and_codes_are_read(
    client: httpx.AsyncClient, field: str, sent: Any, held: str
) -> None:
    """Names and integer codes are both read; State and Type are the executor's own."""
    await configure(client, "noop", "e", num_chunks=1)
    body: dict[str, Any] = {"ChunkID": "c", "RawData": {"x": 1}, field: sent}
    if field == "Format" and held == "FILESYSTEM_REF":
        body["FilesystemReference"] = {"Driver": "local", "Location": "in/c.bin"}
    resp = await add(client, "noop", "e", body)
    assert resp.status_code == 200, resp.text
    await wait_run_done(client, "noop", "e")
    chunk = (await client.get(f"{run_path('noop', 'e')}/data/input/c")).json()
    expected = {"Format": "RAW", "State": "SUCCEEDED", "Type": "INPUT"}
    expected[field] = held
    assert {k: chunk[k] for k in expected} == expected


@pytest.mark.parametrize("bad", [3, -1, "raw", "DataFormat(1)", True, False, 1.0, None, [1]])
async def test_unknown_format_is_a_400(client: httpx.AsyncClient, bad: Any) -> None:
    await configure(client, "noop", "f", num_chunks=1)
    resp = await add(client, "noop", "f", {"ChunkID": "c", "Format": bad})
    assert resp.status_code == 400, resp.text
    assert "Format" in resp.json()["value"]
    assert (await client.get(f"{run_path('noop', 'f')}/data")).json() == {"In": [], "Out": []}


async def test_midrun_answers_have_the_captured_shape(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "m", num_chunks=1)
    # The chunk's RawData overrides noop's SleepMs: it stays RUNNING until deleted.
    chunk = {"ChunkID": "c1", "AssociatedChunkID": "o1", "RawData": {"a": 1, "SleepMs": 600_000}}
    resp = await add(client, "noop", "m", chunk)
    assert resp.status_code == 200

    async def running() -> bool:
        run = (await client.get(run_path("noop", "m"))).json()
        return bool(run["ChunkCounts"]["RUNNING"] == 1)

    await wait_for(running)
    run = (await client.get(run_path("noop", "m"))).json()
    assert_same_shape(run, captured("GET_run_midrun.json"))
    assert without_extensions(run) == captured("GET_run_midrun.json")
    data = (await client.get(f"{run_path('noop', 'm')}/data")).json()
    assert_same_shape(data, captured("GET_data_midrun.json"))
    assert data["In"][0]["State"] == "RUNNING"
    assert data["Out"][0]["State"] == "RUNNING"
    assert data["Out"][0]["RawData"] is None
    assert (await client.delete(run_path("noop", "m"))).status_code == 200


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("GET_processors.json", list[Processor]),
        ("GET_processor_noop.json", Processor),
        ("GET_run_midrun.json", Run),
        ("GET_run_r2.json", Run),
        ("GET_runs_list.json", list[Run]),
        ("GET_config_r2.json", Configuration),
        ("POST_config_request_body.json", Configuration),
        ("GET_data_midrun.json", DataSpec),
        ("GET_data_r2.json", DataSpec),
        ("POST_data_request_body_stateunset.json", Data),
        ("POST_data_request_body_statewaiting.json", Data),
    ],
)
def test_wire_models_read_every_capture(name: str, model: Any) -> None:
    """The pydantic models (used by the Python client) read every captured body."""
    from pydantic import TypeAdapter

    value = TypeAdapter(model).validate_json(captured_bytes(name))
    assert value


def test_wire_models_read_integer_codes() -> None:
    """What a Go peer may write with integer enums reads as the same names."""
    run = Run.model_validate({**captured("GET_run_r2.json"), "CurrentState": 4})
    assert run.CurrentState is State.SUCCEEDED
    spec = captured("GET_data_midrun.json")
    spec["In"][0] |= {"Format": 1, "Type": 1, "State": 2}
    spec["Out"][0] |= {"Format": 0, "Type": 2, "State": 1}
    parsed = DataSpec.model_validate(spec)
    assert parsed.In[0].Format is DataFormat.RAW
    assert parsed.In[0].State is DataChunkState.RUNNING
    assert parsed.Out[0].Format is DataFormat.RAW
    assert parsed.Out[0].State is DataChunkState.WAITING
    assert parsed.Out[0].Type is DataType.OUTPUT


def test_wire_models_write_the_captured_shapes() -> None:
    """Unset extension fields are left out, so the models' output equals the capture."""
    for name, model in [
        ("GET_config_r2.json", Configuration),
        ("GET_run_r2.json", Run),
        ("GET_data_r2.json", DataSpec),
    ]:
        theirs = captured(name)
        assert model.model_validate(theirs).model_dump(mode="json") == theirs, name
