"""Scenario 3: chunks/s through the executor's API without HTTP, against a bare asyncio
loop doing the same work model with nothing else, as the ceiling.

The work is noop's: hand back the chunk's data. The executor side adds each chunk with
its own `add_chunks` call (as one AddData request would) and waits for the run to
complete; it pays for everything the executor does per chunk (bookkeeping, state
changes, limits, a processor instance under LIFETIME, the processor context). The bare
loops are the textbook forms of the two models on the same event loop:

- LIFETIME: a semaphore taken before each chunk's task starts, released when it ends
  (the structure the executor uses; the stricter ceiling);
- POOL: MaxWorkers consumers of one `asyncio.Queue`.

For reference the textbook LIFETIME loop is measured too: a task per chunk that enters
`async with semaphore` itself (every waiting chunk is then a task already started).

Executor and bare measurements alternate, in one process, on uvloop (the server's loop).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wiz_executor import (
    Configuration,
    Executor,
    ExecutorConfig,
    ExpectedData,
    Settings,
    State,
    WorkModel,
)
from wiz_executor.api import DataFormat
from wiz_executor.runs import Chunk

from ._child import params_from_argv, report, run_child, run_on_uvloop
from ._stats import Summary

MODELS = ("LIFETIME", "POOL")


async def _work(data: Any) -> Any:
    return data


async def bare_lifetime(items: list[Any], workers: int) -> list[Any]:
    """One task per item, started once the semaphore grants a slot."""
    sem = asyncio.Semaphore(workers)
    results: list[Any] = []
    all_done = asyncio.get_running_loop().create_future()
    left = len(items)

    def finished(task: asyncio.Task[Any]) -> None:
        nonlocal left
        sem.release()
        results.append(task.result())
        left -= 1
        if not left:
            all_done.set_result(None)

    for item in items:
        await sem.acquire()
        asyncio.create_task(_work(item)).add_done_callback(finished)
        await asyncio.sleep(0)
    await all_done
    return results


async def textbook_lifetime(items: list[Any], workers: int) -> list[Any]:
    """One task per item, each entering `async with semaphore` itself."""
    sem = asyncio.Semaphore(workers)

    async def one(item: Any) -> Any:
        async with sem:
            return await _work(item)

    tasks = []
    for item in items:
        tasks.append(asyncio.create_task(one(item)))
        await asyncio.sleep(0)
    return await asyncio.gather(*tasks)


async def bare_pool(items: list[Any], workers: int) -> list[Any]:
    """`workers` consumers of one queue."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    results: list[Any] = []
    all_done = asyncio.get_running_loop().create_future()
    total = len(items)

    async def consume() -> None:
        while True:
            item = await queue.get()
            results.append(await _work(item))
            if len(results) == total:
                all_done.set_result(None)

    consumers = [asyncio.create_task(consume()) for _ in range(workers)]
    for item in items:
        queue.put_nowait(item)
        await asyncio.sleep(0)
    await all_done
    for task in consumers:
        task.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    return results


async def executor_run(ex: Executor, model: str, items: list[Chunk], workers: int, n: int) -> None:
    run_id = f"r{n}"
    ex.configure(
        "noop",
        run_id,
        Configuration(
            ExpectedData=ExpectedData(NumChunks=len(items)),
            ExecutorConfig=ExecutorConfig(MaxWorkers=workers, WorkModel=WorkModel(model)),
        ),
    )
    add = ex.add_chunks
    for chunk in items:
        add("noop", run_id, [chunk])
        await asyncio.sleep(0)  # the next chunk comes in the next loop iteration
    run = await ex.wait("noop", run_id)
    if run.state is not State.SUCCEEDED:
        raise RuntimeError(f"in-process run ended {run.state.value}")
    await ex.delete_run("noop", run_id)


def _chunks(n: int, rep: int) -> list[Chunk]:
    return [
        Chunk(f"c{rep}-{i}", f"c{rep}-{i}-out", DataFormat.RAW, {"i": i}, "", "", True)
        for i in range(n)
    ]


async def measure(n: int, workers: int, reps: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(max_workers=64, max_pending=10 * n, data_dir=Path(tmp))
        async with Executor(settings) as ex:
            for rep in range(reps + 1):  # the first round warms up and is not counted
                for model in MODELS:
                    chunks = _chunks(n, rep)
                    gc.collect()
                    start = time.perf_counter()
                    await executor_run(ex, model, chunks, workers, rep * 10 + len(rates))
                    executor_rate = n / (time.perf_counter() - start)

                    items = [c.raw_data for c in chunks]
                    bare = bare_lifetime if model == "LIFETIME" else bare_pool
                    gc.collect()
                    start = time.perf_counter()
                    results = await bare(items, workers)
                    bare_rate = n / (time.perf_counter() - start)
                    assert len(results) == n
                    if rep:
                        rates.setdefault(f"{model}/executor", []).append(executor_rate)
                        rates.setdefault(f"{model}/bare", []).append(bare_rate)
                        rates.setdefault(f"{model}/ratio", []).append(executor_rate / bare_rate)
                    if model == "LIFETIME":
                        gc.collect()
                        start = time.perf_counter()
                        results = await textbook_lifetime(items, workers)
                        textbook_rate = n / (time.perf_counter() - start)
                        assert len(results) == n
                        if rep:
                            rates.setdefault("LIFETIME/textbook", []).append(textbook_rate)
                            rates.setdefault("LIFETIME/textbook_ratio", []).append(
                                executor_rate / textbook_rate
                            )
    return rates


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    n = 20_000 if quick else 50_000
    workers = 8
    raw = run_child("benchmarks.in_process", {"n": n, "workers": workers, "reps": reps})
    log("  in-process: done")
    return {
        "n": n,
        "workers": workers,
        "raw": raw,
        "summary": {key: Summary.of(values) for key, values in raw.items()},
    }


def _main() -> None:
    p = params_from_argv()
    report(run_on_uvloop(measure(p["n"], p["workers"], p["reps"])))


if __name__ == "__main__":
    sys.exit(_main())
