"""Scenario 4: memory per retained chunk, and whether it comes back after DELETE.

A fresh process runs the executor and one noop run of 100,000 small chunks
(`{"ChunkID": "m-123", "RawData": {"i": 123}}`, decoded from JSON batches of 100 as the
server decodes them). Once every chunk has SUCCEEDED the run holds all inputs and
outputs; the process's RSS growth divided by the chunk count is the executor's memory
per retained chunk. The run's input is left open, so the run is still active: a
finished run's chunks leave RAM once journalled (the `kept` scenario measures that).
Then the run is deleted and the garbage collected.

RSS is what the machine pays, but after a delete part of it may stay with the C
allocator for reuse rather than go back to the kernel; so a second process measures
the same with `tracemalloc` (the Python objects alive), which shows whether the
executor itself still holds anything, and the first also reports RSS after asking
glibc to give free memory back (`malloc_trim`).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

from wiz_executor import Configuration, Executor, Settings
from wiz_executor.runs import FAILED, SUCCEEDED
from wiz_executor.wire import decode_chunks

from ._child import params_from_argv, report, run_child, run_on_uvloop
from ._machine import flags
from ._stats import Summary

CHUNKS = 100_000


def settings(n: int, data_dir: Path = Path("wiz-data")) -> Settings:
    """The defaults, with room for all `n` chunks waiting at once (the default bound is
    100,000, so for CHUNKS this is the default)."""
    return Settings(max_pending=n, data_dir=data_dir)


def _batches(n: int) -> list[bytes]:
    out = []
    for start in range(0, n, 100):
        items = [f'{{"ChunkID":"m-{i}","RawData":{{"i":{i}}}}}' for i in range(start, start + 100)]
        out.append(("[" + ",".join(items) + "]").encode())
    return out


def _trim() -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim(0)
    return True


async def measure(n: int, traced: bool) -> dict[str, Any]:
    proc = psutil.Process()

    def used() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if traced else int(proc.memory_info().rss)

    bodies = _batches(n)
    with tempfile.TemporaryDirectory() as tmp:
        async with Executor(settings(n, Path(tmp))) as ex:
            # NumChunks 0 and the input left open: the run stays active, its chunks held.
            run, _ = ex.configure("noop", "mem", Configuration())
            if traced:
                tracemalloc.start()
            before = used()
            for body in bodies:
                ex.add_chunks("noop", "mem", decode_chunks(body))
                await asyncio.sleep(0)  # let workers run between batches, as requests would
            while run.counts[SUCCEEDED] < n:
                if run.counts[FAILED]:
                    raise RuntimeError("a chunk of the memory run failed")
                await asyncio.sleep(0.01)
            del run
            await ex.commit()  # the journal's queue written out: not counted as retained
            retained = used()
            await ex.delete_run("noop", "mem")
            deleted = used()
            trimmed = deleted
            if not traced and _trim():
                trimmed = used()
    return {
        "per_chunk_bytes": (retained - before) / n,
        "after_delete_bytes": deleted - before,
        "after_trim_bytes": trimmed - before,
        "before_bytes": before,
    }


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    raw: dict[str, list[dict[str, Any]]] = {"rss": [], "traced": []}
    for _ in range(reps):
        for kind in raw:
            params = {"n": CHUNKS, "traced": kind == "traced"}
            raw[kind].append(run_child("benchmarks.memory", params))
    log("  memory: done")
    metrics = ("per_chunk_bytes", "after_delete_bytes", "after_trim_bytes")
    return {
        "chunks": CHUNKS,
        "flags": flags(settings(CHUNKS)),
        "raw": raw,
        "summary": {
            kind: {m: Summary.of([r[m] for r in results]) for m in metrics}
            for kind, results in raw.items()
        },
    }


def _main() -> None:
    p = params_from_argv()
    report(run_on_uvloop(measure(p["n"], p["traced"])))


if __name__ == "__main__":
    sys.exit(_main())
