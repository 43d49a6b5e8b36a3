"""The CPU-bound processor of the Ray benchmark: ~1 ms of pure Python per chunk, in a
blocking `run` (so POOL runs it on threads, held to one core by the GIL). A module of
its own, importable on the Ray workers (the benchmark puts the project on their path)."""

from __future__ import annotations

from typing import Any

from wiz_executor import Context, Input, Processor, ProcessorConfig

LOOPS = 10_000
"""About 1 ms of pure Python on this machine."""


class CpuBound(Processor[ProcessorConfig]):
    id = "cpu-bound"
    name = "CPU-bound (benchmark)"
    version = "0.1.0"

    def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        total = 0
        for i in range(LOOPS):
            total += i * i % 7
        return {"i": data.raw_data["i"], "sum": total}
