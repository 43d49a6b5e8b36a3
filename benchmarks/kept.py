"""Scenario 6: memory stays flat while finished runs are kept (not deleted).

A fresh process runs a durable executor (the journal in a temporary folder, as shipped)
and feeds it noop runs of 10,000 small chunks each (`{"ChunkID": "k-123", "RawData":
{"i": 123}}`, decoded from JSON batches of 1,000 as the server decodes them), a few runs
at a time, none ever deleted: 5,000,000 chunks in all (1,000,000 with `--quick`). A
finished run's chunks leave RAM once the journal holds them (only the run's header
stays), so the RSS after all of them should be close to the RSS after the first
100,000: the target is a growth within 100 MB. In process, no HTTP, so that what is
measured is the executor's memory, not a client's.
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

from wiz_executor import Configuration, Executor, ExpectedData, Settings, State
from wiz_executor.runs import Run
from wiz_executor.wire import decode_chunks

from ._child import params_from_argv, report, run_child, run_on_uvloop
from ._machine import flags
from ._stats import Summary

CHUNKS, QUICK_CHUNKS = 5_000_000, 1_000_000
RUN_SIZE = 10_000
BATCH = 1_000
IN_FLIGHT = 4
"""Runs fed at once: enough to keep the workers busy while one finishes."""
BASELINE = 100_000
"""Finished chunks after which the baseline RSS is read."""
TARGET_MB = 100.0


def settings(data_dir: Path = Path("wiz-data")) -> Settings:
    return Settings(data_dir=data_dir)


def _body(batch_index: int) -> bytes:
    start = batch_index * BATCH
    items = [f'{{"ChunkID":"k-{i}","RawData":{{"i":{i}}}}}' for i in range(start, start + BATCH)]
    return ("[" + ",".join(items) + "]").encode()


async def _finished_and_stored(ex: Executor, run: Run) -> None:
    await ex.wait(run.proc_id, run.run_id, timeout=600)
    if run.state is not State.SUCCEEDED:
        raise RuntimeError(f"run {run.run_id} ended {run.state.value}")
    # Its chunks leave RAM once the journal has committed them (no event says so).
    while not run.stored:  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def measure(n: int) -> dict[str, Any]:
    proc = psutil.Process()

    def rss() -> int:
        gc.collect()
        return int(proc.memory_info().rss)

    bodies = [_body(b) for b in range(RUN_SIZE // BATCH)]
    config = Configuration(ExpectedData=ExpectedData(NumChunks=RUN_SIZE))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        async with Executor(settings(Path(tmp))) as ex:
            in_flight: list[Run] = []
            finished = 0
            baseline = 0
            for r in range(n // RUN_SIZE):
                run, _ = ex.configure("noop", f"kept-{r}", config)
                for body in bodies:
                    ex.add_chunks("noop", run.run_id, decode_chunks(body))
                    await asyncio.sleep(0)  # let workers run between batches
                in_flight.append(run)
                if len(in_flight) >= IN_FLIGHT:
                    await _finished_and_stored(ex, in_flight.pop(0))
                    finished += RUN_SIZE
                    if not baseline and finished >= BASELINE:
                        baseline = rss()
            for run in in_flight:
                await _finished_and_stored(ex, run)
            end = rss()
            runs_kept = len(ex.runs)
    seconds = time.perf_counter() - started
    return {
        "chunks": n,
        "runs_kept": runs_kept,
        "baseline_mb": baseline / 2**20,
        "end_mb": end / 2**20,
        "growth_mb": (end - baseline) / 2**20,
        "seconds": seconds,
    }


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    n = QUICK_CHUNKS if quick else CHUNKS
    raw = [run_child("benchmarks.kept", {"n": n}, timeout=900) for _ in range(reps)]
    log("  kept: done")
    metrics = ("baseline_mb", "end_mb", "growth_mb", "seconds")
    return {
        "chunks": n,
        "flags": flags(settings()),
        "raw": raw,
        "summary": {m: Summary.of([r[m] for r in raw]) for m in metrics},
    }


def _main() -> None:
    p = params_from_argv()
    report(run_on_uvloop(measure(p["n"])))


if __name__ == "__main__":
    sys.exit(_main())
