"""Worker limits as objects: one per run, one for the whole executor.

Like `anyio.CapacityLimiter`, but with a synchronous `try_acquire` for the hot path
(no await when a slot is free), strict FIFO hand-off so no run starves, and the peak
use recorded so tests and benchmarks can check that a limit held at every instant.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkerLimiter:
    """A number of worker slots; acquiring one waits, in arrival order, when none is free."""

    __slots__ = ("_waiters", "in_use", "name", "peak", "total")

    def __init__(self, total: int, name: str = "workers") -> None:
        if total < 1:
            raise ValueError(f"{name}: a limit must be at least 1, not {total}")
        self.total = total
        self.name = name
        self.in_use = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued ahead; never waits."""
        if self.in_use < self.total and not self._waiters:
            self.in_use += 1
            if self.in_use > self.peak:
                self.peak = self.in_use
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:  # else a release already skipped our turn
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, handing it straight to the longest waiter if there is one."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_use is unchanged
                return
        self.in_use -= 1

    def __repr__(self) -> str:
        return f"<WorkerLimiter {self.name} {self.in_use}/{self.total} peak={self.peak}>"
