"""Scenario: what durability costs, and how fast a restart recovers.

AddData over HTTP against two executor processes in the same run: as shipped (the
durable journal, group commit) and `--ephemeral` (memory only), plus `--fsync` (a disk
flush per group commit) to say what power-loss safety costs. One chunk per request and
batches of 100, 64 connections, loads interleaved (durable, ephemeral, fsync, then the
reverse order), each to a fresh run, measured as the HTTP scenario measures (`wrk`,
requests/s, and end-to-end chunks/s until the run is SUCCEEDED). The ratios
durable ÷ ephemeral are taken per interleaved set.

Recovery: a journal of N chunks (1,000,000; 100,000 in quick mode) in 10 runs, half of
them SUCCEEDED with an output, half WAITING, is built with the store, then an executor
is started on it and timed until its recovery is done (the run map rebuilt, the waiting
chunks requeued): the time a restart takes before it takes writes again. Also the
journal's bytes per chunk.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from wiz_executor import Executor, Settings

from . import http_load
from . import journal as journal_bench
from ._stats import Summary

VARIANTS: dict[str, tuple[str, ...]] = {
    "durable": (),
    "ephemeral": ("--ephemeral",),
    "fsync": ("--fsync",),
}
BATCHES = (1, 100)
CONNS = 64
METRICS = ("req_per_s", "accepted_req_per_s", "e2e_chunks_per_s", "p99_ms", "rejected_share")


def run(quick: bool, reps: int, log: Any = print) -> dict[str, Any]:
    raw: dict[str, list[dict[str, Any]]] = {}
    ratios: dict[str, list[float]] = {"1/req_per_s": [], "100/e2e_chunks_per_s": []}
    n = 0
    with ExitStack() as stack:
        urls: dict[str, str] = {}
        clients: dict[str, httpx.Client] = {}
        for kind, flags in VARIANTS.items():
            urls[kind], _ = stack.enter_context(http_load.server(kind, flags))
            clients[kind] = stack.enter_context(httpx.Client(base_url=urls[kind], timeout=60))

        def measure(kind: str, batch: int) -> dict[str, Any]:
            nonlocal n
            n += 1
            load_s = http_load.seconds_per_load(batch, quick)
            return http_load._measure(kind, urls[kind], clients[kind], load_s, batch, CONNS, n)

        for kind in VARIANTS:  # warm-up, not counted
            for batch in BATCHES:
                measure(kind, batch)
        for rep in range(reps):
            kinds = list(VARIANTS)
            if rep % 2:
                kinds.reverse()
            for batch in BATCHES:
                loads = {kind: measure(kind, batch) for kind in kinds}
                for kind, result in loads.items():
                    raw.setdefault(f"{kind}/{batch}", []).append(result)
                metric = "req_per_s" if batch == 1 else "e2e_chunks_per_s"
                ratios[f"{batch}/{metric}"].append(
                    loads["durable"][metric] / loads["ephemeral"][metric]
                )
            log(f"  durability: repetition {rep + 1}/{reps} done")
    summary: dict[str, Any] = {
        key: {m: Summary.of([r[m] for r in results if m in r]) for m in METRICS}
        for key, results in raw.items()
    }
    summary["ratio"] = {key: Summary.of(values) for key, values in ratios.items()}
    recovery = measure_recovery(100_000 if quick else 1_000_000)
    log(f"  durability: recovered {recovery['chunks']:,} chunks in {recovery['seconds']:.2f} s")
    return {
        "generator": http_load.generator(),
        "flags": {kind: " ".join(flags) or "defaults" for kind, flags in VARIANTS.items()},
        "raw": raw,
        "summary": summary,
        "recovery": recovery,
        "problems": http_load._problems(raw),
    }


def measure_recovery(chunks: int) -> dict[str, Any]:
    """Build a journal of `chunks` chunks, then time an executor's recovery of it."""
    with tempfile.TemporaryDirectory(prefix="wiz-durability-bench-") as tmp:
        folder = Path(tmp)
        db = folder / "wiz.db"
        asyncio.run(journal_bench._build(db, chunks))
        size = db.stat().st_size
        settings = Settings(data_dir=folder / "data", db_path=db, max_workers=1)

        async def recover() -> tuple[float, dict[str, int]]:
            started = time.perf_counter()
            async with Executor(settings) as ex:
                await ex.recovered()
                elapsed = time.perf_counter() - started
                found = dict(ex.recovery)
                await ex.shutdown(grace=0)
            return elapsed, found

        seconds, found = asyncio.run(recover())
    return {
        "chunks": chunks,
        "seconds": seconds,
        "requeued": found.get("requeued", 0),
        "bytes_per_chunk": size / chunks,
    }
