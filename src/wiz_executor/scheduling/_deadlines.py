"""Chunk timeouts without a timer per chunk.

Every chunk runs under a timeout (the run's `ChunkTimeout`, else the executor's default,
an hour unless the operator says otherwise). `asyncio.timeout` arms a loop timer as a
chunk starts and cancels it as it ends: on uvloop a libuv timer handle made, started,
stopped and closed per chunk, which measured as the largest single cost of a cheap
chunk. Nearly every chunk ends long before its deadline, so that timer almost never
fires.

`Deadlines` keeps one timer for all running chunks instead. A chunk's start records its
deadline (a dict entry); the timer is armed for the earliest deadline, and moved only
when a chunk starts with an earlier one than it is armed for (every chunk of a run has
the same timeout and chunks start in time order, so after the first start nothing is
moved). When the timer fires it cancels the chunks past their deadline, as
`asyncio.timeout` would, and re-arms for the earliest deadline left. A chunk that ended
just takes its entry out. The chunk's task sees the cancellation as `asyncio.timeout`'s
block does, and `expired` tells a deadline from any other cancellation (a delete, the
shutdown) with the same `cancelling()`/`uncancel()` rule.
"""

from __future__ import annotations

import asyncio
import math


class Deadline:
    """One chunk's deadline, while it runs (see `Deadlines.start`)."""

    __slots__ = ("cancelling", "expired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        """Loop time (`loop.time()`) by which the chunk must have ended."""
        self.cancelling = task.cancelling()
        """Cancellations already requested of the task when it started the chunk."""
        self.expired = False
        """Set when its deadline passed and its task was cancelled for it."""

    def timed_out(self) -> bool:
        """Whether the `CancelledError` the task caught is this deadline's own, and no
        other cancellation is pending: then it is a timeout (and the cancellation is
        taken back); otherwise the caller must let the `CancelledError` through. Call it
        once, from the task, on a `CancelledError`."""
        return self.expired and self.task.uncancel() <= self.cancelling


class Deadlines:
    """The deadlines of the running chunks of one event loop, with one timer."""

    __slots__ = ("_armed", "_loop", "_running", "_timer")

    def __init__(self) -> None:
        self._running: dict[Deadline, None] = {}
        """The running chunks' deadlines (a dict as an ordered set: O(1) removal)."""
        self._timer: asyncio.TimerHandle | None = None
        self._armed = math.inf
        """When the timer fires (inf when it is not armed)."""
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._running)

    def start(self, task: asyncio.Task[object], seconds: float) -> Deadline:
        """`task` starts a chunk that must end within `seconds`: cancel it if not.

        Pass the result to `end` when the chunk ends, however it ends."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = Deadline(task, loop.time() + seconds)
        self._running[deadline] = None
        if deadline.when < self._armed:
            self._arm(deadline.when)
        return deadline

    def end(self, deadline: Deadline) -> None:
        """The chunk ended: its deadline no longer applies. (The timer is left armed:
        when it fires it finds nothing due, and is armed for the next deadline.)"""
        self._running.pop(deadline, None)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_at(when, self._fire)
        self._armed = when

    def _fire(self) -> None:
        assert self._loop is not None
        # Due: what the timer was armed for, even if the loop fires it a little early
        # (uvloop's timers count whole milliseconds), as `asyncio.timeout`'s would be.
        now = max(self._loop.time(), self._armed)
        self._timer = None
        self._armed = math.inf
        due = [d for d in self._running if d.when <= now]
        for deadline in due:
            del self._running[deadline]  # (a second firing must not cancel it again)
            deadline.expired = True
            deadline.task.cancel()
        if self._running:
            self._arm(min(d.when for d in self._running))
