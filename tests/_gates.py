"""Test processors that let a test hold chunks inside `run` and count who is inside.

A `Gate` is shared by the test and the processor class made from it: the processor
records each entry (so the test can measure peak concurrency exactly) and then waits on
an event the test controls, so a test reaches "N chunks are running" deterministically
and decides when they finish. Chunks name the event they wait on in their RawData
(`{"hold": "name"}`); without it they wait on the gate's shared `open` event.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from wiz_executor import Context, Executor, Input, Processor, ProcessorConfig, create_app


class Gate:
    """Counts chunks inside a processor's `run` and holds them until released."""

    def __init__(self) -> None:
        self.active = 0
        self.peak = 0
        self.entered = 0
        self.setups = 0
        self.teardowns = 0
        self.open = asyncio.Event()
        self.holds: dict[str, asyncio.Event] = {}
        self.thread_open = threading.Event()
        self._lock = threading.Lock()  # sync processors count from worker threads

    def hold(self, name: str) -> asyncio.Event:
        return self.holds.setdefault(name, asyncio.Event())

    def enter(self) -> None:
        with self._lock:
            self.active += 1
            self.entered += 1
            self.peak = max(self.peak, self.active)

    def leave(self) -> None:
        with self._lock:
            self.active -= 1

    async def wait(self, raw: Any) -> None:
        name = raw.get("hold") if isinstance(raw, dict) else None
        await (self.hold(name) if name else self.open).wait()

    def release_all(self) -> None:
        self.open.set()
        self.thread_open.set()
        for event in self.holds.values():
            event.set()


def gate_processor(gate: Gate, proc_id: str = "gate") -> type[Processor[Any]]:
    """An async processor that enters `gate`, waits on it, and echoes its RawData."""

    class GateProcessor(Processor[ProcessorConfig]):
        id = proc_id
        name = "Gate (test)"
        Config = ProcessorConfig

        async def setup(self) -> None:
            gate.setups += 1

        async def teardown(self) -> None:
            gate.teardowns += 1

        async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            gate.enter()
            try:
                await gate.wait(data.raw_data)
            finally:
                gate.leave()
            return data.raw_data

    return GateProcessor


def sync_gate_processor(gate: Gate, proc_id: str = "sync-gate") -> type[Processor[Any]]:
    """A blocking processor (run on a worker thread) that waits on `gate.thread_open`."""

    class SyncGateProcessor(Processor[ProcessorConfig]):
        id = proc_id
        name = "Sync gate (test)"
        Config = ProcessorConfig

        def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            gate.enter()
            try:
                if not gate.thread_open.wait(timeout=30):
                    raise RuntimeError("the test never opened the gate")
            finally:
                gate.leave()
            return data.raw_data

    return SyncGateProcessor


@asynccontextmanager
async def asgi_client(executor: Executor) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real ASGI app in front of `executor` (no sockets)."""
    transport = httpx.ASGITransport(app=create_app(executor=executor))
    async with httpx.AsyncClient(transport=transport, base_url="http://executor") as client:
        yield client


def run_path(proc: str, run: str) -> str:
    return f"/processors/{proc}/runs/{run}"


async def configure(
    client: httpx.AsyncClient, proc: str, run: str, num_chunks: int = 0, **executor_config: Any
) -> dict[str, Any]:
    """Configure a run and fail the test unless it answered 200."""
    body = {"ExpectedData": {"NumChunks": num_chunks}, "ExecutorConfig": executor_config}
    resp = await client.post(f"{run_path(proc, run)}/config", json=body)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


async def add(client: httpx.AsyncClient, proc: str, run: str, body: Any) -> httpx.Response:
    return await client.post(f"{run_path(proc, run)}/data", json=body)


async def chunk_counts(client: httpx.AsyncClient, proc: str, run: str) -> dict[str, int]:
    resp = await client.get(run_path(proc, run))
    assert resp.status_code == 200, resp.text
    counts: dict[str, int] = resp.json()["ChunkCounts"]
    return counts
