"""A probe of the event loop's responsiveness, for tests that bound how long a request
may hold the loop."""

from __future__ import annotations

import asyncio
from time import perf_counter


class LagProbe:
    """The longest gap between two turns of the event loop, from now until `stop`.

    A callback that reschedules itself on every turn: a request that holds the loop
    for 50 ms shows as a 50 ms gap between two of its calls.
    """

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.max_gap = 0.0
        self.stopped: asyncio.Future[float] | None = None
        self._last = perf_counter()
        self.loop.call_soon(self._tick)

    def _tick(self) -> None:
        now = perf_counter()
        self.max_gap = max(self.max_gap, now - self._last)
        self._last = now
        if self.stopped is None:
            self.loop.call_soon(self._tick)
        else:
            self.stopped.set_result(self.max_gap)

    async def stop(self) -> float:
        """Let the probe take one more turn (the gap up to now counts), then stop it."""
        self.stopped = self.loop.create_future()
        return await self.stopped
