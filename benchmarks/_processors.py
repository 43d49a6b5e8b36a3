"""Processors for the work-model benchmark: the built-in noop, and one whose `setup`
is expensive the way loading a model or opening a connection pool is.

`ExpensiveSetup` waits 50 ms (an I/O wait, off the CPU) and then fills 20 MB that it
keeps for the instance's life; its `run` is as cheap as noop's, so any difference
between the two processors is the price of set-up under each work model.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wiz_executor import Context, Input, Processor, ProcessorConfig, Registry
from wiz_executor.processors import Noop

SETUP_SECONDS = 0.05
SETUP_BYTES = 20 * 2**20


class ExpensiveSetup(Processor[ProcessorConfig]):
    """Sets up for 50 ms and holds 20 MB; answers each chunk with its RawData."""

    id = "expensive-setup"
    name = "Expensive Setup (benchmark)"
    version = "0.1.0"

    async def setup(self) -> None:
        await asyncio.sleep(SETUP_SECONDS)
        # Written, not calloc'ed: the pages are really resident, as a loaded model's are.
        self.buffer: bytes | None = b"\x01" * SETUP_BYTES

    async def teardown(self) -> None:
        self.buffer = None

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        return data.raw_data


PROCESSORS = {"noop": Noop, "expensive": ExpensiveSetup}
"""Benchmark name → processor class."""


def registry() -> Registry:
    return Registry([Noop, ExpensiveSetup])
