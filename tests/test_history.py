"""A run's timing and rates: `Started`, `Ended`, `DurationSeconds`, `ChunksPerSecond`,
`EtaSeconds` on the Run, and `GET .../history`, read from the ring the executor samples
on a timer. The tests take the samples themselves (`HistorySampler.sample`, at times
they choose), so rates are exact and nothing waits for the timer."""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from _gates import Gate, add, asgi_client, configure, gate_processor, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import Configuration, Data, DataChunkState, Executor, Settings, create_app
from wiz_executor.client import AsyncClient
from wiz_executor.history import (
    LENGTH,
    WINDOW,
    SampleRing,
    chunks_per_second,
    history_samples,
    processed_count,
    run_timing,
)

pytestmark = pytest.mark.anyio
_SUCCEEDED = DataChunkState.SUCCEEDED


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_the_ring_keeps_the_newest_samples_and_no_more() -> None:
    ring = SampleRing(length=5)
    assert len(ring) == 0
    assert ring.samples() == []
    assert ring.baseline(10.0) is None
    for i in range(12):
        ring.add(float(i), i * 10, 100 - i, 2)
    assert len(ring) == 5
    assert ring.samples() == [(float(i), i * 10, 100 - i, 2) for i in range(7, 12)]
    # the newest sample at or before a time, or the oldest held when none is that old
    assert ring.baseline(9.5) == (9.0, 90)
    assert ring.baseline(3.0) == (7.0, 70)
    with pytest.raises(ValueError, match="at least one"):
        SampleRing(length=0)


async def test_a_run_s_ring_is_bounded_to_ten_minutes(executor: Executor) -> None:
    executor.configure("noop", "r", _config())
    run = executor.get_run("noop", "r")
    for second in range(LENGTH + 250):
        executor.history.sample(run.started + second)
    assert len(run.history) == LENGTH == 600
    samples = history_samples(run)["Samples"]
    assert len(samples) == LENGTH
    assert at(samples[0]["Time"]) == pytest.approx(run.started + 250)
    assert at(samples[-1]["Time"]) == pytest.approx(run.started + LENGTH + 249)


async def test_the_rate_is_over_the_last_minute_and_the_eta_follows(executor: Executor) -> None:
    executor.configure("noop", "r", _config(num_chunks=1000))
    run = executor.get_run("noop", "r")
    t0 = run.started
    assert run_timing(run, t0 + 0.5).get("ChunksPerSecond") is None  # too soon to tell
    executor.add_data("noop", "r", [_chunk(i) for i in range(100)])
    await wait_for(lambda: run.counts[_SUCCEEDED] == 100, what="100 chunks to finish")
    # 100 finished within the first 10 s; sampled from then on, nothing more finishes
    for second in range(10, 200):
        executor.history.sample(t0 + second)
    timing = run_timing(run, t0 + 20)
    assert timing["ChunksPerSecond"] == pytest.approx(100 / 20)  # since the start
    assert timing["EtaSeconds"] == pytest.approx(900 / 5)
    assert timing["DurationSeconds"] == pytest.approx(20)
    assert "Ended" not in timing
    # a minute later the window holds no finished chunk: rate 0, and no ETA
    timing = run_timing(run, t0 + 100)
    assert timing["ChunksPerSecond"] == 0
    assert "EtaSeconds" not in timing
    # 60 more finish: over the last minute (from the sample a minute before)
    executor.add_data("noop", "r", [_chunk(i) for i in range(100, 160)])
    await wait_for(lambda: run.counts[_SUCCEEDED] == 160, what="60 more to finish")
    assert chunks_per_second(run, t0 + 130) == pytest.approx(60 / WINDOW)
    assert run_timing(run, t0 + 130)["EtaSeconds"] == pytest.approx(840 / 1.0)


async def test_no_eta_while_the_size_is_unknown_then_from_end_of_input(
    executor: Executor,
) -> None:
    executor.configure("noop", "r", _config(num_chunks=0))
    run = executor.get_run("noop", "r")
    executor.add_data("noop", "r", [_chunk(i) for i in range(10)])
    await wait_for(lambda: run.counts[_SUCCEEDED] == 10, what="10 chunks to finish")
    timing = run_timing(run, run.started + 5)
    assert timing["ChunksPerSecond"] == pytest.approx(2)
    assert "EtaSeconds" not in timing  # NumChunks 0 and input open: its size is unknown
    executor.end_of_input("noop", "r")
    await run.done.wait()
    timing = run_timing(run, run.started + 5)
    assert timing["EtaSeconds"] == 0  # all finished
    assert run.ended is not None
    assert at(timing["Ended"]) == pytest.approx(run.ended, abs=1e-3)
    assert timing["DurationSeconds"] == pytest.approx(run.ended - run.started, abs=1e-3)


async def test_the_sampler_leaves_a_run_alone_a_minute_after_it_ended(
    executor: Executor,
) -> None:
    executor.configure("noop", "r", _config(num_chunks=1))
    run = executor.get_run("noop", "r")
    executor.add_data("noop", "r", [_chunk(0)])
    await run.done.wait()
    assert run.ended is not None
    executor.history.sample(run.ended + 1)
    executor.history.sample(run.ended + WINDOW)
    executor.history.sample(run.ended + WINDOW + 10)
    executor.history.sample(run.ended + 3600)
    assert len(run.history) == 2
    assert chunks_per_second(run, run.ended + 3600) == 0


async def test_the_run_and_its_history_over_http(executor: Executor) -> None:
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", 4, MaxWorkers=1)
        body = (await client.get(run_path("gate", "r"))).json()
        assert at(body["Started"]) == pytest.approx(executor.get_run("gate", "r").started, abs=1e-3)
        assert "Ended" not in body
        assert body["DurationSeconds"] >= 0
        assert (await client.get(run_path("gate", "r") + "/history")).json() == {
            "IntervalSeconds": 1.0,
            "Samples": [],
        }
        assert (
            await add(client, "gate", "r", [{"ChunkID": f"c{i}"} for i in range(4)])
        ).status_code == 200
        await wait_for(lambda: gate.active == 1, what="a chunk to run")
        run = executor.get_run("gate", "r")
        executor.history.sample(run.started + 1)
        gate.release_all()
        await wait_run_done(client, "gate", "r")
        executor.history.sample(run.started + 2)
        history = (await client.get(run_path("gate", "r") + "/history")).json()
        assert history["IntervalSeconds"] == 1.0
        assert [(s["Finished"], s["Queued"], s["Running"]) for s in history["Samples"]] == [
            (0, 3, 1),
            (4, 0, 0),
        ]
        assert at(history["Samples"][0]["Time"]) == pytest.approx(run.started + 1)
        done = (await client.get(run_path("gate", "r"))).json()
        assert done["EtaSeconds"] == 0
        assert "Ended" in done
        listed = (await client.get("/processors/gate/runs")).json()
        assert listed[0]["Started"] == done["Started"]
        missing = await client.get(run_path("gate", "nope") + "/history")
        assert missing.status_code == 404


async def test_the_executor_samples_on_its_own(settings: Settings) -> None:
    async with Executor(settings) as executor:
        executor.configure("noop", "r", _config())
        run = executor.get_run("noop", "r")
        await wait_for(lambda: run.history is not None and len(run.history) >= 1, timeout=10)


async def test_a_recovered_run_keeps_its_start_and_end(settings: Settings) -> None:
    async with Executor(settings) as executor:
        executor.configure("noop", "r", _config(num_chunks=1))
        executor.add_data("noop", "r", [_chunk(0)])
        run = await executor.wait("noop", "r", timeout=10)
        started, ended = run.started, run.ended
        await executor.commit()
    async with Executor(settings) as executor:
        await executor.recovered()
        run = executor.get_run("noop", "r")
        assert (run.started, run.ended) == (started, ended)


async def test_the_client_reads_the_history_and_the_timing(executor: Executor) -> None:
    executor.configure("noop", "r", _config())
    executor.history.sample(executor.get_run("noop", "r").started + 1)
    async with AsyncClient(
        "http://executor", transport=httpx.ASGITransport(app=create_app(executor=executor))
    ) as wiz:
        history = await wiz.history("noop", "r")
        assert len(history.Samples) == 1
        assert history.IntervalSeconds == 1.0
        run = await wiz.run("noop", "r")
        assert run.Started is not None
        assert run.DurationSeconds is not None


def _config(num_chunks: int = 0) -> Configuration:
    return Configuration.model_validate({"ExpectedData": {"NumChunks": num_chunks}})


def _chunk(i: int) -> Data:
    return Data(ChunkID=f"c{i}")


async def test_cancelled_chunks_are_no_throughput(executor: Executor) -> None:
    """A cancel fails the waiting chunks at once, unrun: they are not chunks processed,
    so they neither raise `ChunksPerSecond` (a burst at the cancel) nor count as
    finished in the history; a retry that runs them again changes neither."""
    gate = Gate()
    executor.registry.register(gate_processor(gate))
    async with asgi_client(executor) as client:
        await configure(client, "gate", "r", 0, MaxWorkers=1)
        assert (
            await add(client, "gate", "r", [{"ChunkID": f"c{i}"} for i in range(20)])
        ).is_success
        await wait_for(lambda: gate.active == 1, what="a chunk to run")
        run = executor.get_run("gate", "r")
        executor.history.sample(run.started + 1)
        assert (await client.post(run_path("gate", "r") + "/cancel")).json()["Cancelled"] == 19
        executor.history.sample(run.started + 2)
        assert chunks_per_second(run, run.started + 10) == 0
        assert run.history is not None
        assert {s[1] for s in run.history.samples()} == {0}  # (the timer's samples too)
        gate.release_all()
        await wait_run_done(client, "gate", "r")
        assert chunks_per_second(run, run.started + 10) == pytest.approx(1 / 10)
        assert (await client.post(run_path("gate", "r") + "/retry")).json()["Chunks"] == 19
        await wait_run_done(client, "gate", "r")
        assert chunks_per_second(run, run.started + 10) == pytest.approx(20 / 10)


async def test_cancelled_chunks_retried_after_a_restart_count_once(settings: Settings) -> None:
    """A finished run comes back from a restart stored (its chunks in the journal only);
    a retry reads them back: the chunks a cancel failed are counted from what it reads,
    so the run's processed count stays its finished chunks, never above."""
    gate = Gate()
    async with Executor(settings) as executor:
        executor.registry.register(gate_processor(gate))
        async with asgi_client(executor) as client:
            await configure(client, "gate", "r", 0, MaxWorkers=1)
            assert (
                await add(client, "gate", "r", [{"ChunkID": f"c{i}"} for i in range(5)])
            ).is_success
            await wait_for(lambda: gate.active == 1, what="a chunk to run")
            assert (await client.post(run_path("gate", "r") + "/cancel")).json()["Cancelled"] == 4
            gate.release_all()
            await wait_run_done(client, "gate", "r")
    again = Gate()
    again.release_all()
    async with Executor(settings) as executor:
        executor.registry.register(gate_processor(again))
        await executor.recovered()
        async with asgi_client(executor) as client:
            assert (await client.post(run_path("gate", "r") + "/retry")).json()["Chunks"] == 4
            assert (await wait_run_done(client, "gate", "r"))["CurrentState"] == "SUCCEEDED"
        run = executor.get_run("gate", "r")
        assert run.cancelled_chunks == 0
        assert processed_count(run) == 5
