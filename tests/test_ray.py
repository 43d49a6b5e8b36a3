"""The RAY work model on the session's two-node Ray cluster (both nodes on 127.0.0.1):
limits, where chunks run, node loss, custom resources, remote progress and waiting.

The processor contract tests (test_failures) also run for RAY; these are what only
RAY has."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import (
    Context,
    DataChunkState,
    Executor,
    Input,
    Output,
    Processor,
    ProcessorConfig,
    Settings,
    WorkModel,
)
from wiz_executor.scheduling import RayModel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ray_cluster")]


class WaitsForFile(Processor[ProcessorConfig]):
    """Reports half its work done, then waits (on its Ray worker) until the file the
    chunk's RawData names exists: a test lets it finish once it saw the progress."""

    id = "waits-for-file"
    name = "waits for a file"

    def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        context.report_progress(1, 2)
        path = Path(data.raw_data)
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            threading.Event().wait(0.02)  # a remote worker polling a file
        return "done"


def chunks(n: int) -> list[dict[str, Any]]:
    return [{"ChunkID": f"c{i}", "RawData": {"i": i}} for i in range(n)]


async def inputs(client: httpx.AsyncClient, proc: str, run: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await client.get(f"{run_path(proc, run)}/data")).json()["In"]
    return data


async def assert_each_output_once(client: httpx.AsyncClient, proc: str, run: str, n: int) -> None:
    data = (await client.get(f"{run_path(proc, run)}/data")).json()
    assert sorted(o["RawData"]["i"] for o in data["Out"]) == list(range(n))
    assert {o["State"] for o in data["Out"]} == {"SUCCEEDED"}


def model(executor: Executor) -> RayModel:
    ray_model = executor.scheduler.models[WorkModel.RAY]
    assert isinstance(ray_model, RayModel)
    return ray_model


def test_every_ray_node_is_on_loopback(ray_cluster: Any) -> None:
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    assert len(nodes) >= 2
    assert {node["NodeManagerAddress"] for node in nodes} == {"127.0.0.1"}


async def test_limits_hold_and_attempts_say_where_chunks_ran(settings: Settings) -> None:
    """MaxWorkers actors at most per run; --max-workers chunks in flight at most."""
    settings = dataclasses.replace(settings, max_workers=3)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        await configure(
            client, "noop", "r", num_chunks=60, MaxWorkers=2, WorkModel="RAY", Ray={"BatchSize": 4}
        )
        body = [{"ChunkID": f"c{i}", "RawData": {"i": i, "SleepMs": 5}} for i in range(60)]
        assert (await add(client, "noop", "r", body)).is_success
        assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "SUCCEEDED"
        await assert_each_output_once(client, "noop", "r", 60)
        run = executor.runs.get("noop", "r")
        assert model(executor).actors(run)[1] == 2
        assert executor.scheduler.limiter.peak == 3  # reached, never passed
        for chunk in await inputs(client, "noop", "r"):
            (attempt,) = chunk["Attempts"]
            assert attempt["Host"] == "127.0.0.1"
            assert attempt["Node"]
            assert attempt["PID"] > 0
            assert attempt["Worker"].startswith("ray-actor-")
        metrics = (await client.get("/metrics")).text
        assert "wiz_ray_node_chunks_total{" in metrics


async def test_chunks_run_on_both_nodes(
    executor: Executor, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Three actors of 2 CPUs each fill the head (4 CPUs) and the worker node (2); each
    gets chunks (held until all six run, so no actor finishes them all first)."""
    executor.registry.register(WaitsForFile)
    release = tmp_path / "release"
    await configure(
        client,
        "waits-for-file",
        "r",
        num_chunks=6,
        MaxWorkers=3,
        WorkModel="RAY",
        Ray={"NumCPUs": 2},
    )
    body = [{"ChunkID": f"c{i}", "RawData": str(release)} for i in range(6)]
    assert (await add(client, "waits-for-file", "r", body)).is_success
    run = executor.runs.get("waits-for-file", "r")
    await wait_for(
        lambda: run.counts[DataChunkState.RUNNING] == 6, timeout=90, what="six chunks running"
    )
    release.write_text("go")
    done = await wait_run_done(client, "waits-for-file", "r")
    assert done["CurrentState"] == "SUCCEEDED"
    attempts = [c["Attempts"][0] for c in await inputs(client, "waits-for-file", "r")]
    assert len({a["Worker"] for a in attempts}) == 3
    assert len({a["Node"] for a in attempts}) == 2


async def test_a_custom_resource_pins_the_actors(client: httpx.AsyncClient) -> None:
    import ray

    (holder,) = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("gpu_like")]
    await configure(
        client,
        "noop",
        "r",
        num_chunks=20,
        MaxWorkers=2,
        WorkModel="RAY",
        Ray={"Resources": {"gpu_like": 1}, "NumCPUs": 0.5},
    )
    assert (await add(client, "noop", "r", chunks(20))).is_success
    assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "SUCCEEDED"
    assert {c["Attempts"][0]["Node"] for c in await inputs(client, "noop", "r")} == {holder}


async def test_losing_a_node_mid_run_reruns_its_chunks(
    ray_cluster: Any, executor: Executor, client: httpx.AsyncClient
) -> None:
    """The actor's node goes: its chunks wait (the run says why) and run again, as new
    attempts, on a node that joins; every output exactly once."""
    doomed = ray_cluster.add_node(num_cpus=1, resources={"spot": 1}, node_ip_address="127.0.0.1")
    await configure(
        client,
        "noop",
        "r",
        num_chunks=40,
        MaxWorkers=1,
        WorkModel="RAY",
        Ray={"Resources": {"spot": 1}, "NumCPUs": 0.5, "BatchSize": 2},
    )
    body = [{"ChunkID": f"c{i}", "RawData": {"i": i, "SleepMs": 50}} for i in range(40)]
    assert (await add(client, "noop", "r", body)).is_success
    run = executor.runs.get("noop", "r")

    await wait_for(
        lambda: run.counts[DataChunkState.SUCCEEDED] >= 4,
        timeout=60,
        what="chunks to succeed on the doomed node",
    )
    ray_cluster.remove_node(doomed)
    await wait_for(
        lambda: (
            model(executor).waiting_reason(run) is not None
            or any(c.attempts and len(c.attempts) > 1 for c in run.chunks.values())
        ),
        timeout=60,
        what="the lost node's chunks to wait",
    )
    spare = ray_cluster.add_node(num_cpus=1, resources={"spot": 1}, node_ip_address="127.0.0.1")
    try:
        done = await wait_run_done(client, "noop", "r", timeout=120)
        assert done["CurrentState"] == "SUCCEEDED"
        await assert_each_output_once(client, "noop", "r", 40)
        attempts = [a for c in await inputs(client, "noop", "r") for a in c["Attempts"]]
        lost = [a for a in attempts if a.get("Error") and "lost" in a["Error"]]
        assert lost, "a chunk of the lost node ran again"
        assert len({a["Node"] for a in attempts}) == 2
    finally:
        ray_cluster.remove_node(spare)


async def test_a_run_asking_for_what_no_node_has_waits_and_says_why(
    executor: Executor, client: httpx.AsyncClient
) -> None:
    await configure(
        client, "noop", "r", num_chunks=2, WorkModel="RAY", Ray={"Resources": {"unicorn": 1}}
    )
    assert (await add(client, "noop", "r", chunks(2))).is_success
    run = executor.runs.get("noop", "r")
    await wait_for(lambda: model(executor).waiting_reason(run) is not None, timeout=60)
    reason = executor.scheduler.waiting_reason(run)
    assert reason is not None
    assert "unicorn=1" in reason
    assert run.counts[DataChunkState.WAITING] == 2
    assert (await client.delete(run_path("noop", "r"))).status_code == 200


async def test_remote_progress_reaches_the_chunk(
    executor: Executor, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    executor.registry.register(WaitsForFile)
    release = tmp_path / "release"
    await configure(client, "waits-for-file", "r", num_chunks=1, WorkModel="RAY")
    assert await add(client, "waits-for-file", "r", {"ChunkID": "c", "RawData": str(release)})
    path = f"{run_path('waits-for-file', 'r')}/data/input/c"

    async def progress_shown() -> bool:
        return (await client.get(path)).json().get("Progress") == {"Done": 1, "Total": 2}

    await wait_for(progress_shown, timeout=60, what="the remote progress")
    release.write_text("go")
    assert (await wait_run_done(client, "waits-for-file", "r"))["CurrentState"] == "SUCCEEDED"


@pytest.mark.parametrize(
    "ray",
    [
        {"NumCPUs": -1},
        {"BatchSize": 0},
        {"Resources": {"x": "many"}},
        {"NumGPUs": "lots"},
        {"Resources": {"": 1}},
    ],
)
async def test_nonsense_ray_options_are_refused(client: httpx.AsyncClient, ray: Any) -> None:
    body = {"ExecutorConfig": {"WorkModel": "RAY", "Ray": ray}}
    resp = await client.post(f"{run_path('noop', 'r')}/config", json=body)
    assert resp.status_code == 400, resp.text


async def test_a_whole_number_written_as_a_float_is_a_batch_size(
    client: httpx.AsyncClient,
) -> None:
    """JSON has one kind of number: 110.0 is the integer 110 (the fuzz test found it)."""
    body = {"ExecutorConfig": {"WorkModel": "RAY", "Ray": {"BatchSize": 110.0}}}
    resp = await client.post(f"{run_path('noop', 'r')}/config", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["Configuration"]["ExecutorConfig"]["Ray"]["BatchSize"] == 110


async def test_a_ray_run_is_changed_live(executor: Executor, client: httpx.AsyncClient) -> None:
    """Live control on RAY (issue #14): MaxWorkers lowered mid-run drains an actor away,
    pause and resume, then a move to POOL; every chunk runs exactly once."""
    n = 150
    await configure(
        client, "noop", "r", num_chunks=n, MaxWorkers=2, WorkModel="RAY", Ray={"BatchSize": 2}
    )
    body = [{"ChunkID": f"c{i}", "RawData": {"i": i, "SleepMs": 20}} for i in range(n)]
    assert (await add(client, "noop", "r", body)).is_success
    run = executor.runs.get("noop", "r")
    ray_model = model(executor)
    await wait_for(lambda: ray_model.actors(run)[0] == 2, timeout=90, what="two actors")

    config = f"{run_path('noop', 'r')}/config"
    assert (await client.patch(config, json={"MaxWorkers": 1})).status_code == 200
    await wait_for(lambda: ray_model.actors(run)[0] == 1, timeout=60, what="one actor left")
    paused = await client.post(f"{run_path('noop', 'r')}/pause")
    assert paused.status_code == 200
    assert paused.json()["Paused"] is True
    assert (await client.post(f"{run_path('noop', 'r')}/resume")).status_code == 200
    assert (await client.patch(config, json={"WorkModel": "POOL"})).status_code == 200

    done = await wait_run_done(client, "noop", "r", timeout=120)
    assert done["CurrentState"] == "SUCCEEDED"
    assert done["Configuration"]["ExecutorConfig"]["WorkModel"] == "POOL"
    await assert_each_output_once(client, "noop", "r", n)
    workers = []
    for chunk in await inputs(client, "noop", "r"):
        (attempt,) = chunk["Attempts"]  # none ran twice
        workers.append(attempt["Worker"])
    assert any(w.startswith("ray-actor-") for w in workers)
    assert not all(w.startswith("ray-actor-") for w in workers)  # the rest ran on POOL


class Outputs(Processor[ProcessorConfig]):
    """Answers with what the chunk's RawData names: a number beyond 64 bits (which a
    batch's msgpack blob cannot carry), a value nested too deep, one that is no JSON,
    a file, or the RawData itself."""

    id = "ray-outputs"
    name = "returns odd outputs"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        kind = data.raw_data
        if kind == "huge":
            return 2**70
        if kind == "deep":
            value: Any = []
            for _ in range(500):
                value = [value]
            return value
        if kind == "object":
            return object()
        if kind == "file":
            return Output.file(context.data_dir / "f.txt", {"made": data.chunk_id})
        return data.raw_data


async def test_outputs_come_home_as_from_any_work_model(
    executor: Executor, client: httpx.AsyncClient
) -> None:
    """A batch travels as one msgpack blob each way; what it cannot carry still comes
    home (an integer beyond 64 bits), and what the executor refuses (too deep, not
    JSON) fails its chunk with the message the other work models give."""
    executor.registry.register(Outputs)
    kinds = ["huge", "deep", "object", "file", "plain"]
    for run_id, batch in (("mixed", kinds), ("packable", ["deep", "file", "plain"])):
        await configure(client, "ray-outputs", run_id, num_chunks=len(batch), WorkModel="RAY")
        body = [{"ChunkID": kind, "RawData": kind} for kind in batch]
        assert (await add(client, "ray-outputs", run_id, body)).is_success
        await wait_run_done(client, "ray-outputs", run_id)
        data = (await client.get(f"{run_path('ray-outputs', run_id)}/data")).json()
        out = {o["AssociatedChunkID"]: o for o in data["Out"]}
        assert out["deep"]["Error"] == "processor output nests deeper than 200 levels"
        assert out["file"]["State"] == "SUCCEEDED"
        assert out["file"]["RawData"] == {"made": "file"}
        assert out["file"]["FilesystemReference"]["Location"].endswith("f.txt")
        assert out["plain"]["RawData"] == "plain"
        if run_id == "mixed":
            assert out["huge"]["RawData"] == 2**70
            assert out["object"]["Error"].startswith("processor output is not JSON")


async def test_a_processor_on_an_actor_trusts_the_executors_ca_bundle(
    settings: Settings, tmp_path: Path
) -> None:
    """--ssl-ca-certs reaches the actors (as its PEM text: the path may not exist on
    their node): `get` on RAY downloads from an HTTPS server whose certificate comes
    from a private CA, as it does on POOL."""
    from _certs import make_certs
    from processors._servers import FixtureHTTP

    certs = make_certs(tmp_path / "certs")
    files = {"small.txt": b"hello over https\n"}
    trusting = dataclasses.replace(settings, ssl_ca_certs=certs.ca)
    with FixtureHTTP(files, tmp_path, tls=certs.server_context()) as web:
        async with Executor(trusting) as executor, asgi_client(executor) as client:
            body = {
                "ExpectedData": {"NumChunks": 1},
                "ExecutorConfig": {"WorkModel": "RAY"},
                "Processor": {"URL": web.url("/files/small.txt")},
            }
            assert (await client.post(f"{run_path('get', 'r')}/config", json=body)).is_success
            assert (await add(client, "get", "r", {"ChunkID": "c", "RawData": None})).is_success
            await wait_run_done(client, "get", "r")
            (chunk,) = await inputs(client, "get", "r")
            assert chunk["State"] == "SUCCEEDED", chunk.get("Error")
            assert chunk["Attempts"][0]["Worker"].startswith("ray-actor-")
            data = (await client.get(f"{run_path('get', 'r')}/data")).json()
            (out,) = data["Out"]
            assert out["RawData"]["SHA256"] == hashlib.sha256(files["small.txt"]).hexdigest()


async def test_chunks_of_a_lost_actor_wait_while_their_run_is_paused(
    executor: Executor, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A paused run starts none of its chunks: those its lost actor had running come
    back WAITING (reason PAUSED) and stay with the paused run's other chunks, not in
    the work model's queue, where a new actor would run them; they run on resume."""
    import ray

    executor.registry.register(WaitsForFile)
    release = tmp_path / "release"
    await configure(client, "waits-for-file", "r", num_chunks=2, MaxWorkers=1, WorkModel="RAY")
    body = [{"ChunkID": f"c{i}", "RawData": str(release)} for i in range(2)]
    assert (await add(client, "waits-for-file", "r", body)).is_success
    run = executor.runs.get("waits-for-file", "r")
    await wait_for(
        lambda: run.counts[DataChunkState.RUNNING] == 2, timeout=90, what="both chunks running"
    )
    assert (await client.post(f"{run_path('waits-for-file', 'r')}/pause")).status_code == 200
    (actor,) = run.sched.actors
    ray.kill(actor.handle, no_restart=True)
    await wait_for(
        lambda: run.counts[DataChunkState.WAITING] == 2, timeout=60, what="the lost chunks back"
    )
    assert not run.sched.queue, "a requeued chunk of a paused run went to the model's queue"
    assert not run.sched.starting, "an actor is starting for a paused run"
    shown = (await client.get(run_path("waits-for-file", "r"))).json()
    assert shown["Waiting"]["Reason"] == "PAUSED"
    release.write_text("go")
    assert (await client.post(f"{run_path('waits-for-file', 'r')}/resume")).status_code == 200
    done = await wait_run_done(client, "waits-for-file", "r", timeout=120)
    assert done["CurrentState"] == "SUCCEEDED"
    for chunk in await inputs(client, "waits-for-file", "r"):
        first, second = chunk["Attempts"]
        assert "lost" in first["Error"]
        assert second["Worker"] != first["Worker"]


class BlocksWhenAsked(Processor[ProcessorConfig]):
    """A blocking `run` that hangs (until the test's file appears) on the chunk "hang"
    and answers any other at once."""

    id = "blocks-when-asked"
    name = "blocks on one chunk"

    def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        if data.chunk_id == "hang":
            path = Path(data.raw_data)
            deadline = time.monotonic() + 60
            while not path.exists() and time.monotonic() < deadline:
                threading.Event().wait(0.02)  # a remote worker polling a file
        return data.chunk_id


async def test_a_blocking_chunk_past_its_timeout_fails_and_its_actor_is_replaced(
    executor: Executor, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The actor's timer ends a blocking chunk that overran: FAILED with the timeout's
    message; its thread may still hold the instance, so the actor is not used again
    and the next chunk runs on a new one."""
    executor.registry.register(BlocksWhenAsked)
    release = tmp_path / "release"
    await configure(
        client,
        "blocks-when-asked",
        "r",
        num_chunks=2,
        MaxWorkers=1,
        ChunkTimeout=0.5,
        WorkModel="RAY",
    )
    assert (
        await add(client, "blocks-when-asked", "r", {"ChunkID": "hang", "RawData": str(release)})
    ).is_success
    run = executor.runs.get("blocks-when-asked", "r")
    await wait_for(lambda: run.counts[DataChunkState.FAILED] == 1, timeout=90, what="a timeout")
    release.write_text("go")
    assert (await add(client, "blocks-when-asked", "r", {"ChunkID": "next"})).is_success
    await wait_run_done(client, "blocks-when-asked", "r", timeout=90)
    chunks = {c["ChunkID"]: c for c in await inputs(client, "blocks-when-asked", "r")}
    assert chunks["hang"]["Error"] == "processor did not finish the chunk within 0.5 s (timeout)"
    assert chunks["next"]["State"] == "SUCCEEDED"
    assert chunks["next"]["Attempts"][0]["Worker"] != chunks["hang"]["Attempts"][0]["Worker"]
