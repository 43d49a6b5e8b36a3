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
Each measurement repeats its chunks (through a new run each time, for the executor)
until the rounds add up to `MIN_WINDOW` seconds: one round of 50,000 chunks takes the
bare loops well under that. The settings are the defaults but for `max_pending`, raised
so that no chunk of a round is refused.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
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
from ._machine import flags
from ._stats import MIN_WINDOW, Summary

MODELS = ("LIFETIME", "POOL")


def settings(n: int, data_dir: Path = Path("wiz-data")) -> Settings:
    """The defaults, but room for ten rounds of `n` chunks waiting at once."""
    # --ephemeral: this measures the core's scheduling, not the journal (see durability).
    return Settings(max_pending=10 * n, data_dir=data_dir, ephemeral=True)


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


async def timed(once: Callable[[int], Awaitable[float]]) -> tuple[int, float]:
    """Call `once(k)` for k = 0, 1, … until the seconds it returns (the time of its
    measured part) add up to MIN_WINDOW: (rounds, seconds). Each round does `n` chunks,
    and at the executor's speed one round can take well under MIN_WINDOW."""
    rounds, seconds = 0, 0.0
    while seconds < MIN_WINDOW:
        seconds += await once(rounds)
        rounds += 1
    return rounds, seconds


async def measure(n: int, workers: int, reps: int) -> dict[str, Any]:
    rates: dict[str, list[float]] = {}
    runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with Executor(settings(n, Path(tmp))) as ex:

            async def executor_once(model: str, k: int) -> float:
                nonlocal runs
                runs += 1
                chunks = _chunks(n, runs)
                gc.collect()
                start = time.perf_counter()
                await executor_run(ex, model, chunks, workers, runs)
                return time.perf_counter() - start

            async def bare_once(
                loop: Callable[[list[Any], int], Awaitable[list[Any]]], items: list[Any], k: int
            ) -> float:
                gc.collect()
                start = time.perf_counter()
                results = await loop(items, workers)
                elapsed = time.perf_counter() - start
                assert len(results) == n
                return elapsed

            def record(key: str, rounds: int, seconds: float) -> float:
                rate = rounds * n / seconds
                rates.setdefault(key, []).append(rate)
                rates.setdefault(f"{key}_window_s", []).append(seconds)
                return rate

            items = [c.raw_data for c in _chunks(n, 0)]
            for rep in range(reps + 1):  # the first round warms up and is not counted
                for model in MODELS:
                    bare_loop = bare_lifetime if model == "LIFETIME" else bare_pool
                    executor = await timed(partial(executor_once, model))
                    bare = await timed(partial(bare_once, bare_loop, items))
                    textbook = None
                    if model == "LIFETIME":
                        textbook = await timed(partial(bare_once, textbook_lifetime, items))
                    if not rep:
                        continue
                    executor_rate = record(f"{model}/executor", *executor)
                    bare_rate = record(f"{model}/bare", *bare)
                    rates.setdefault(f"{model}/ratio", []).append(executor_rate / bare_rate)
                    if textbook is not None:
                        textbook_rate = record("LIFETIME/textbook", *textbook)
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
        "flags": flags(settings(n)),
        "raw": raw,
        "summary": {key: Summary.of(values) for key, values in raw.items()},
    }


def _main() -> None:
    p = params_from_argv()
    report(run_on_uvloop(measure(p["n"], p["workers"], p["reps"])))


if __name__ == "__main__":
    sys.exit(_main())
