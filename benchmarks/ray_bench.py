"""Scenario 7: the RAY work model on a local Ray runtime (127.0.0.1, 2 CPUs).

One child process holds one executor (ephemeral, in process, no HTTP) whose first RAY
run starts the Ray runtime, and measures, in this order:

- **cold first chunk**: from Configure + AddData of one noop chunk to its result, Ray
  not started yet (the runtime and the run's actors start on the way);
- **warm first chunk**: the same for a new run on the running runtime (its actors start);
- per repetition, interleaved: **noop chunks/s** through the executor (a run of
  MaxWorkers 2, BatchSize 100, its actors up), a **raw Ray ActorPool** (2 actors, the
  same micro-batches of 100 with two in flight per actor, no executor), and **one Ray
  call per chunk** (the same 2 actors, the naive way); then a **CPU-bound** processor
  (~1 ms of pure Python per chunk): RAY with 2 actors against POOL with 2 workers.

Targets: RAY at least 0.8 of raw Ray on noop; RAY at least 1.7 times POOL on the
CPU-bound processor.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from ._child import params_from_argv, report, run_child
from ._stats import Summary

NOOP_CHUNKS, QUICK_NOOP_CHUNKS = 100_000, 20_000
NAIVE_CHUNKS, QUICK_NAIVE_CHUNKS = 10_000, 3_000
CPU_CHUNKS, QUICK_CPU_CHUNKS = 4_000, 1_500
BATCH = 100
WARM = 4
"""Chunks run before the measured ones, so that the run's workers are up."""


def run(quick: bool, reps: int, log: Any) -> dict[str, Any]:
    params = {
        "reps": reps,
        "noop": QUICK_NOOP_CHUNKS if quick else NOOP_CHUNKS,
        "naive": QUICK_NAIVE_CHUNKS if quick else NAIVE_CHUNKS,
        "cpu": QUICK_CPU_CHUNKS if quick else CPU_CHUNKS,
    }
    log(f"ray: {params}")
    raw = run_child("benchmarks.ray_bench", params, timeout=1800)
    summary = {
        key: Summary.of(values)
        for key, values in raw["samples"].items()
        if isinstance(values, list)
    }
    return {"params": params, "raw": raw, "summary": summary}


# -- the child -------------------------------------------------------------------------


class _Raw:
    """The raw Ray actor of the comparison: a method that answers each item."""

    def batch(self, items: list[Any]) -> list[Any]:
        return list(items)

    def one(self, item: Any) -> Any:
        return item


async def _raw_pool(actors: list[Any], n: int, batch: int) -> float:
    """Chunks/s of `n` items through `actors`, `batch` per call, two calls in flight per
    actor (what the RAY model does)."""
    items = [{"i": i} for i in range(n)]
    queue = [items[i : i + batch] for i in range(0, n, batch)]
    started = time.perf_counter()

    async def lane(actor: Any) -> None:
        while queue:
            await actor.batch.remote(queue.pop())

    await asyncio.gather(*(lane(a) for a in actors for _ in range(2)))
    return n / (time.perf_counter() - started)


async def _naive(actors: list[Any], n: int) -> float:
    """Chunks/s with one Ray call per chunk, 8 calls in flight per actor."""
    left = list(range(n))
    started = time.perf_counter()

    async def lane(actor: Any) -> None:
        while left:
            await actor.one.remote({"i": left.pop()})

    await asyncio.gather(*(lane(a) for a in actors for _ in range(8)))
    return n / (time.perf_counter() - started)


async def _executor_run(ex: Any, proc: str, run_id: str, n: int, model: str) -> tuple[float, float]:
    """(chunks/s, seconds) of a run of `n` chunks whose workers are already up."""
    from wiz_executor import Configuration, DataChunkState, ExpectedData, WorkModel
    from wiz_executor.api import Data
    from wiz_executor.wire import decode_chunks

    config = Configuration(ExpectedData=ExpectedData(NumChunks=n + WARM))
    config.ExecutorConfig.WorkModel = WorkModel(model)
    config.ExecutorConfig.MaxWorkers = 2
    ex.configure(proc, run_id, config)
    # Chunks waiting make a RAY run start its actors (as many as chunks wait, up to 2).
    ex.add_data(proc, run_id, [Data(ChunkID=f"warm{i}", RawData={"i": -1}) for i in range(WARM)])
    run = ex.runs.get(proc, run_id)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until its workers (both RAY actors) are up
        up = run.counts[DataChunkState.SUCCEEDED] == WARM
        if up and (model != "RAY" or len(run.sched.actors) == 2):
            break
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError(f"run {run_id}: its workers did not start within 120 s")
    bodies = [
        (
            "["
            + ",".join(
                f'{{"ChunkID":"c{i}","RawData":{{"i":{i}}}}}'
                for i in range(start, min(start + 1000, n))
            )
            + "]"
        ).encode()
        for start in range(0, n, 1000)
    ]
    started = time.perf_counter()
    for body in bodies:  # decoded as the server decodes AddData bodies
        ex.add_chunks(proc, run_id, decode_chunks(body))
    await ex.wait(proc, run_id, timeout=1200)
    seconds = time.perf_counter() - started
    return n / seconds, seconds


async def _first_chunk(ex: Any, run_id: str) -> float:
    from wiz_executor import Configuration, ExpectedData, WorkModel
    from wiz_executor.api import Data

    started = time.perf_counter()
    config = Configuration(ExpectedData=ExpectedData(NumChunks=1))
    config.ExecutorConfig.WorkModel = WorkModel.RAY
    ex.configure("noop", run_id, config)
    ex.add_data("noop", run_id, [Data(ChunkID="c", RawData={"i": 0})])
    await ex.wait("noop", run_id, timeout=300)
    return time.perf_counter() - started


ROOT = Path(__file__).resolve().parent.parent


async def child(params: dict[str, Any]) -> dict[str, Any]:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ["PYTHONPATH"] = f"{ROOT}:{ROOT / 'src'}"  # the Ray workers import these
    import tempfile

    from wiz_executor import Executor, Settings

    from ._ray_procs import CpuBound

    samples: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        samples.setdefault(key, []).append(value)

    with tempfile.TemporaryDirectory() as tmp:
        # --max-workers bounds chunks in flight: room for 2 actors x 2 batches of 100.
        settings = Settings(data_dir=Path(tmp), ephemeral=True, ray_num_cpus=2, max_workers=1024)
        async with Executor(settings) as ex:
            ex.registry.register(CpuBound)
            add("cold_first_chunk_s", await _first_chunk(ex, "cold"))
            add("warm_first_chunk_s", await _first_chunk(ex, "warm"))
            import ray

            raw_cls = ray.remote(num_cpus=1)(_Raw)
            for rep in range(params["reps"]):
                rate, _ = await _executor_run(ex, "noop", f"noop-{rep}", params["noop"], "RAY")
                add("ray_noop_per_s", rate)
                actors = [raw_cls.remote() for _ in range(2)]
                await asyncio.gather(*(a.one.remote(0) for a in actors))
                raw = await _raw_pool(actors, params["noop"], BATCH)
                add("raw_noop_per_s", raw)
                add("ray_over_raw", rate / raw)
                add("naive_noop_per_s", await _naive(actors, params["naive"]))
                for actor in actors:
                    ray.kill(actor)
                ray_cpu, _ = await _executor_run(ex, "cpu-bound", f"cr-{rep}", params["cpu"], "RAY")
                pool_cpu, _ = await _executor_run(
                    ex, "cpu-bound", f"cp-{rep}", params["cpu"], "POOL"
                )
                add("ray_cpu_per_s", ray_cpu)
                add("pool_cpu_per_s", pool_cpu)
                add("ray_over_pool_cpu", ray_cpu / pool_cpu)
    return {"samples": samples}


if __name__ == "__main__":
    report(asyncio.run(child(params_from_argv())))
