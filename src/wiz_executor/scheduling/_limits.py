"""Worker limits as objects: one per run, one for the whole executor.

Like `anyio.CapacityLimiter`, but with a synchronous `try_acquire` for the hot path
(no await when a slot is free), strict FIFO hand-off so no run starves, and the peak
use recorded so tests and benchmarks can check that a limit held at every instant.

A slot may be held for a long time by a holder that is idle (a POOL worker keeps its
instance, and the slot that instance counts against, between chunks). Such a holder
*parks* a future here; when somebody has to wait for a slot, the oldest parked holder
is told to give its slot up (its future is set to True), so idle instances of one run
never keep another run from starting. `reclaiming` counts the slots being given up for
waiters that way, so that no more holders give theirs up than there are waiters.
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkerLimiter:
    """A number of worker slots; acquiring one waits, in arrival order, when none is free."""

    __slots__ = ("_parked", "_waiters", "in_use", "name", "peak", "reclaiming", "total")

    def __init__(self, total: int, name: str = "workers") -> None:
        if total < 1:
            raise ValueError(f"{name}: a limit must be at least 1, not {total}")
        self.total = total
        self.name = name
        self.in_use = 0
        self.peak = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._parked: dict[asyncio.Future[bool | None], None] = {}
        self.reclaiming = 0
        """Slots their holders were asked to give up, or chose to, for a waiter."""

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
        if self._parked:
            self._reclaim()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:  # else a release already skipped our turn
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back, handing it straight to the longest waiter if there is one
        (unless the limit was lowered below the slots in use: then it is dropped)."""
        if self.in_use > self.total:
            self.in_use -= 1
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_use is unchanged
                return
        self.in_use -= 1

    def resize(self, total: int) -> None:
        """Change the number of slots, live. Raised: waiters get the new slots at once.
        Lowered: holders keep what they hold, no slot is handed on until fewer than
        `total` are in use, and idle holders (parked) are asked to give theirs up."""
        if total < 1:
            raise ValueError(f"{self.name}: a limit must be at least 1, not {total}")
        self.total = total
        while self._waiters and self.in_use < total:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                self.peak = max(self.peak, self.in_use)
                waiter.set_result(None)
        excess = self.in_use - self.reclaiming - total
        while excess > 0 and self._parked:
            wake = next(iter(self._parked))
            del self._parked[wake]
            if not wake.done():
                wake.set_result(True)
                self.reclaiming += 1
                excess -= 1

    def others_waiting(self, own: int = 0) -> bool:
        """Whether anyone waits for a slot that no holder is giving up yet, not counting
        `own` waiters (a run's own workers waiting are no reason to give a slot up)."""
        return len(self._waiters) - own > self.reclaiming

    def park(self, wake: asyncio.Future[bool | None]) -> None:
        """An idle holder offers its slot: `wake` is set to True when a waiter needs it
        (and to anything else by whoever has work for the holder). Unpark it when woken."""
        self._parked[wake] = None

    def unpark(self, wake: asyncio.Future[bool | None]) -> None:
        self._parked.pop(wake, None)

    def giving_up(self) -> None:
        """A holder is going to give its slot up for a waiter; `release_given_up` then."""
        self.reclaiming += 1

    def release_given_up(self) -> None:
        self.reclaiming -= 1
        self.release()

    def _reclaim(self) -> None:
        # Ask the longest-parked holder still idle to give its slot up for a waiter.
        while self._parked and len(self._waiters) > self.reclaiming:
            wake = next(iter(self._parked))
            del self._parked[wake]
            if not wake.done():  # (else it was woken for work just now)
                wake.set_result(True)
                self.reclaiming += 1
                return

    def __repr__(self) -> str:
        return f"<WorkerLimiter {self.name} {self.in_use}/{self.total} peak={self.peak}>"
