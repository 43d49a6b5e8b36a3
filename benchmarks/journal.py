"""The journal on its own: append throughput, the event loop's cost per append, recovery
time and bytes per chunk. `python -m benchmarks.journal [--quick] [--chunks N]`.

Not part of the suite's report (yet): `run()` returns the numbers for when it is.

- append, 1 per commit: one record per `append`, each awaited before the next (every
  append is its own transaction: the floor, what a lone client sees);
- append, 64 per commit: 64 concurrent single-record appends awaited together (group
  commit gathers them into about one transaction);
- loop cost per append: the time the event loop spends in `append` itself (queueing a
  built record and making its future), which is what AddData pays on the loop besides
  building the record and awaiting the future;
- recovery: a journal of N chunks (across 10 unfinished runs; half SUCCEEDED with an
  output and one attempt, half WAITING) reopened and `load()`ed, its size on disk and
  the memory the recovered chunks take (RSS growth), per chunk.
  CPU time is printed beside wall time: on a shared machine it is the steadier number.
- in process (`--in-process`): an `Executor` as shipped (durable, group commit) given
  N noop chunks by 16 concurrent senders, each adding a batch and awaiting its commit
  as an AddData does, in batches of 100 and one chunk per call, until the run is
  SUCCEEDED: chunks/s, and the process's CPU (the event loop and the journal's writer
  thread together) per chunk. No HTTP: this is the journal's share of an AddData.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from wiz_executor import Configuration, Executor, ExecutorConfig, ExpectedData, Settings, State
from wiz_executor.api import DataFormat
from wiz_executor.journal import (
    AcceptedChunk,
    ChunksAccepted,
    ChunkStarted,
    ChunkSucceeded,
    RunConfigured,
    SqliteStore,
)
from wiz_executor.runs import Chunk

from ._child import run_on_uvloop

CONFIG = {
    "ExpectedData": {"NumChunks": 0},
    "ExecutorConfig": {"MaxWorkers": 0, "SendDownstream": False, "DownstreamLocations": None},
    "Processor": {},
}


def _accepted(run: str, i: int, n: int = 1) -> ChunksAccepted:
    return ChunksAccepted(
        "noop",
        run,
        tuple(
            AcceptedChunk(
                f"chunk-{j:08}", f"chunk-{j:08}-out", DataFormat.RAW, {"n": j}, "", "", True
            )
            for j in range(i, i + n)
        ),
        time.time(),
    )


async def _appends(path: Path, records: int, per_commit: int) -> dict[str, float]:
    store = SqliteStore(path)
    store.open()
    try:
        await store.append([RunConfigured("noop", "r", CONFIG, time.time())])
        commits = store.commits
        loop_time = 0.0
        start = time.perf_counter()
        for i in range(0, records, per_commit):
            batch = [[_accepted("r", j)] for j in range(i, i + per_commit)]
            t = time.perf_counter()
            futures = [store.append(record) for record in batch]
            loop_time += time.perf_counter() - t
            await asyncio.gather(*futures)
        elapsed = time.perf_counter() - start
        return {
            "records_per_s": records / elapsed,
            "commits": store.commits - commits,
            "loop_us_per_append": loop_time / records * 1e6,
        }
    finally:
        await store.close()


async def _build(path: Path, chunks: int, runs: int = 10) -> None:
    store = SqliteStore(path)
    store.open()
    now = time.time()
    try:
        await store.append([RunConfigured("noop", f"run-{r}", CONFIG, now) for r in range(runs)])
        per_run = chunks // runs
        batch = 2000
        for r in range(runs):
            run = f"run-{r}"
            for i in range(0, per_run, batch):
                n = min(batch, per_run - i)
                records: list[Any] = [_accepted(run, r * per_run + i, n)]
                for j in range(r * per_run + i, r * per_run + i + n, 2):  # half of them ran
                    cid = f"chunk-{j:08}"
                    records.append(ChunkStarted("noop", run, cid, 1, now, "host", 1234, "pool-3"))
                    records.append(
                        ChunkSucceeded("noop", run, cid, 1, DataFormat.RAW, {"n": j}, now + 0.01)
                    )
                store.append_nowait(records)
            await store.flush()
    finally:
        await store.close()


def _recover(path: Path) -> dict[str, float]:
    store = SqliteStore(path)
    rss = psutil.Process().memory_info().rss
    start, cpu = time.perf_counter(), time.process_time()
    store.open()
    recovered = store.load()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss = psutil.Process().memory_info().rss - rss
    n = sum(len(run.chunks or ()) for run in recovered.runs)
    asyncio.run(store.close())
    size = path.stat().st_size
    return {
        "chunks": n,
        "recovery_s": elapsed,
        "recovery_cpu_s": cpu,
        "rss_bytes_per_chunk": rss / n,
        "bytes_per_chunk": size / n,
        "file_mb": size / 1e6,
    }


async def executor_batches(
    folder: Path, chunks: int, batch: int, senders: int = 16
) -> dict[str, float]:
    """`chunks` noop chunks through a durable `Executor`, `senders` tasks each adding a
    batch of `batch` and awaiting its commit before the next: chunks/s and CPU µs per
    chunk (the whole process: the loop and the journal's writer thread)."""
    settings = Settings(data_dir=folder, max_pending=2 * chunks)
    items = [
        Chunk(f"c{i}", f"c{i}-out", DataFormat.RAW, {"i": i}, "", "", True) for i in range(chunks)
    ]
    batches = [items[i : i + batch] for i in range(0, chunks, batch)]
    async with Executor(settings) as ex:
        ex.configure(
            "noop",
            "r",
            Configuration(
                ExpectedData=ExpectedData(NumChunks=chunks),
                ExecutorConfig=ExecutorConfig(MaxWorkers=8),
            ),
        )
        await ex.commit()

        async def send() -> None:
            while batches:
                added = ex.add_chunks("noop", "r", batches.pop())
                await ex.committed(added.committed)

        writer = next(t for t in threading.enumerate() if t.name == "wiz-journal-write")
        writer_cpu = _thread_cpu(writer)
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(send() for _ in range(senders)))
        run = await ex.wait("noop", "r")
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        writer_cpu = _thread_cpu(writer) - writer_cpu
        if run.state is not State.SUCCEEDED:
            raise RuntimeError(f"the run ended {run.state.value}")
        await ex.shutdown(grace=0)
    return {
        "chunks_per_s": chunks / elapsed,
        "cpu_us_per_chunk": cpu / chunks * 1e6,
        "writer_cpu_us_per_chunk": writer_cpu / chunks * 1e6,
    }


def _thread_cpu(thread: threading.Thread) -> float:
    """A thread's CPU seconds so far (user + system, as the OS counts them)."""
    for t in psutil.Process().threads():
        if t.id == thread.native_id:
            return float(t.user_time + t.system_time)
    raise LookupError(thread.name)


def in_process(quick: bool = False) -> dict[str, dict[str, float]]:
    """`executor_batches` in batches of 100 and of one, each in a fresh data folder."""
    result = {}
    for batch, chunks in ((100, 30_000), (1, 10_000)):
        chunks //= 3 if quick else 1
        with tempfile.TemporaryDirectory(prefix="wiz-journal-bench-") as tmp:
            result[f"batch_{batch}"] = run_on_uvloop(executor_batches(Path(tmp), chunks, batch))
    return result


def run(quick: bool = False, chunks: int | None = None) -> dict[str, Any]:
    chunks = chunks or (100_000 if quick else 1_000_000)
    appends = 5_000 if quick else 50_000
    with tempfile.TemporaryDirectory(prefix="wiz-journal-bench-") as tmp:
        folder = Path(tmp)
        result: dict[str, Any] = {}
        for per_commit in (1, 64):
            result[f"append_{per_commit}_per_commit"] = asyncio.run(
                _appends(folder / f"append-{per_commit}.db", appends, per_commit)
            )
        path = folder / "recover.db"
        t = time.perf_counter()
        asyncio.run(_build(path, chunks))
        result["build_s"] = time.perf_counter() - t
        result["recovery"] = _recover(path)
        for name in os.listdir(folder):
            os.remove(folder / name)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100k chunks, 5k appends")
    parser.add_argument("--chunks", type=int, help="chunks in the recovery journal")
    parser.add_argument(
        "--in-process", action="store_true", help="only the durable executor in process"
    )
    args = parser.parse_args()
    if args.in_process:
        for key, r in in_process(args.quick).items():
            print(
                f"in process, {key}: {r['chunks_per_s']:>9,.0f} chunks/s, "
                f"{r['cpu_us_per_chunk']:.1f} µs of CPU per chunk "
                f"({r['writer_cpu_us_per_chunk']:.1f} on the journal's writer thread)"
            )
        return
    r = run(args.quick, args.chunks)
    for per_commit in (1, 64):
        a = r[f"append_{per_commit}_per_commit"]
        print(
            f"append, {per_commit:>2} per commit: {a['records_per_s']:>9,.0f} records/s "
            f"({a['commits']:,} commits), {a['loop_us_per_append']:.2f} µs on the loop each"
        )
    rec = r["recovery"]
    print(
        f"recovery: {rec['chunks']:,} chunks in {rec['recovery_s']:.2f} s "
        f"({rec['recovery_cpu_s']:.2f} s of CPU), {rec['rss_bytes_per_chunk']:.0f} bytes of "
        "RAM each; "
        f"{rec['bytes_per_chunk']:.0f} bytes per chunk ({rec['file_mb']:.0f} MB); "
        f"built in {r['build_s']:.1f} s"
    )


if __name__ == "__main__":
    main()
