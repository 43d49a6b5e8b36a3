"""A probe of the event loop's responsiveness, for tests that bound how long a request
may hold the loop.

What such a test bounds is the work the loop thread does in one turn: the CPU time the
thread spent between two turns (`time.thread_time`). The wall-clock gap between turns is
recorded too, for the report, but is not what the tests assert on: on a loaded machine
the kernel keeps the thread off a CPU for a tenth of a second or more at a time (gaps of
0.2-0.35 s were seen on a 2-core box running other test suites, for turns that did at
most ~15 ms of work), so a wall-clock bound fails without a defect. The loop thread's
CPU time does not advance while it waits for a CPU, nor while it waits for the GIL.

What this cannot see: a loop blocked without using the CPU (a blocking syscall, a
`time.sleep`), or stalled by another thread holding the GIL for long in one C call. The
tests that use the probe guard against work done *on* the loop (encoding or decoding a
whole big body in one go); what they run off the loop is bounded otherwise (the batch
test's memory bound fails if a body is decoded in one call).
"""

from __future__ import annotations

import asyncio
import dataclasses
from time import perf_counter, thread_time


@dataclasses.dataclass(frozen=True)
class Lag:
    """The longest gaps between two turns of the loop while the probe ran, in seconds."""

    cpu: float
    """CPU time of the loop thread in its longest turn: the work that held the loop."""
    wall: float
    """The longest wall-clock gap (includes time the machine gave to other processes)."""


class LagProbe:
    """The longest gap between two turns of the event loop, from now until `stop`.

    A callback that reschedules itself on every turn: a request that holds the loop for
    50 ms of work shows as a gap of 50 ms of the loop thread's CPU time between two of
    its calls. Create it on the loop's thread (it reads that thread's CPU clock).
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.max_cpu = 0.0
        self.max_wall = 0.0
        self.stopped: asyncio.Future[Lag] | None = None
        self._wall = perf_counter()
        self._cpu = thread_time()
        self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        wall, cpu = perf_counter(), thread_time()
        self.max_wall = max(self.max_wall, wall - self._wall)
        self.max_cpu = max(self.max_cpu, cpu - self._cpu)
        self._wall, self._cpu = wall, cpu
        if self.stopped is None:
            self.loop.call_soon(self._tick)
        else:
            self.stopped.set_result(Lag(cpu=self.max_cpu, wall=self.max_wall))

    async def stop(self) -> Lag:
        """Let the probe take one more turn (the gap up to now counts), then stop it."""
        self.stopped = self.loop.create_future()
        return await self.stopped
