"""`noop`: passes RawData through unchanged; the tool for tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from ..errors import ChunkFailed
from ._base import Context, Input, Processor, ProcessorConfig

MAX_SLEEP_MS = 3_600_000
"""One hour: a test tool has no use for longer, and 2**70 ms would hold a worker for ever
(the chunk timeout stops the chunk, but a run without one must not be able to)."""


class NoopConfig(ProcessorConfig):
    SleepMs: int = Field(
        0,
        ge=0,
        le=MAX_SLEEP_MS,
        description="milliseconds to wait before answering (at most 1 hour)",
    )
    Fail: bool = Field(False, description="fail the chunk instead of answering")


class Noop(Processor[NoopConfig]):
    """Answers each chunk with its own RawData. A chunk whose RawData object holds
    `SleepMs` or `Fail` overrides the run's value for that chunk alone."""

    id = "noop"
    name = "No Operation Processor"
    version = "0.1.0"
    Config = NoopConfig

    async def run(self, data: Input, context: Context[NoopConfig]) -> Any:
        config = context.config
        if config.SleepMs:
            await asyncio.sleep(config.SleepMs / 1000)
        if config.Fail:
            raise ChunkFailed(f"noop was asked to fail chunk {data.chunk_id!r} (Fail=true)")
        return data.raw_data
