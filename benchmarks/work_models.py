"""Scenario 1: LIFETIME against POOL on the seed's criteria.

For each processor (noop, and one with a 50 ms / 20 MB `setup`), each per-run worker
limit (MaxWorkers 1, 8, 64) and each work model, a fresh process runs the executor
in-process (no HTTP, so only the work model differs) through four phases:

1. *start-up*: a new run receives one chunk; the time until its result is the
   time to first result (what a new run pays before it produces anything);
2. *latency*: MaxWorkers clients each send a chunk and wait for its result before
   sending the next, so a worker is always free: the latency of a new chunk, without
   queueing (p50, p99);
3. *load*: a burst of chunks, sent in batches of 100; chunks/s until the last is done,
   and the CPU time the process spent per 1000 chunks;
4. *rest*: the run stays open with nothing to do (once set-ups still in flight after
   the burst have finished); the RSS it holds, and the CPU it burns per idle second.

RSS figures are above the same process's RSS with the executor started and no run
configured; peak RSS is the kernel's high-water mark over all phases.
Repetitions interleave the two models, so machine noise hits both alike.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from wiz_executor import Configuration, Executor, ExecutorConfig, ExpectedData, Settings, WorkModel
from wiz_executor.api import DataFormat
from wiz_executor.runs import FINISHED, SUCCEEDED, Chunk, Run

from ._child import params_from_argv, report, run_child, run_on_uvloop
from ._processors import PROCESSORS, registry
from ._stats import Summary, percentile

MODELS = ("LIFETIME", "POOL")
WORKERS = (1, 8, 64)

METRICS = (
    "first_result_ms",
    "p50_ms",
    "p99_ms",
    "chunks_per_s",
    "cpu_ms_per_1k",
    "rest_rss_mb",
    "peak_rss_mb",
    "rest_cpu_ms_per_s",
)


def sizes(proc: str, workers: int, quick: bool) -> tuple[int, int]:
    """Chunks for the latency phase and for the load burst."""
    if proc == "noop":
        return (600, 3000) if quick else (3000, 20000)
    # 50 ms of set-up per instance: keep LIFETIME at MaxWorkers 1 to about a second a phase.
    per_worker = 3 if quick else 8
    return max(10, per_worker * workers), max(10, per_worker * 2 * workers)


class _Tracker:
    """A run-map listener noting when each chunk finishes, waking whoever waits on it."""

    def __init__(self) -> None:
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.finished = 0
        self.failed = 0
        self.target = 0
        self.all_done = asyncio.Event()

    def __call__(self, run: Run, chunk: Chunk | None) -> None:
        if chunk is None or chunk.state not in FINISHED:
            return
        now = time.perf_counter()
        self.finished += 1
        if chunk.state is not SUCCEEDED:
            self.failed += 1
        waiter = self.waiters.pop(chunk.id, None)
        if waiter is not None:
            waiter.set_result(now)
        if self.finished == self.target:
            self.all_done.set()


def _chunk(chunk_id: str, i: int) -> Chunk:
    return Chunk(chunk_id, chunk_id + "-out", DataFormat.RAW, {"i": i}, "", "", True)


async def _settle(quiet_ms: float = 2.0, window: float = 0.1, limit: float = 10.0) -> None:
    """Wait until the process uses under `quiet_ms` of CPU per `window` seconds."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        cpu0 = time.process_time()
        await asyncio.sleep(window)  # sampling the CPU clock over a window
        if (time.process_time() - cpu0) * 1000 < quiet_ms:
            return


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


async def measure(proc: str, model: str, workers: int, quick: bool) -> dict[str, Any]:
    n_latency, n_load = sizes(proc, workers, quick)
    cls = PROCESSORS[proc]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            max_workers=64,
            max_pending=1_000_000,
            work_model=WorkModel(model),
            data_dir=Path(tmp),
        )
        async with Executor(settings, registry()) as ex:
            tracker = _Tracker()
            ex.runs.listeners.append(tracker)
            loop = asyncio.get_running_loop()
            gc.collect()
            rss_idle = _rss()

            config = Configuration(
                ExpectedData=ExpectedData(NumChunks=0),
                ExecutorConfig=ExecutorConfig(MaxWorkers=workers, WorkModel=WorkModel(model)),
            )
            ex.configure(cls.id, "bench", config)

            async def one(chunk_id: str, i: int) -> float:
                done = loop.create_future()
                tracker.waiters[chunk_id] = done
                start = time.perf_counter()
                ex.add_chunks(cls.id, "bench", [_chunk(chunk_id, i)])
                return await done - start

            # 1. start-up: the first chunk of a new run.
            first_result = await one("first", 0)

            # 2. latency: `workers` closed-loop clients, so a worker is always free.
            latencies: list[float] = []

            async def client(k: int, count: int) -> None:
                for i in range(count):
                    latencies.append(await one(f"lat-{k}-{i}", i))

            per_client = max(1, n_latency // workers)
            async with asyncio.TaskGroup() as tg:
                for k in range(workers):
                    tg.create_task(client(k, per_client))

            # 3. load: a burst in batches of 100.
            chunks = [_chunk(f"load-{i}", i) for i in range(n_load)]
            tracker.target = tracker.finished + n_load
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i in range(0, n_load, 100):
                ex.add_chunks(cls.id, "bench", chunks[i : i + 100])
            await tracker.all_done.wait()
            load_s = time.perf_counter() - t0
            load_cpu = time.process_time() - cpu0
            del chunks

            # 4. rest: the run stays open with nothing to do. Instances still being set
            # up after the burst (POOL starts workers as chunks queue) finish first.
            await _settle()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(0.5 if quick else 1.0)  # idling is what is measured here
            rest_s = time.perf_counter() - t0
            rest_cpu = time.process_time() - cpu0
            rss_rest = _rss()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

            if tracker.failed:
                raise RuntimeError(f"{tracker.failed} chunks failed")
            await ex.delete_run(cls.id, "bench")
    mb = 2**20
    return {
        "first_result_ms": first_result * 1000,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "chunks_per_s": n_load / load_s,
        "cpu_ms_per_1k": load_cpu * 1000 / n_load * 1000,
        "rest_rss_mb": (rss_rest - rss_idle) / mb,
        "peak_rss_mb": (peak - rss_idle) / mb,
        "rest_cpu_ms_per_s": rest_cpu * 1000 / rest_s,
        "idle_rss_mb": rss_idle / mb,
        "n_latency": len(latencies),
        "n_load": n_load,
    }


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    """All configurations, `reps` times, LIFETIME and POOL back to back."""
    raw: dict[str, list[dict[str, Any]]] = {}
    for rep in range(reps):
        for proc in PROCESSORS:
            for workers in WORKERS:
                for model in MODELS:
                    params = {"proc": proc, "model": model, "workers": workers, "quick": quick}
                    result = run_child("benchmarks.work_models", params)
                    raw.setdefault(f"{proc}/{workers}/{model}", []).append(result)
        log(f"  work models: repetition {rep + 1}/{reps} done")
    summary = {
        key: {m: Summary.of([r[m] for r in results]) for m in METRICS}
        for key, results in raw.items()
    }
    return {"raw": raw, "summary": summary}


def _main() -> None:
    p = params_from_argv()
    report(run_on_uvloop(measure(p["proc"], p["model"], p["workers"], p["quick"])))


if __name__ == "__main__":
    sys.exit(_main())
