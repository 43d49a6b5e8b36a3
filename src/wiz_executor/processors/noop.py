"""`noop`: passes RawData through unchanged; the tool for tests and benchmarks."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import Field

from ..errors import ChunkFailed
from ._base import Context, Input, Processor, ProcessorConfig


class NoopConfig(ProcessorConfig):
    SleepMs: int = Field(0, ge=0, description="milliseconds to wait before answering")
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
