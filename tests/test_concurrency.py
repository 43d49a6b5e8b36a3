"""Many clients at once, through a real server: configuring, adding (single chunks,
batches, resends) and reading concurrently. No chunk is lost, none runs twice, every
output is its own input's, and every read is a consistent snapshot."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from _gates import run_path
from conftest import live_server, wait_run_done
from wiz_executor import Context, Input, Processor, ProcessorConfig, Settings

pytestmark = pytest.mark.anyio

CLIENTS = 50
RUNS = 10
PER_CLIENT = 6
PER_RUN = CLIENTS // RUNS * PER_CLIENT


class Counting(Processor[ProcessorConfig]):
    """Echoes its input and counts how often each chunk was processed."""

    id = "counting"
    name = "counts chunks"
    seen: ClassVar[Counter[tuple[str, str]]] = Counter()

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        Counting.seen[(context.run_id, data.chunk_id)] += 1
        return {"echo": data.raw_data}


def run_config(r: int) -> dict[str, Any]:
    return {
        "ExpectedData": {"NumChunks": PER_RUN},
        "ExecutorConfig": {"MaxWorkers": 1 + r % 4, "WorkModel": ("LIFETIME", "POOL")[r % 2]},
    }


def chunk(r: int, client: int, i: int) -> dict[str, Any]:
    return {"ChunkID": f"c{client}-{i}", "RawData": {"run": r, "client": client, "i": i}}


def check_snapshot(run: dict[str, Any], data: dict[str, Any]) -> None:
    """Invariants any read must show, however the writes interleave."""
    counts = run["ChunkCounts"]
    assert sum(counts.values()) <= PER_RUN
    assert len(data["In"]) == len(data["Out"]) <= PER_RUN
    for inp, out in zip(data["In"], data["Out"], strict=True):
        assert out["AssociatedChunkID"] == inp["ChunkID"]
        assert inp["AssociatedChunkID"] == out["ChunkID"]
        if out["State"] == "SUCCEEDED":
            assert out["RawData"] == {"echo": inp["RawData"]}


async def one_client(http: httpx.AsyncClient, n: int, seed: int) -> tuple[int, int]:
    """Configure this client's run, send its chunks in a random mix of single posts,
    batches and resends, reading as it goes; return (accepted, duplicates)."""
    rng = random.Random(seed)
    r = n % RUNS
    base = run_path("counting", f"r{r}")
    resp = await http.post(f"{base}/config", json=run_config(r))
    assert resp.status_code == 200, resp.text
    mine = [chunk(r, n, i) for i in range(PER_CLIENT)]
    accepted = duplicates = 0
    i = 0
    while i < len(mine):
        size = rng.choice([1, 1, 2, 3])
        body: Any = mine[i] if size == 1 else mine[i : i + size]
        if rng.random() < 0.3 and i:  # resend something already sent, as a retry would
            body = [mine[rng.randrange(i)], *(mine[i : i + size])]
        resp = await http.post(f"{base}/data", json=body)
        assert resp.status_code == 200, resp.text
        accepted += resp.json()["Accepted"]
        duplicates += resp.json()["Duplicates"]
        i += size
        if rng.random() < 0.5:
            run, data = await asyncio.gather(http.get(base), http.get(f"{base}/data"))
            check_snapshot(run.json(), data.json())
    runs = (await http.get("/processors/counting/runs")).json()
    assert f"r{r}" in {run["RunID"] for run in runs}
    return accepted, duplicates


async def test_many_clients_at_once(tmp_path: Path) -> None:
    Counting.seen = Counter()
    settings = Settings(data_dir=tmp_path, max_workers=8)
    async with live_server(settings) as (url, executor):
        executor.registry.register(Counting)
        # Two client-side races, each an httpx.ReadError under load, kept out:
        # - a connection for every request that can be in flight (each client has up to
        #   two: a run read beside a data read). At a full pool, httpcore (1.0.9) may
        #   close a connection it has just handed to a request, taking it for idle
        #   (encode/httpcore#1110); the pool must never have to make room.
        # - idle connections dropped well before the server's keep-alive (uvicorn's 5 s)
        #   closes them, so none is reused just as the server closes it (httpx's
        #   default expiry is the same 5 s, started later, on the client's side).
        limits = httpx.Limits(max_connections=2 * CLIENTS, keepalive_expiry=1.0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
            results = await asyncio.gather(*(one_client(http, n, seed=n) for n in range(CLIENTS)))
            assert sum(a for a, _ in results) == RUNS * PER_RUN  # each chunk accepted once
            for r in range(RUNS):
                run = await wait_run_done(http, "counting", f"r{r}", timeout=30)
                assert run["CurrentState"] == "SUCCEEDED"
                assert run["ChunkCounts"]["SUCCEEDED"] == PER_RUN
                data = (await http.get(f"{run_path('counting', f'r{r}')}/data")).json()
                check_snapshot(run, data)
                expected = {
                    f"c{n}-{i}": chunk(r, n, i)["RawData"]
                    for n in range(r, CLIENTS, RUNS)
                    for i in range(PER_CLIENT)
                }
                outputs = {o["AssociatedChunkID"]: o["RawData"] for o in data["Out"]}
                assert outputs == {cid: {"echo": raw} for cid, raw in expected.items()}
    # Processed exactly once each, within the executor-wide limit.
    assert len(Counting.seen) == RUNS * PER_RUN
    assert set(Counting.seen.values()) == {1}
    assert executor.scheduler.limiter.peak <= settings.max_workers
