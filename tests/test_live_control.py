"""Live control of a running run: PATCH its config, pause and resume it; PATCH /executor.

Chunks of the `held` processor each wait on an event of their own, so a test decides
exactly which chunk finishes when, and the processor records which chunks are inside
`run` at every instant, how often each entered (so a chunk run twice is caught) and the
peak concurrency reached. No test sleeps: each waits for a condition.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, chunk_counts, configure, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import (
    Context,
    DataChunkState,
    Executor,
    Input,
    Processor,
    ProcessorConfig,
    Settings,
    WorkModel,
)
from wiz_executor.scheduling import LifetimeModel, WorkerLimiter, WorkModelBase

pytestmark = pytest.mark.anyio

MODELS = ["POOL", "LIFETIME"]
TOKEN = "s3cret-token"


class Held:
    """Which chunks are inside the processor, how often each entered, and the peak."""

    def __init__(self) -> None:
        self.inside: dict[str, None] = {}  # in the order they entered
        self.entries: Counter[str] = Counter()
        self.peak = 0
        self.events: dict[str, asyncio.Event] = {}
        self.opened = False

    def event(self, chunk_id: str) -> asyncio.Event:
        event = self.events.setdefault(chunk_id, asyncio.Event())
        if self.opened:
            event.set()
        return event

    def open_all(self) -> None:
        """Let every chunk through from now on (a test's clean-up)."""
        self.opened = True
        for event in self.events.values():
            event.set()

    def release(self, chunk_id: str) -> None:
        self.event(chunk_id).set()

    def release_oldest(self) -> str:
        """Release the chunk inside the longest that is not released yet."""
        chunk_id = next(c for c in self.inside if not self.event(c).is_set())
        self.release(chunk_id)
        return chunk_id

    def release_all(self) -> None:
        for chunk_id in list(self.inside):
            self.release(chunk_id)

    def reset_peak(self) -> None:
        self.peak = len(self.inside)


def held_processor(held: Held, proc_id: str = "held") -> type[Processor[Any]]:
    class HeldProcessor(Processor[ProcessorConfig]):
        id = proc_id
        name = "Held (test)"
        Config = ProcessorConfig

        async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            chunk_id = data.chunk_id
            held.inside[chunk_id] = None
            held.entries[chunk_id] += 1
            held.peak = max(held.peak, len(held.inside))
            try:
                await held.event(chunk_id).wait()
            finally:
                del held.inside[chunk_id]
            return data.raw_data

    return HeldProcessor


@pytest.fixture
def held() -> Held:
    return Held()


@pytest.fixture
def control_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "wiz-data",
        db_path=tmp_path / "wiz.db",
        max_workers=8,
        default_run_workers=2,
        max_pending=1000,
    )


@pytest.fixture
async def live(
    control_settings: Settings, held: Held
) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    async with Executor(control_settings) as executor, asgi_client(executor) as client:
        executor.registry.register(held_processor(held))
        try:
            yield executor, client
        finally:
            held.open_all()


def chunks(n: int, prefix: str = "c") -> list[dict[str, Any]]:
    return [{"ChunkID": f"{prefix}{i:02d}", "RawData": {"i": i}} for i in range(n)]


async def patch_config(
    client: httpx.AsyncClient, run: str, body: dict[str, Any], proc: str = "held"
) -> httpx.Response:
    return await client.patch(f"{run_path(proc, run)}/config", json=body)


async def drive(held: Held, limit: int, remaining: int) -> None:
    """Release the chunks one at a time, oldest first, each time once as many are
    inside as `limit` allows (or all that are left), checking the limit is never passed."""
    while remaining:
        want = min(limit, remaining)

        def inside(want: int = want) -> bool:
            # (released chunks on their way out do not count)
            return sum(not held.event(c).is_set() for c in held.inside) == want

        await wait_for(inside, what=f"{want} chunks inside")
        assert held.peak <= limit, f"peak {held.peak} above the limit {limit}"
        held.release_oldest()
        remaining -= 1


async def assert_each_ran_once(
    client: httpx.AsyncClient, held: Held, run: str, n: int, extra: tuple[str, ...] = ()
) -> None:
    """Every chunk (c00.. and `extra`) SUCCEEDED, entered the processor once, and has
    one attempt; no other chunk is there."""
    body = await wait_run_done(client, "held", run)
    assert body["CurrentState"] == "SUCCEEDED", body
    ids = sorted([f"c{i:02d}" for i in range(n)] + list(extra))
    assert {cid: held.entries[cid] for cid in ids} == dict.fromkeys(ids, 1)
    assert sum(held.entries.values()) == len(ids)
    data = (await client.get(f"{run_path('held', run)}/data")).json()
    assert sorted(c["ChunkID"] for c in data["In"]) == ids
    assert all(len(c["Attempts"]) == 1 for c in data["In"])
    assert sorted(o["AssociatedChunkID"] for o in data["Out"]) == ids
    assert {o["State"] for o in data["Out"]} == {"SUCCEEDED"}


# -- PATCH …/config ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_lowering_max_workers_lets_running_chunks_finish_and_starts_none_above(
    live: tuple[Executor, httpx.AsyncClient], held: Held, model: str
) -> None:
    _, client = live
    await configure(client, "held", "r", num_chunks=12, MaxWorkers=4, WorkModel=model)
    assert (await add(client, "held", "r", chunks(12))).status_code == 200
    await wait_for(lambda: len(held.inside) == 4, what="four chunks running")
    resp = await patch_config(client, "r", {"MaxWorkers": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json()["Configuration"]["ExecutorConfig"]["MaxWorkers"] == 2
    # The four running go on; as two of them end, none starts in their place.
    first = [held.release_oldest(), held.release_oldest()]

    async def two_done() -> bool:
        return (await chunk_counts(client, "held", "r"))["SUCCEEDED"] == 2

    await wait_for(two_done, what="the first two chunks to end")
    counts = await chunk_counts(client, "held", "r")
    assert (counts["RUNNING"], counts["WAITING"]) == (2, 8), (first, counts)
    assert len(held.inside) == 2
    held.reset_peak()
    await drive(held, 2, 10)
    assert held.peak == 2  # the new limit was reached, never passed
    await assert_each_ran_once(client, held, "r", 12)


@pytest.mark.parametrize("model", MODELS)
async def test_raising_max_workers_starts_workers_at_once(
    live: tuple[Executor, httpx.AsyncClient], held: Held, model: str
) -> None:
    _, client = live
    await configure(client, "held", "r", num_chunks=10, MaxWorkers=1, WorkModel=model)
    assert (await add(client, "held", "r", chunks(10))).status_code == 200
    await wait_for(lambda: len(held.inside) == 1, what="one chunk running")
    assert (await patch_config(client, "r", {"MaxWorkers": 4})).status_code == 200
    # Without any chunk ending, three more start.
    await wait_for(lambda: len(held.inside) == 4, what="four chunks running")
    await drive(held, 4, 10)
    assert held.peak == 4
    await assert_each_ran_once(client, held, "r", 10)


@pytest.mark.parametrize(("old", "new"), [("POOL", "LIFETIME"), ("LIFETIME", "POOL")])
async def test_switching_work_model_drains_the_old_then_runs_on_the_new(
    live: tuple[Executor, httpx.AsyncClient], held: Held, old: str, new: str
) -> None:
    executor, client = live
    await configure(client, "held", "r", num_chunks=10, MaxWorkers=3, WorkModel=old)
    assert (await add(client, "held", "r", chunks(10))).status_code == 200
    await wait_for(lambda: len(held.inside) == 3, what="three chunks running")
    resp = await patch_config(client, "r", {"WorkModel": new})
    assert resp.status_code == 200, resp.text
    config = (await client.get(f"{run_path('held', 'r')}/config")).json()
    assert config["ExecutorConfig"]["WorkModel"] == new
    run = executor.runs.get("held", "r")
    assert run.work_model.value == old  # the old model still has chunks in flight
    # More room would not let the new model start beside the old one's chunks.
    assert (await patch_config(client, "r", {"MaxWorkers": 6})).status_code == 200
    assert (await patch_config(client, "r", {"MaxWorkers": 3})).status_code == 200
    in_flight = list(held.inside)
    for chunk_id in in_flight:
        held.release(chunk_id)
    await executor.scheduler.switched(run)
    assert run.work_model.value == new
    await drive(held, 3, 7)
    assert held.peak <= 3
    await assert_each_ran_once(client, held, "r", 10)


async def test_a_change_takes_the_same_change_again_as_a_no_op(
    live: tuple[Executor, httpx.AsyncClient], held: Held
) -> None:
    _, client = live
    await configure(client, "held", "r", MaxWorkers=2)
    first = await patch_config(client, "r", {"MaxWorkers": 3, "ChunkTimeout": 20})
    again = await patch_config(client, "r", {"MaxWorkers": 3, "ChunkTimeout": 20})
    assert first.status_code == again.status_code == 200
    # (The run's timing fields move on between the two answers: the rest is the same.)
    timing = {"DurationSeconds", "ChunksPerSecond", "EtaSeconds"}
    assert {k: v for k, v in first.json().items() if k not in timing} == {
        k: v for k, v in again.json().items() if k not in timing
    }
    config = (await client.get(f"{run_path('held', 'r')}/config")).json()["ExecutorConfig"]
    assert (config["MaxWorkers"], config["ChunkTimeout"]) == (3, 20)
    # Only what was given changes; the original Configure is still a no-op.
    assert (await patch_config(client, "r", {"ChunkTimeout": None})).status_code == 200
    body = {"ExpectedData": {"NumChunks": 0}, "ExecutorConfig": {"MaxWorkers": 2}}
    resp = await client.post(f"{run_path('held', 'r')}/config", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["Configuration"]["ExecutorConfig"]["MaxWorkers"] == 3


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"ChunkTimeout": 7200}, "--max-chunk-timeout"),
        ({"MaxWorkers": -1}, "MaxWorkers"),
        ({"MaxWorkers": "4"}, "MaxWorkers"),
        ({"WorkModel": "BOGUS"}, "WorkModel"),
        ({"ChunkTimeout": -1}, "ChunkTimeout"),
        ([1], "RunChange"),
    ],
)
async def test_a_bad_change_is_a_400_and_changes_nothing(
    live: tuple[Executor, httpx.AsyncClient], body: Any, why: str
) -> None:
    _, client = live
    await configure(client, "held", "r", MaxWorkers=2)
    before = (await client.get(f"{run_path('held', 'r')}/config")).json()
    resp = await client.patch(f"{run_path('held', 'r')}/config", json=body)
    assert resp.status_code == 400, resp.text
    assert why in resp.json()["value"]
    assert (await client.get(f"{run_path('held', 'r')}/config")).json() == before


async def test_max_workers_above_the_executors_limit_is_clamped_with_a_warning(
    live: tuple[Executor, httpx.AsyncClient],
) -> None:
    executor, client = live
    await configure(client, "held", "r", MaxWorkers=2)
    resp = await patch_config(client, "r", {"MaxWorkers": 100, "Bogus": 1})
    assert resp.status_code == 200, resp.text
    warnings = resp.json()["Warnings"]
    assert any("MaxWorkers 100" in w and "--max-workers 8" in w for w in warnings), warnings
    assert "unknown field Bogus ignored" in warnings
    assert executor.runs.get("held", "r").max_workers == 8


async def test_strict_config_refuses_unknown_fields_of_a_change(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, ephemeral=True, strict_config=True)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        await configure(client, "noop", "r")
        resp = await patch_config(client, "r", {"MaxWorkers": 3, "Bogus": 1}, proc="noop")
        assert resp.status_code == 400, resp.text
        assert "Bogus" in resp.json()["value"]
        assert executor.runs.get("noop", "r").configuration.ExecutorConfig.MaxWorkers == 0


async def test_a_finished_run_cannot_be_changed_paused_or_resumed(
    live: tuple[Executor, httpx.AsyncClient],
) -> None:
    _, client = live
    await configure(client, "noop", "r", num_chunks=1)
    assert (await add(client, "noop", "r", {"ChunkID": "c"})).status_code == 200
    await wait_run_done(client, "noop", "r")
    path = run_path("noop", "r")
    for resp in (
        await client.patch(f"{path}/config", json={"MaxWorkers": 3}),
        await client.post(f"{path}/pause"),
        await client.post(f"{path}/resume"),
    ):
        assert resp.status_code == 409, resp.text
        assert "finished run" in resp.json()["value"]
    for resp in (
        await client.patch(f"{run_path('noop', 'nope')}/config", json={"MaxWorkers": 3}),
        await client.post(f"{run_path('noop', 'nope')}/pause"),
    ):
        assert resp.status_code == 404, resp.text


# -- pause and resume ----------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
async def test_pause_stops_starting_chunks_and_resume_runs_each_once(
    live: tuple[Executor, httpx.AsyncClient], held: Held, model: str
) -> None:
    _, client = live
    path = run_path("held", "r")
    await configure(client, "held", "r", MaxWorkers=2, WorkModel=model)
    assert (await add(client, "held", "r", chunks(6))).status_code == 200
    await wait_for(lambda: len(held.inside) == 2, what="two chunks running")
    resp = await client.post(f"{path}/pause")
    assert resp.status_code == 200, resp.text
    assert resp.json()["Paused"] is True
    again = await client.post(f"{path}/pause")  # idempotent
    assert again.status_code == 200
    assert again.json()["Paused"] is True
    held.release_all()  # the running ones finish ...

    async def two_done() -> bool:
        return (await chunk_counts(client, "held", "r"))["SUCCEEDED"] == 2

    await wait_for(two_done, what="the running chunks to end")
    counts = await chunk_counts(client, "held", "r")
    assert (counts["RUNNING"], counts["WAITING"]) == (0, 4)  # ... and none starts
    assert held.inside == {}
    # AddData still takes chunks; end of input does not let a paused run finish.
    assert (await add(client, "held", "r", chunks(2, "d"))).status_code == 200
    assert (await client.post(f"{path}/end-of-input")).status_code == 200
    run = (await client.get(path)).json()
    assert (run["CurrentState"], run["Paused"], run["ChunkCounts"]["WAITING"]) == (
        "RUNNING",
        True,
        6,
    )
    resp = await client.post(f"{path}/resume")
    assert resp.status_code == 200, resp.text
    assert "Paused" not in resp.json()
    assert (await client.post(f"{path}/resume")).status_code == 200  # idempotent
    await drive(held, 2, 6)
    await assert_each_ran_once(client, held, "r", 6, extra=("d00", "d01"))


async def test_a_paused_run_finishes_only_once_resumed(
    live: tuple[Executor, httpx.AsyncClient], held: Held
) -> None:
    _, client = live
    path = run_path("held", "r")
    await configure(client, "held", "r")
    assert (await add(client, "held", "r", chunks(2))).status_code == 200
    await wait_for(lambda: len(held.inside) == 2, what="two chunks running")
    assert (await client.post(f"{path}/pause")).status_code == 200
    assert (await client.post(f"{path}/end-of-input")).status_code == 200
    held.release_all()

    async def done() -> bool:
        return (await chunk_counts(client, "held", "r"))["SUCCEEDED"] == 2

    await wait_for(done, what="both chunks to end")
    assert (await client.get(path)).json()["CurrentState"] == "RUNNING"  # paused: not over
    assert (await client.post(f"{path}/resume")).json()["CurrentState"] == "SUCCEEDED"


async def test_a_paused_run_changed_to_another_model_stays_paused(
    live: tuple[Executor, httpx.AsyncClient], held: Held
) -> None:
    executor, client = live
    path = run_path("held", "r")
    await configure(client, "held", "r", num_chunks=4, MaxWorkers=2, WorkModel="POOL")
    assert (await add(client, "held", "r", chunks(4))).status_code == 200
    await wait_for(lambda: len(held.inside) == 2, what="two chunks running")
    assert (await client.post(f"{path}/pause")).status_code == 200
    assert (await patch_config(client, "r", {"WorkModel": "LIFETIME"})).status_code == 200
    held.release_all()
    run = executor.runs.get("held", "r")
    await executor.scheduler.switched(run)
    assert run.work_model.value == "LIFETIME"
    counts = await chunk_counts(client, "held", "r")
    assert (counts["SUCCEEDED"], counts["WAITING"], counts["RUNNING"]) == (2, 2, 0)
    assert (await client.post(f"{path}/resume")).status_code == 200
    await drive(held, 2, 2)
    await assert_each_ran_once(client, held, "r", 4)


async def test_deleting_a_paused_or_switching_run_fails_its_held_chunks(
    live: tuple[Executor, httpx.AsyncClient], held: Held
) -> None:
    executor, client = live
    await configure(client, "held", "p", MaxWorkers=1)
    await configure(client, "held", "s", MaxWorkers=1, WorkModel="POOL")
    assert (await add(client, "held", "p", chunks(3, "p"))).status_code == 200
    assert (await add(client, "held", "s", chunks(3, "s"))).status_code == 200
    await wait_for(lambda: len(held.inside) == 2, what="one chunk of each running")
    assert (await client.post(f"{run_path('held', 'p')}/pause")).status_code == 200
    assert (await patch_config(client, "s", {"WorkModel": "LIFETIME"})).status_code == 200
    for run in ("p", "s"):
        assert (await client.delete(run_path("held", run))).status_code == 200
    assert held.inside == {}
    assert executor.scheduler._held == {}
    assert executor.runs.counts[DataChunkState.WAITING] == 0
    assert executor.runs.counts[DataChunkState.RUNNING] == 0


# -- PATCH /executor -----------------------------------------------------------------


async def test_get_executor_answers_the_limits(live: tuple[Executor, httpx.AsyncClient]) -> None:
    _, client = live
    resp = await client.get("/executor")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"MaxWorkers": 8, "MaxPending": 1000}


@pytest.mark.parametrize("model", MODELS)
async def test_executor_max_workers_changes_live(
    live: tuple[Executor, httpx.AsyncClient], held: Held, model: str
) -> None:
    executor, client = live
    await configure(client, "held", "r", num_chunks=14, MaxWorkers=6, WorkModel=model)
    resp = await client.patch("/executor", json={"MaxWorkers": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"MaxWorkers": 2, "MaxPending": 1000}
    health = (await client.get("/healthz")).json()
    assert (health["workers"]["max"], health["max_pending"]) == (2, 1000)
    assert (await add(client, "held", "r", chunks(14))).status_code == 200
    await wait_for(lambda: len(held.inside) == 2, what="two chunks running")
    # Raised: the run gets its six at once (its MaxWorkers is below the new limit).
    assert (await client.patch("/executor", json={"MaxWorkers": 10})).status_code == 200
    await wait_for(lambda: len(held.inside) == 6, what="six chunks running")
    assert executor.runs.get("held", "r").max_workers == 6
    # Lowered below what runs: those finish, no new one starts until under the limit.
    assert (await client.patch("/executor", json={"MaxWorkers": 3})).status_code == 200
    for _ in range(3):
        held.release_oldest()

    async def three_done() -> bool:
        return (await chunk_counts(client, "held", "r"))["SUCCEEDED"] == 3

    await wait_for(three_done, what="three chunks to end")
    assert (await chunk_counts(client, "held", "r"))["RUNNING"] == 3
    held.reset_peak()
    await drive(held, 3, 11)
    assert held.peak == 3
    assert executor.scheduler.limiter.in_use <= 3
    await assert_each_ran_once(client, held, "r", 14)


async def test_executor_max_pending_changes_live(live: tuple[Executor, httpx.AsyncClient]) -> None:
    _, client = live
    await configure(client, "held", "r", MaxWorkers=1)
    assert (await client.post(f"{run_path('held', 'r')}/pause")).status_code == 200
    resp = await client.patch("/executor", json={"MaxPending": 3})
    assert resp.status_code == 200
    assert resp.json() == {"MaxWorkers": 8, "MaxPending": 3}
    assert (await add(client, "held", "r", chunks(3))).status_code == 200
    full = await add(client, "held", "r", {"ChunkID": "more"})
    assert full.status_code == 429, full.text
    assert (await client.patch("/executor", json={"MaxPending": 4})).status_code == 200
    assert (await add(client, "held", "r", {"ChunkID": "more"})).status_code == 200


@pytest.mark.parametrize(
    "body", [{"MaxWorkers": 0}, {"MaxPending": -1}, {"MaxWorkers": "2"}, {"MaxWorkers": 1.5}, []]
)
async def test_bad_executor_limits_are_a_400_and_change_nothing(
    live: tuple[Executor, httpx.AsyncClient], body: Any
) -> None:
    _, client = live
    resp = await client.patch("/executor", json=body)
    assert resp.status_code == 400, resp.text
    assert (await client.get("/executor")).json() == {"MaxWorkers": 8, "MaxPending": 1000}


async def test_live_control_needs_the_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, ephemeral=True, token=TOKEN)
    async with Executor(settings) as executor, asgi_client(executor) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        body = {"ExpectedData": {"NumChunks": 0}}
        resp = await client.post(f"{run_path('noop', 'r')}/config", json=body, headers=auth)
        assert resp.status_code == 200
        path = run_path("noop", "r")
        for method, url, payload in (
            ("PATCH", "/executor", {"MaxWorkers": 1}),
            ("GET", "/executor", None),
            ("PATCH", f"{path}/config", {"MaxWorkers": 1}),
            ("POST", f"{path}/pause", None),
            ("POST", f"{path}/resume", None),
        ):
            resp = await client.request(method, url, json=payload)
            assert resp.status_code == 401, (method, url, resp.text)
        assert executor.settings.max_workers == 64
        run = executor.runs.get("noop", "r")
        assert not run.paused
        assert run.configuration.ExecutorConfig.MaxWorkers == 0
        resp = await client.post(f"{path}/pause", headers=auth)
        assert resp.status_code == 200
        assert resp.json()["Paused"] is True


async def test_a_switch_changed_back_while_draining_ends_on_the_last_model_asked(
    live: tuple[Executor, httpx.AsyncClient], held: Held
) -> None:
    executor, client = live
    await configure(client, "held", "r", num_chunks=6, MaxWorkers=2, WorkModel="POOL")
    assert (await add(client, "held", "r", chunks(6))).status_code == 200
    await wait_for(lambda: len(held.inside) == 2, what="two chunks running")
    for model in ("LIFETIME", "POOL", "LIFETIME", "POOL"):
        assert (await patch_config(client, "r", {"WorkModel": model})).status_code == 200
    run = executor.runs.get("held", "r")
    held.release_all()
    await executor.scheduler.switched(run)
    assert run.work_model.value == "POOL"
    config = (await client.get(f"{run_path('held', 'r')}/config")).json()
    assert config["ExecutorConfig"]["WorkModel"] == "POOL"
    await drive(held, 2, 4)
    await assert_each_ran_once(client, held, "r", 6)


async def test_pause_resume_and_changes_are_run_events(
    live: tuple[Executor, httpx.AsyncClient],
) -> None:
    executor, client = live
    await configure(client, "held", "r")
    sub = executor.events.subscribe(executor.runs.get("held", "r"))
    try:
        before = len(sub)
        assert (await client.post(f"{run_path('held', 'r')}/pause")).status_code == 200
        assert (await patch_config(client, "r", {"MaxWorkers": 5})).status_code == 200
        assert (await client.post(f"{run_path('held', 'r')}/resume")).status_code == 200
        frames = [f.decode() for f in list(sub._frames)[before:]]
        assert len(frames) == 3, frames
        assert all("event: run\n" in f for f in frames)
        assert ['"Paused":true' in f for f in frames] == [True, True, False]
    finally:
        executor.events.unsubscribe(sub)


# -- the limiter, resized --------------------------------------------------------------


async def test_a_raised_limiter_hands_its_new_slots_to_waiters_at_once() -> None:
    limiter = WorkerLimiter(1, "run r")
    assert limiter.try_acquire()
    got: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        got.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(3)]
    await wait_for(lambda: limiter.waiting == 3, what="three waiters")
    limiter.resize(3)
    await wait_for(lambda: len(got) == 2, what="two waiters served")
    assert (got, limiter.in_use, limiter.peak, limiter.waiting) == ([0, 1], 3, 3, 1)
    limiter.release()  # the third waiter gets the slot
    await asyncio.gather(*tasks[:3])
    assert got == [0, 1, 2]
    with pytest.raises(ValueError, match="at least 1"):
        limiter.resize(0)


async def test_a_lowered_limiter_hands_no_slot_on_until_under_it() -> None:
    limiter = WorkerLimiter(3, "executor")
    for _ in range(3):
        assert limiter.try_acquire()
    parked: asyncio.Future[bool | None] = asyncio.get_running_loop().create_future()
    limiter.park(parked)  # an idle holder offering its slot
    limiter.resize(1)
    assert parked.result() is True  # asked to give its slot up
    assert limiter.reclaiming == 1
    waiter = asyncio.create_task(limiter.acquire())
    await wait_for(lambda: limiter.waiting == 1, what="a waiter")
    limiter.release_given_up()  # 3 -> 2 in use: still over, nothing handed on
    limiter.release()  # 2 -> 1: at the limit, still nothing
    assert (limiter.in_use, waiter.done()) == (1, False)
    limiter.release()  # under it: the waiter gets the slot
    await waiter
    assert (limiter.in_use, limiter.reclaiming) == (1, 0)


async def test_a_work_model_without_live_control_answers_409_and_changes_nothing(
    live: tuple[Executor, httpx.AsyncClient],
) -> None:
    executor, client = live
    scheduler = executor.scheduler
    plain = scheduler.models[WorkModel.LIFETIME]

    class Plain(LifetimeModel):  # a model that implements only the base interface
        withdraw = WorkModelBase.withdraw
        resize = WorkModelBase.resize

    scheduler.models[WorkModel.LIFETIME] = Plain(plain.runner, plain.limiter)
    await configure(client, "held", "r", MaxWorkers=2, WorkModel="LIFETIME")
    path = run_path("held", "r")
    before = (await client.get(f"{path}/config")).json()
    for resp in (
        await client.post(f"{path}/pause"),
        await patch_config(client, "r", {"MaxWorkers": 3}),
        await patch_config(client, "r", {"WorkModel": "POOL"}),
    ):
        assert resp.status_code == 409, resp.text
        assert "Plain cannot" in resp.json()["value"]
    assert (await client.get(f"{path}/config")).json() == before
    run = executor.runs.get("held", "r")
    assert (run.paused, run.max_workers, run.work_model) == (False, 2, WorkModel.LIFETIME)
    assert scheduler._held == {}
