"""Why chunks wait (`Waiting` on the Run), since when chunks run (`RunningSince`, `Slow`),
how much more a run takes (`FreeRoom`, `X-Wiz-Free-Room`, /healthz), and the waiting
chunks by reason in /metrics: each produced by the situation it names.

Processors from `_gates` hold chunks inside `run` (or `setup`) until the test lets them
go, so "every worker is busy" or "a worker is in setup" is observed, not hoped for.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from time import time
from typing import Any

import httpx
import pytest

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import (
    Configuration,
    Context,
    Data,
    DataChunkState,
    DataFormat,
    Executor,
    Input,
    Processor,
    ProcessorConfig,
    Settings,
    WaitingReason,
    WorkModel,
)
from wiz_executor.journal import ChunksAccepted
from wiz_executor.runs import Chunk
from wiz_executor.scheduling import PoolModel
from wiz_executor.waiting import waiting

pytestmark = pytest.mark.anyio

WORK_MODELS = ["LIFETIME", "POOL"]


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def gate_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", max_workers=4, max_pending=10)


@pytest.fixture
async def gated(
    gate_settings: Settings, gate: Gate
) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    async with Executor(gate_settings) as executor, asgi_client(executor) as client:
        executor.registry.register(gate_processor(gate))
        executor.registry.register(setup_gate_processor(gate))
        try:
            yield executor, client
        finally:
            gate.release_all()


def setup_gate_processor(gate: Gate) -> type[Processor[Any]]:
    """A processor whose `setup` waits on the gate's `setup` hold (counting who is in
    it), then answers each chunk at once."""

    class SetupGate(Processor[ProcessorConfig]):
        id = "setup-gate"
        name = "Setup gate (test)"
        Config = ProcessorConfig

        async def setup(self) -> None:
            gate.setups += 1
            await gate.hold("setup").wait()

        async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            return data.raw_data

    return SetupGate


def chunks(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    return [{"ChunkID": f"{prefix}{i}", "RawData": {"i": i}} for i in range(n)]


async def get_run(client: httpx.AsyncClient, proc: str, run: str) -> dict[str, Any]:
    resp = await client.get(run_path(proc, run))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_run_limit_says_how_many_of_maxworkers_are_busy(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, work_model: str
) -> None:
    _, client = gated
    await configure(client, "gate", "r", MaxWorkers=2, WorkModel=work_model)
    before = time()
    assert (await add(client, "gate", "r", chunks(5))).is_success
    await wait_for(lambda: gate.active == 2, what="two chunks inside the processor")
    run = await get_run(client, "gate", "r")
    assert run["ChunkCounts"]["WAITING"] == 3
    waiting = run["Waiting"]
    assert waiting["Reason"] == "RUN_LIMIT"
    assert waiting["Detail"] == "2 of MaxWorkers 2 busy"
    assert before - 1 <= seconds(waiting["Since"]) <= time() + 1
    # The same in the list of runs; and none once nothing waits.
    (listed,) = (await client.get("/processors/gate/runs")).json()
    assert listed["Waiting"]["Reason"] == "RUN_LIMIT"
    gate.release_all()
    await client.post(run_path("gate", "r") + "/end-of-input")
    done = await wait_run_done(client, "gate", "r")
    assert done["ChunkCounts"]["SUCCEEDED"] == 5
    assert "Waiting" not in done


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_executor_limit_names_the_runs_holding_the_slots(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, work_model: str
) -> None:
    executor, client = gated  # --max-workers 4
    await configure(client, "gate", "big", MaxWorkers=3, WorkModel=work_model)
    await configure(client, "gate", "small", MaxWorkers=1, WorkModel=work_model)
    await configure(client, "gate", "late", MaxWorkers=2, WorkModel=work_model)
    assert (await add(client, "gate", "big", chunks(3))).is_success
    assert (await add(client, "gate", "small", chunks(1))).is_success
    await wait_for(lambda: gate.active == 4, what="four chunks inside the processor")
    assert (await add(client, "gate", "late", chunks(2))).is_success
    late = await get_run(client, "gate", "late")
    assert late["Waiting"]["Reason"] == "EXECUTOR_LIMIT", late
    detail = late["Waiting"]["Detail"]
    assert detail.startswith("4 of --max-workers 4 worker slots taken (gate/big 3, gate/small 1)")
    assert detail.endswith("this run holds 0 of its MaxWorkers 2")
    # Listing runs works out who holds the slots once per answer, not once per run.
    await configure(client, "gate", "later", MaxWorkers=2, WorkModel=work_model)
    assert (await add(client, "gate", "later", chunks(1))).is_success
    scheduler = executor.scheduler
    real, asked = scheduler.slot_holders, []

    def counted() -> list[tuple[Any, int]]:
        asked.append(1)
        return real()

    scheduler.slot_holders = counted  # type: ignore[method-assign]
    listed = (await client.get("/processors/gate/runs")).json()
    assert [r["Waiting"]["Reason"] for r in listed if "Waiting" in r] == ["EXECUTOR_LIMIT"] * 2
    assert len(asked) == 1
    scheduler.slot_holders = real  # type: ignore[method-assign]
    gate.release_all()
    await wait_for(
        lambda: executor.get_run("gate", "late").counts[DataChunkState.SUCCEEDED] == 2,
        what="the late run's chunks to run once slots are free",
    )


@pytest.mark.parametrize("work_model", WORK_MODELS)
async def test_setup_says_since_when_a_worker_is_in_setup(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, work_model: str
) -> None:
    _, client = gated
    await configure(client, "setup-gate", "r", num_chunks=3, MaxWorkers=1, WorkModel=work_model)
    before = time()
    assert (await add(client, "setup-gate", "r", chunks(3))).is_success
    await wait_for(lambda: gate.setups == 1, what="a worker in setup")
    waiting = (await get_run(client, "setup-gate", "r"))["Waiting"]
    assert waiting["Reason"] == "SETUP"
    since = seconds(waiting["Since"])
    assert before - 1 <= since <= time() + 1
    assert waiting["Detail"] == (
        f"1 worker in the processor's setup since {waiting['Since']}; 0 of MaxWorkers 1 busy"
    )
    gate.hold("setup").set()
    assert (await wait_run_done(client, "setup-gate", "r"))["CurrentState"] == "SUCCEEDED"


async def test_stopping_while_the_shutdown_waits_for_running_chunks(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate
) -> None:
    executor, client = gated
    await configure(client, "gate", "r", MaxWorkers=1)
    assert (await add(client, "gate", "r", chunks(3))).is_success
    await wait_for(lambda: gate.active == 1, what="a chunk inside the processor")
    stopping = asyncio.create_task(executor.shutdown(grace=30))
    await wait_for(lambda: executor.closing, what="the shutdown to begin")
    waiting = (await get_run(client, "gate", "r"))["Waiting"]
    assert waiting["Reason"] == "STOPPING"
    assert "run after the restart" in waiting["Detail"]  # (the journal is durable)
    assert (await get_run(client, "gate", "r"))["FreeRoom"] == 0
    gate.release_all()
    await stopping


async def test_journal_when_its_commit_failed(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks whose commit failed are in the run map but never start: JOURNAL, with why."""
    executor, client = gated
    await configure(client, "gate", "r")

    def broken(conn: sqlite3.Connection, records: list[object]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    assert executor.journal is not None
    monkeypatch.setitem(executor.journal._apply, ChunksAccepted, broken)  # type: ignore[attr-defined]
    resp = await add(client, "gate", "r", chunks(2))
    assert resp.status_code == 503
    waiting = (await get_run(client, "gate", "r"))["Waiting"]
    assert waiting["Reason"] == "JOURNAL"
    assert "disk I/O error" in waiting["Detail"]
    assert "2 accepted chunks never committed never start" in waiting["Detail"]


async def test_recovering_while_a_run_is_put_back(
    gated: tuple[Executor, httpx.AsyncClient],
) -> None:
    """A run whose waiting chunks recovery has not given to its workers yet. (Recovery
    puts a run back and hands its chunks over in one step, so this is the state between
    the two, made by accepting chunks without submitting them while recovering.)"""
    executor, client = gated
    await configure(client, "gate", "r")
    run = executor.get_run("gate", "r")
    new = [Chunk(f"c{i}", f"c{i}-out", DataFormat.RAW, None, "", "", False) for i in range(2)]
    executor.runs.accept(run, new)
    executor.recovering = True
    executor.recovery_started = started = time() - 5
    try:
        waiting = (await get_run(client, "gate", "r"))["Waiting"]
    finally:
        executor.recovering = False
    assert waiting["Reason"] == "RECOVERING"
    assert waiting["Detail"] == (
        "the executor is recovering its runs from the journal: 2 chunks of this run go "
        "to its workers once it is back"
    )
    assert abs(seconds(waiting["Since"]) - started) < 0.01


class _Unreachable(PoolModel):
    """POOL whose cluster (it has none) is said to be unreachable: the CLUSTER hook."""

    def waiting_reason(self, run: Any) -> str | None:
        return "the cluster at 127.0.0.1:6379 does not answer"


async def test_cluster_is_the_work_models_own_reason(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate
) -> None:
    executor, client = gated
    scheduler = executor.scheduler
    scheduler.models[WorkModel.POOL] = _Unreachable(scheduler.runner, scheduler.limiter)
    await configure(client, "gate", "r", MaxWorkers=1, WorkModel="POOL")
    assert (await add(client, "gate", "r", chunks(2))).is_success
    await wait_for(lambda: gate.active == 1, what="a chunk inside the processor")
    waiting = (await get_run(client, "gate", "r"))["Waiting"]
    assert waiting == {
        "Reason": "CLUSTER",
        "Detail": "the cluster at 127.0.0.1:6379 does not answer",
        "Since": waiting["Since"],
    }
    gate.release_all()
    await wait_for(
        lambda: executor.get_run("gate", "r").counts[DataChunkState.SUCCEEDED] == 2,
        what="both chunks to run",
    )


def test_every_reason_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = readme[readme.index("### Why chunks wait") :]
    for reason in WaitingReason:
        assert re.search(rf"^\| `{reason.value}` \|", table, re.MULTILINE), reason


async def test_a_running_chunk_says_since_when_and_is_slow_past_half_its_timeout(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate
) -> None:
    _, client = gated
    await configure(client, "gate", "timed", MaxWorkers=1, ChunkTimeout=4)
    await configure(client, "gate", "untimed", MaxWorkers=1)
    assert (await add(client, "gate", "timed", chunks(1))).is_success
    assert (await add(client, "gate", "untimed", chunks(1))).is_success
    await wait_for(lambda: gate.active == 2, what="both chunks inside the processor")
    seen: list[tuple[float, bool]] = []

    async def slow() -> bool:
        (chunk,) = (await client.get(run_path("gate", "timed") + "/data")).json()["In"]
        assert chunk["State"] == "RUNNING"
        running_for = time() - seconds(chunk["RunningSince"])
        seen.append((running_for, chunk.get("Slow", False)))
        return bool(chunk.get("Slow"))

    await wait_for(slow, 10, "the chunk to be flagged Slow")
    # Not Slow before half its ChunkTimeout (2 s), Slow after (a little slack for the
    # clock read on either side of the answer).
    assert all(not flagged for running_for, flagged in seen if running_for < 1.9), seen
    assert seen[-1][0] >= 1.9, seen
    started = await client.get(run_path("gate", "timed") + "/data/input/c0")
    assert started.json()["Slow"] is True
    attempt_start = started.json()["Attempts"][-1]["Start"]
    assert started.json()["RunningSince"] == attempt_start
    # A run without a ChunkTimeout has no Slow chunks, however long they run.
    (untimed,) = (await client.get(run_path("gate", "untimed") + "/data")).json()["In"]
    assert untimed["RunningSince"]
    assert "Slow" not in untimed
    gate.release_all()
    await wait_for(lambda: gate.active == 0, what="the chunks to end")
    (done,) = (await client.get(run_path("gate", "timed") + "/data")).json()["In"]
    assert done["State"] == "SUCCEEDED"
    assert "RunningSince" not in done
    assert "Slow" not in done


async def test_free_room_at_known_queue_sizes(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate
) -> None:
    """--max-pending 10: the room is 10 less the chunks waiting, executor-wide; a run's
    is also within what its NumChunks leaves, and 0 once its input is closed. The
    header carries the executor's room (a sender paces per host, across runs)."""
    _, client = gated
    await configure(client, "gate", "counted", num_chunks=6, MaxWorkers=1)
    await configure(client, "gate", "open", MaxWorkers=1)
    assert (await get_run(client, "gate", "counted"))["FreeRoom"] == 6
    assert (await client.get("/healthz")).json()["free_room"] == 10
    first = await add(client, "gate", "counted", chunks(1))
    # the executor's room (10, less the chunk unless it started already), not the run's 5
    assert first.headers["X-Wiz-Free-Room"] in ("9", "10")
    await wait_for(lambda: gate.active == 1, what="the first chunk to run")
    resp = await add(client, "gate", "counted", chunks(3, "w"))
    assert resp.status_code == 200
    assert resp.headers["X-Wiz-Free-Room"] == "7"  # 3 waiting: 7 free (the run's: 2)
    assert (await get_run(client, "gate", "counted"))["FreeRoom"] == 2
    assert (await get_run(client, "gate", "open"))["FreeRoom"] == 7
    assert (await client.get("/healthz")).json()["free_room"] == 7
    resp = await add(client, "gate", "open", chunks(7))
    assert resp.headers["X-Wiz-Free-Room"] == "0"
    assert (await client.get("/healthz")).json()["free_room"] == 0
    full = await add(client, "gate", "open", chunks(1, "x"))
    assert full.status_code == 429
    assert full.headers["X-Wiz-Free-Room"] == "0"
    assert full.headers["Retry-After"]
    assert (await client.post(run_path("gate", "counted") + "/end-of-input")).status_code == 200
    assert (await get_run(client, "gate", "counted"))["FreeRoom"] == 0


async def test_metrics_count_waiting_chunks_by_reason(
    gated: tuple[Executor, httpx.AsyncClient], gate: Gate
) -> None:
    _, client = gated  # --max-workers 4, --max-pending 10
    await configure(client, "gate", "a", MaxWorkers=1)
    await configure(client, "gate", "b", MaxWorkers=3)
    await configure(client, "gate", "c", MaxWorkers=2)
    assert (await add(client, "gate", "a", chunks(4))).is_success
    assert (await add(client, "gate", "b", chunks(3))).is_success
    await wait_for(lambda: gate.active == 4, what="every worker slot busy")
    assert (await add(client, "gate", "c", chunks(2))).is_success
    text = (await client.get("/metrics")).text
    found = dict(re.findall(r'^wiz_waiting_chunks\{reason="(\w+)"\} (\S+)$', text, re.MULTILINE))
    assert set(found) == {reason.value for reason in WaitingReason}
    assert {reason: float(n) for reason, n in found.items() if float(n)} == {
        "RUN_LIMIT": 3.0,
        "EXECUTOR_LIMIT": 2.0,
    }
    assert re.search(r"^wiz_free_room 5\.0$", text, re.MULTILINE), text


@pytest.mark.parametrize(
    ("ephemeral", "reason", "detail"),
    [
        (False, WaitingReason.JOURNAL, "3 accepted chunks start once the journal commits them"),
        (True, WaitingReason.QUEUED, "3 chunks queued for a free worker (0 of MaxWorkers 2 busy)"),
    ],
)
async def test_journal_and_queued_in_the_moment_after_accepting(
    tmp_path: Path, ephemeral: bool, reason: WaitingReason, detail: str
) -> None:
    """Read in the same loop step as the AddData call: with the journal, the chunks
    wait for their commit (JOURNAL), as nothing runs before it; without it, they are in
    the work model's queue and its new workers have not run yet (QUEUED)."""
    settings = Settings(data_dir=tmp_path, ephemeral=ephemeral)
    async with Executor(settings) as executor:
        config = Configuration.model_validate({"ExecutorConfig": {"MaxWorkers": 2}})
        run, _ = executor.configure("noop", "r", config)
        result = executor.add_data("noop", "r", [Data(ChunkID=f"c{i}") for i in range(3)])
        why = waiting(executor, run)
        assert why is not None
        assert (why.reason, why.detail) == (reason, detail)
        await executor.committed(result.committed)
        await wait_for(lambda: run.counts[DataChunkState.SUCCEEDED] == 3, what="the chunks")
        assert waiting(executor, run) is None
