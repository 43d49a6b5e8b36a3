"""Scenario 1: LIFETIME against POOL on the seed's criteria.

For each processor (noop, and one with a 50 ms / 20 MB `setup`), each per-run worker
limit (MaxWorkers 1, 8, 64) and each work model, a fresh process runs the executor
in-process (no HTTP, so only the work model differs) through four phases:

1. *start-up*: a new run receives one chunk; the time until its result is the
   time to first result (what a new run pays before it produces anything);
2. *latency*: MaxWorkers clients each send a chunk and wait for its result before
   sending the next, so a worker is always free: the latency of a new chunk, without
   queueing (p50, p99);
3. *load*: a burst of chunks, sent in batches of 100, until the last is done;
4. *rest*: the run stays open with nothing to do (once set-ups still in flight after
   the burst have finished); the RSS it holds, and the CPU it burns per idle second;
5. *rate*: more bursts like the first, on the same run, until the bursts together
   took at least `MIN_WINDOW` (a burst of noop chunks ends in tens of milliseconds):
   chunks/s and the CPU time per 1000 chunks over all of them. They come after the rest
   phase so that the RSS at rest counts the same chunks for both models.

RSS figures are above the same process's RSS with the executor started and no run
configured. Peak RSS is the highest RSS from that reading to the one at rest: sampled
every few ms by the parent process (`_rss`), and never below a reading the child took
(so never below the RSS at rest).
Repetitions interleave the two models, so machine noise hits both alike.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from wiz_executor import Configuration, Executor, ExecutorConfig, ExpectedData, Settings, WorkModel
from wiz_executor.api import DataFormat
from wiz_executor.runs import FINISHED, SUCCEEDED, Chunk, Run

from ._child import params_from_argv, report, run_child_sampled, run_on_uvloop
from ._machine import flags
from ._processors import PROCESSORS, registry
from ._rss import peak_of
from ._stats import MIN_WINDOW, Summary, percentile

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
    "load_window_s",
    "rest_window_s",
)

MAX_WORKERS = 64
MAX_PENDING = 1_000_000
"""The executor-wide settings of every measurement (work model and MaxWorkers vary per
row): 64 executor-wide workers (the default) and room for every chunk of a burst, so no
burst is refused with 429 (the default bound is 100,000 waiting chunks)."""


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
            max_workers=MAX_WORKERS,
            max_pending=MAX_PENDING,
            work_model=WorkModel(model),
            data_dir=Path(tmp),
            ephemeral=True,  # work model against work model; the journal is `durability`'s
        )
        async with Executor(settings, registry()) as ex:
            tracker = _Tracker()
            ex.runs.listeners.append(tracker)
            loop = asyncio.get_running_loop()
            gc.collect()
            rss_idle = _rss()
            t_idle = time.monotonic()

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

            async def burst(chunks: list[Chunk]) -> tuple[float, float]:
                """Add `chunks` in batches of 100, wait for the last; (seconds, CPU s)."""
                tracker.target = tracker.finished + len(chunks)
                tracker.all_done.clear()
                cpu0, t0 = time.process_time(), time.perf_counter()
                for i in range(0, len(chunks), 100):
                    ex.add_chunks(cls.id, "bench", chunks[i : i + 100])
                await tracker.all_done.wait()
                return time.perf_counter() - t0, time.process_time() - cpu0

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
            load_s, load_cpu = await burst(chunks)
            del chunks

            # 4. rest: the run stays open with nothing to do. Instances still being set
            # up after the burst (POOL starts workers as chunks queue) finish first.
            await _settle()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(0.5 if quick else 1.0)  # idling is what is measured here
            rest_s = time.perf_counter() - t0
            rest_cpu = time.process_time() - cpu0
            rss_rest = _rss()
            t_rest = time.monotonic()

            # 5. rate: more bursts until they add up to MIN_WINDOW of work.
            load_chunks = n_load
            k = 0
            while load_s < MIN_WINDOW:
                k += 1
                chunks = [_chunk(f"load{k}-{i}", i) for i in range(n_load)]
                seconds, cpu = await burst(chunks)
                del chunks
                load_s += seconds
                load_cpu += cpu
                load_chunks += n_load

            if tracker.failed:
                raise RuntimeError(f"{tracker.failed} chunks failed")
            await ex.delete_run(cls.id, "bench")
    mb = 2**20
    return {
        "first_result_ms": first_result * 1000,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "chunks_per_s": load_chunks / load_s,
        "cpu_ms_per_1k": load_cpu * 1000 / load_chunks * 1000,
        "rest_rss_mb": (rss_rest - rss_idle) / mb,
        "rest_cpu_ms_per_s": rest_cpu * 1000 / rest_s,
        "load_window_s": load_s,
        "rest_window_s": rest_s,
        "idle_rss_mb": rss_idle / mb,
        "n_latency": len(latencies),
        "n_load": load_chunks,
        # For the parent, which samples this process's RSS: the window of the peak,
        # and the readings taken in it.
        "rss_idle_bytes": rss_idle,
        "rss_rest_bytes": rss_rest,
        "t_idle": t_idle,
        "t_rest": t_rest,
    }


def with_peak(result: dict[str, Any], samples: list[tuple[float, int]]) -> dict[str, Any]:
    """`result` with `peak_rss_mb`: the highest RSS from the child's idle reading to its
    reading at rest, sampled or read, on the same base as `rest_rss_mb`."""
    idle, rest = result["rss_idle_bytes"], result["rss_rest_bytes"]
    peak = peak_of(samples, (idle, rest), result["t_idle"], result["t_rest"])
    return {**result, "peak_rss_mb": (peak - idle) / 2**20, "rss_samples": len(samples)}


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    """All configurations, `reps` times, LIFETIME and POOL back to back."""
    raw: dict[str, list[dict[str, Any]]] = {}
    for rep in range(reps):
        for proc in PROCESSORS:
            for workers in WORKERS:
                for model in MODELS:
                    params = {"proc": proc, "model": model, "workers": workers, "quick": quick}
                    result = with_peak(*run_child_sampled("benchmarks.work_models", params))
                    raw.setdefault(f"{proc}/{workers}/{model}", []).append(result)
        log(f"  work models: repetition {rep + 1}/{reps} done")
    summary = {
        key: {m: Summary.of([r[m] for r in results]) for m in METRICS}
        for key, results in raw.items()
    }
    flags_used = flags(Settings(max_workers=MAX_WORKERS, max_pending=MAX_PENDING, ephemeral=True))
    return {"raw": raw, "summary": summary, "flags": flags_used}


def _main() -> None:
    p = params_from_argv()
    report(run_on_uvloop(measure(p["proc"], p["model"], p["workers"], p["quick"])))


if __name__ == "__main__":
    sys.exit(_main())
