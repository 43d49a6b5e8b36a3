"""RAM holds what is active: once a run has finished (durable journal), its chunks are
let go from memory and every read of them is served from the journal: GetData whole and
paged, the one-chunk reads, a resend's check, retry, and a restart's recovery."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import Context, Executor, Input, Processor, ProcessorConfig, Settings

pytestmark = pytest.mark.anyio

RUN = run_path("picky", "r")


class Picky(Processor[ProcessorConfig]):
    """Fails the chunks whose RawData says `{"fail": true}` while `failing` is set."""

    id = "picky"
    name = "Picky (test)"
    Config = ProcessorConfig
    failing = True

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        if Picky.failing and isinstance(data.raw_data, dict) and data.raw_data.get("fail"):
            raise RuntimeError("picky: not this one")
        return data.raw_data


def items(n: int) -> list[dict[str, Any]]:
    """Chunks c0..c{n-1}; every third one fails."""
    return [{"ChunkID": f"c{i}", "RawData": {"i": i, "fail": i % 3 == 1}} for i in range(n)]


async def finished_and_stored(ex: Executor, client: httpx.AsyncClient, n: int) -> None:
    """Run `r` of picky over `items(n)`, wait until it finished and its chunks left RAM."""
    Picky.failing = True
    if "picky" not in ex.registry:
        ex.registry.register(Picky)
    await configure(client, "picky", "r", num_chunks=n)
    assert (await add(client, "picky", "r", items(n))).is_success
    assert (await wait_run_done(client, "picky", "r"))["CurrentState"] == "ERRORED"
    run = ex.runs.get("picky", "r")
    await wait_for(lambda: run.stored, what="the finished run's chunks to leave memory")
    assert not run.chunks
    assert not run.outputs
    assert not run.order


async def test_a_finished_run_s_chunks_leave_memory_and_are_read_from_the_journal(
    settings: Settings,
) -> None:
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await finished_and_stored(ex, client, 7)
        body = (await client.get(RUN + "/data")).json()
        assert [d["ChunkID"] for d in body["In"]] == [f"c{i}" for i in range(7)]
        assert [d["ChunkID"] for d in body["Out"]] == [f"c{i}-out" for i in range(7)]
        assert [d["State"] for d in body["Out"]] == [
            "FAILED" if i % 3 == 1 else "SUCCEEDED" for i in range(7)
        ]
        assert body["Out"][0]["RawData"] == {"i": 0, "fail": False}
        assert "picky: not this one" in body["Out"][1]["Error"]
        # Paged, filtered, resumed: the same pages as from memory, Link header included.
        page = await client.get(RUN + "/data?state=SUCCEEDED&limit=2")
        assert [d["ChunkID"] for d in page.json()["In"]] == ["c0", "c2"]
        assert "after=c2" in page.headers["Link"]
        page = await client.get(RUN + "/data?state=SUCCEEDED&limit=2&after=c2")
        assert [d["ChunkID"] for d in page.json()["In"]] == ["c3", "c5"]
        page = await client.get(RUN + "/data?limit=3&after=c3")
        assert [d["ChunkID"] for d in page.json()["In"]] == ["c4", "c5", "c6"]
        assert "Link" not in page.headers
        missing = await client.get(RUN + "/data?after=nope")
        assert missing.status_code == 404
        assert "'nope'" in missing.json()["value"]
        # One-chunk reads.
        one = await client.get(RUN + "/data/input/c4")
        assert one.status_code == 200
        assert one.json()["RawData"] == {"i": 4, "fail": True}
        out = await client.get(RUN + "/data/output/c4-out")
        assert out.status_code == 200
        assert out.json()["State"] == "FAILED"
        assert (await client.get(RUN + "/data/input/nope")).status_code == 404
        assert (await client.get(RUN + "/data/output/nope")).status_code == 404
        # The header stays: counts and state.
        run = (await client.get(RUN)).json()
        assert run["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 5, "FAILED": 2}


async def test_resends_to_a_stored_run_are_checked_against_the_journal(
    settings: Settings,
) -> None:
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await finished_and_stored(ex, client, 4)
        same = await add(client, "picky", "r", items(4)[2])
        assert same.status_code == 200, same.text
        assert same.json()["Duplicates"] == 1
        assert same.json()["Accepted"] == 0
        batch = await add(client, "picky", "r", items(4))
        assert batch.status_code == 200
        assert batch.json()["Duplicates"] == 4
        other = await add(client, "picky", "r", {"ChunkID": "c2", "RawData": {"i": 99}})
        assert other.status_code == 409
        assert "different content" in other.text
        new = await add(client, "picky", "r", {"ChunkID": "c9"})
        assert new.status_code == 409
        assert "takes no more chunks" in new.text


async def test_retry_takes_a_stored_run_s_failures_back_from_the_journal(
    settings: Settings,
) -> None:
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await finished_and_stored(ex, client, 5)
        Picky.failing = False
        resp = await client.post(RUN + "/retry")
        assert resp.status_code == 200, resp.text
        assert resp.json()["Chunks"] == 2
        assert (await wait_run_done(client, "picky", "r"))["CurrentState"] == "SUCCEEDED"
        run = ex.runs.get("picky", "r")
        await wait_for(lambda: run.stored, what="the run to be stored again")
        body = (await client.get(RUN + "/data")).json()
        assert [d["State"] for d in body["Out"]] == ["SUCCEEDED"] * 5
        assert [len(d["Attempts"]) for d in body["In"]] == [1, 2, 1, 1, 2]


async def test_recovery_leaves_finished_runs_chunks_in_the_journal(settings: Settings) -> None:
    async with Executor(settings) as ex, asgi_client(ex) as client:
        await finished_and_stored(ex, client, 4)
        before = (await client.get(RUN + "/data")).json()
    later = Executor(settings)
    later.registry.register(Picky)
    async with later, asgi_client(later) as client:
        await later.recovered()
        run = later.runs.get("picky", "r")
        assert run.stored
        assert not run.chunks
        assert (await client.get(RUN)).json()["ChunkCounts"]["FAILED"] == 1
        assert (await client.get(RUN + "/data")).json() == before
        assert (await client.get(RUN)).json()["CurrentState"] == "ERRORED"


async def test_an_ephemeral_executor_keeps_finished_chunks_in_memory(settings: Settings) -> None:
    ephemeral = dataclasses.replace(settings, ephemeral=True)
    async with Executor(ephemeral) as ex, asgi_client(ex) as client:
        ex.registry.register(Picky)
        await configure(client, "picky", "r", num_chunks=2)
        assert (await add(client, "picky", "r", items(2))).is_success
        await wait_run_done(client, "picky", "r")
        await ex.commit()
        assert not ex.runs.get("picky", "r").stored
        assert len(ex.runs.get("picky", "r").chunks) == 2
