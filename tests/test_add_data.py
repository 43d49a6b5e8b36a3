"""AddData: one chunk or a batch, idempotent per ChunkID, all or nothing per request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import Gate, add, asgi_client, chunk_counts, configure, gate_processor, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import (
    Executor,
    Settings,
)

pytestmark = pytest.mark.anyio

DATA = "/processors/noop/runs/r/data"


async def held_ids(client: httpx.AsyncClient, run: str = "r") -> list[str]:
    data = (await client.get(f"{run_path('noop', run)}/data")).json()
    return [c["ChunkID"] for c in data["In"]]


async def test_one_chunk_is_accepted_and_processed(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=1)
    resp = await add(client, "noop", "r", {"ChunkID": "c", "RawData": {"x": [1, "two", None]}})
    assert resp.status_code == 200
    assert resp.json() == {"Accepted": 1, "Duplicates": 0}
    await wait_run_done(client, "noop", "r")
    inp = (await client.get(f"{DATA}/input/c")).json()
    out = (await client.get(f"{DATA}/output/c-out")).json()
    (attempt,) = inp.pop("Attempts")  # its history: one run, that ended SUCCEEDED
    assert attempt["Attempt"] == 1
    assert attempt["Outcome"] == "SUCCEEDED"
    assert attempt["Error"] is None
    assert attempt["Start"] <= attempt["End"]
    assert attempt["PID"] > 0
    assert attempt["Host"]
    assert attempt["Worker"]
    assert inp == {
        "ChunkID": "c",
        "Format": "RAW",
        "Type": "INPUT",
        "State": "SUCCEEDED",
        "RawData": {"x": [1, "two", None]},
        "FilesystemReference": {"Driver": "", "Location": ""},
        "AssociatedChunkID": "c-out",
    }
    assert out == {
        "ChunkID": "c-out",
        "Format": "RAW",
        "Type": "OUTPUT",
        "State": "SUCCEEDED",
        "RawData": {"x": [1, "two", None]},
        "FilesystemReference": {"Driver": "", "Location": ""},
        "AssociatedChunkID": "c",
    }


async def test_first_chunk_moves_the_run_to_running(executor: Executor) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "g", num_chunks=2)
        assert (await client.get(run_path("gate", "g"))).json()["CurrentState"] == "CONFIGURED"
        assert (await add(client, "gate", "g", {"ChunkID": "a"})).status_code == 200
        assert (await client.get(run_path("gate", "g"))).json()["CurrentState"] == "RUNNING"
        assert (await add(client, "gate", "g", {"ChunkID": "b"})).status_code == 200
        gate.release_all()
        assert (await wait_run_done(client, "gate", "g"))["CurrentState"] == "SUCCEEDED"


async def test_resending_the_same_chunk_is_a_no_op(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=2)
    chunk = {"ChunkID": "c", "AssociatedChunkID": "o", "RawData": {"v": 1}}
    assert (await add(client, "noop", "r", chunk)).json() == {"Accepted": 1, "Duplicates": 0}
    # The same content in another spelling: State/Type ignored, Format as a code.
    again = chunk | {"State": "DataChunkState(0)", "Type": 1, "Format": 1}
    resp = await add(client, "noop", "r", again)
    assert resp.status_code == 200
    assert resp.json() == {"Accepted": 0, "Duplicates": 1}
    # Without AssociatedChunkID the executor would name it: still the same chunk.
    resp = await add(client, "noop", "r", {"ChunkID": "c", "RawData": {"v": 1}})
    assert resp.json() == {"Accepted": 0, "Duplicates": 1}
    await wait_for(lambda: executor_done(client, "c"))
    # Even after it has finished, a retry is a no-op, not a second run of the chunk.
    assert (await add(client, "noop", "r", chunk)).json() == {"Accepted": 0, "Duplicates": 1}
    assert await held_ids(client) == ["c"]
    assert (await chunk_counts(client, "noop", "r"))["SUCCEEDED"] == 1


async def executor_done(client: httpx.AsyncClient, chunk_id: str) -> bool:
    chunk = (await client.get(f"{DATA}/input/{chunk_id}")).json()
    return bool(chunk["State"] == "SUCCEEDED")


@pytest.mark.parametrize(
    "changed",
    [
        {"RawData": {"v": 2}},
        {"RawData": None},
        {"AssociatedChunkID": "other"},
        {"Format": "FILESYSTEM_REF"},
        {"FilesystemReference": {"Driver": "local", "Location": "x"}},
    ],
)
async def test_same_chunk_id_with_other_content_is_a_409(
    client: httpx.AsyncClient, changed: dict[str, Any]
) -> None:
    await configure(client, "noop", "r", num_chunks=2)
    chunk = {"ChunkID": "c", "AssociatedChunkID": "o", "RawData": {"v": 1}}
    assert (await add(client, "noop", "r", chunk)).status_code == 200
    resp = await add(client, "noop", "r", chunk | changed)
    assert resp.status_code == 409, resp.text
    assert "different content" in resp.json()["value"]
    assert (await client.get(f"{DATA}/input/c")).json()["RawData"] == {"v": 1}


async def test_output_ids_are_unique_within_a_run(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r")
    assert (await add(client, "noop", "r", {"ChunkID": "a", "AssociatedChunkID": "o"})).is_success
    resp = await add(client, "noop", "r", {"ChunkID": "b", "AssociatedChunkID": "o"})
    assert resp.status_code == 409
    assert "AssociatedChunkID" in resp.json()["value"]
    # A made-up output ID steps around the IDs already taken.
    taker = {"ChunkID": "x", "AssociatedChunkID": "y-out"}
    assert (await add(client, "noop", "r", taker)).is_success
    assert (await add(client, "noop", "r", {"ChunkID": "y"})).is_success
    assert (await client.get(f"{DATA}/input/y")).json()["AssociatedChunkID"] == "y-out-2"
    assert (await client.get(f"{DATA}/output/y-out-2")).json()["AssociatedChunkID"] == "y"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"", "JSON"),
        (b"{", "JSON"),
        (b"null", "chunk"),
        (b"42", "chunk"),
        (b'{"RawData": 1}', "ChunkID"),
        (b'{"ChunkID": ""}', "ChunkID"),
        (b'{"ChunkID": 7}', "ChunkID"),
        (b'{"ChunkID": "c", "AssociatedChunkID": 1}', "AssociatedChunkID"),
        (b'{"ChunkID": "c", "FilesystemReference": {"Driver": 1}}', "Driver"),
        (b'{"ChunkID": "c", "Format": "DISK"}', "Format"),
        (b'[{"ChunkID": "a"}, {"ChunkID": "b", "Format": 9}]', "item 1"),
        (b'[{"ChunkID": "a"}, 5]', "chunk"),
    ],
)
async def test_bad_bodies_are_a_400_and_accept_nothing(
    client: httpx.AsyncClient, body: bytes, why: str
) -> None:
    await configure(client, "noop", "r")
    resp = await client.post(DATA, content=body)
    assert resp.status_code == 400, resp.text
    assert why in resp.json()["value"]
    assert await held_ids(client) == []
    assert (await client.get(run_path("noop", "r"))).json()["CurrentState"] == "CONFIGURED"


async def test_unknown_processor_or_run_is_a_404(client: httpx.AsyncClient) -> None:
    resp = await client.post("/processors/nope/runs/r/data", json={"ChunkID": "c"})
    assert resp.status_code == 404
    assert "nope" in resp.json()["value"]
    resp = await client.post(DATA, json={"ChunkID": "c"})
    assert resp.status_code == 404
    assert resp.json()["value"].startswith("no run 'r' of processor 'noop'")


async def test_unknown_chunks_are_404s(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r")
    assert (await add(client, "noop", "r", {"ChunkID": "c", "AssociatedChunkID": "o"})).is_success
    for path, what in [("input/o", "input chunk 'o'"), ("output/c", "output chunk 'c'")]:
        resp = await client.get(f"{DATA}/{path}")
        assert resp.status_code == 404
        assert what in resp.json()["value"]
    assert (await client.get("/processors/noop/runs/nope/data/input/c")).status_code == 404


# -- batches ---------------------------------------------------------------------------


async def test_a_batch_is_accepted_whole(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=5)
    assert (await add(client, "noop", "r", {"ChunkID": "c0", "RawData": 0})).is_success
    batch = [{"ChunkID": f"c{i}", "RawData": i} for i in range(5)]
    batch.append({"ChunkID": "c4", "RawData": 4})  # the same chunk twice in one batch
    resp = await add(client, "noop", "r", batch)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"Accepted": 4, "Duplicates": 2}
    await wait_run_done(client, "noop", "r")
    data = (await client.get(DATA)).json()
    assert [c["RawData"] for c in data["Out"]] == [0, 1, 2, 3, 4]


async def test_an_empty_batch_changes_nothing(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=1)
    resp = await client.post(DATA, content=b"[]")
    assert resp.status_code == 200
    assert resp.json() == {"Accepted": 0, "Duplicates": 0}
    assert (await client.get(run_path("noop", "r"))).json()["CurrentState"] == "CONFIGURED"


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"ChunkID": "held", "RawData": "changed"}, "different content"),
        ({"ChunkID": "b0", "RawData": "twice, differently"}, "different content"),
        ({"ChunkID": "b9", "AssociatedChunkID": "held-out"}, "AssociatedChunkID"),
    ],
)
async def test_a_conflict_in_the_middle_of_a_batch_accepts_none(
    client: httpx.AsyncClient, bad: dict[str, Any], why: str
) -> None:
    await configure(client, "noop", "r")
    assert (await add(client, "noop", "r", {"ChunkID": "held", "RawData": "v"})).is_success
    batch = [{"ChunkID": "b0", "RawData": 0}, {"ChunkID": "b1"}, bad, {"ChunkID": "b2"}]
    resp = await add(client, "noop", "r", batch)
    assert resp.status_code == 409, resp.text
    assert why in resp.json()["value"]
    assert await held_ids(client) == ["held"]


async def test_a_batch_past_num_chunks_accepts_none(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=3)
    assert (await add(client, "noop", "r", {"ChunkID": "a"})).is_success
    resp = await add(client, "noop", "r", [{"ChunkID": "b"}, {"ChunkID": "c"}, {"ChunkID": "d"}])
    assert resp.status_code == 409
    assert "expects 3 chunks" in resp.json()["value"]
    assert await held_ids(client) == ["a"]
    # Exactly up to the limit is fine, and a resend of held chunks does not count.
    resp = await add(client, "noop", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}, {"ChunkID": "c"}])
    assert resp.json() == {"Accepted": 2, "Duplicates": 1}
    await wait_run_done(client, "noop", "r")


async def test_a_batch_to_a_closed_run_accepts_none(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r")
    assert (await add(client, "noop", "r", {"ChunkID": "a"})).is_success
    assert (await client.post(f"{run_path('noop', 'r')}/end-of-input")).is_success
    resp = await add(client, "noop", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}])
    assert resp.status_code == 409
    # (closed, or already finished: "a" may have ended while end-of-input was committed)
    assert any(why in resp.json()["value"] for why in ("input is closed", "it has SUCCEEDED"))
    assert await held_ids(client) == ["a"]
    # Resending only what it holds is still a harmless no-op.
    assert (await add(client, "noop", "r", [{"ChunkID": "a"}])).json() == {
        "Accepted": 0,
        "Duplicates": 1,
    }


async def test_a_finished_run_takes_no_new_chunks(client: httpx.AsyncClient) -> None:
    await configure(client, "noop", "r", num_chunks=1)
    assert (await add(client, "noop", "r", {"ChunkID": "a"})).is_success
    await wait_run_done(client, "noop", "r")
    resp = await add(client, "noop", "r", {"ChunkID": "late"})
    assert resp.status_code == 409
    assert "SUCCEEDED" in resp.json()["value"]


# -- body size -------------------------------------------------------------------------


@pytest.fixture
async def small_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        Executor(Settings(data_dir=tmp_path, max_body_bytes=1000)) as executor,
        asgi_client(executor) as client,
    ):
        yield client


async def test_an_oversized_body_is_a_413(small_client: httpx.AsyncClient) -> None:
    await configure(small_client, "noop", "r")
    resp = await add(small_client, "noop", "r", {"ChunkID": "c", "RawData": "x" * 1000})
    assert resp.status_code == 413
    assert resp.json() == {"value": "request body is larger than the limit of 1000 bytes"}
    assert await held_ids(small_client) == []
    assert (await add(small_client, "noop", "r", {"ChunkID": "c", "RawData": "x" * 900})).is_success


async def test_an_oversized_streamed_body_is_a_413(small_client: httpx.AsyncClient) -> None:
    """A body sent in parts (no Content-Length) is refused once it passes the limit."""
    await configure(small_client, "noop", "r")

    async def parts() -> AsyncIterator[bytes]:
        yield b'{"ChunkID": "c", "RawData": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}'

    resp = await small_client.post(DATA, content=parts())
    assert resp.status_code == 413
    assert await held_ids(small_client) == []


@pytest.mark.parametrize("chunk_id", ["dir/file.txt", "a b", "ü", "x%y", "a/../b", "trailing/"])
async def test_any_chunk_id_can_be_read_back(client: httpx.AsyncClient, chunk_id: str) -> None:
    """Chunk IDs are often file paths: the single-chunk reads take any ID, percent-encoded."""
    from urllib.parse import quote

    await configure(client, "noop", "r", num_chunks=1)
    assert (await add(client, "noop", "r", {"ChunkID": chunk_id, "RawData": 1})).is_success
    await wait_run_done(client, "noop", "r")
    inp = await client.get(f"{DATA}/input/{quote(chunk_id, safe='')}")
    assert inp.status_code == 200, inp.text
    assert inp.json()["ChunkID"] == chunk_id
    out = await client.get(f"{DATA}/output/{quote(chunk_id + '-out', safe='')}")
    assert out.status_code == 200, out.text
    assert out.json()["AssociatedChunkID"] == chunk_id


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
