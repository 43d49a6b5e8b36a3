"""The decisions behind `follow()` and `wait()`, shared by both clients.

Following a run prefers its event stream and falls back to polling GetRun. The stream is
opened before the run is read, so no change can fall between the two (this executor
subscribes a stream before answering and starts it with the run's state). A server that
subscribed later could let a change slip by unseen, so after `stream_idle` seconds
without a line (this executor sends a keepalive every 15 s) the client reads the run
again and reopens: such a miss costs at most that long. A `dropped` event or a cut
connection also ends one stream and leads to a fresh read of the run. Only the I/O
differs between the sync and async clients; every choice is made here.
"""

from __future__ import annotations

import time

import httpx

from ..api import Run, State
from ._events import ChunkEvent, DoneEvent, DroppedEvent, Event, RunEvent

FINISHED = frozenset({State.SUCCEEDED, State.ERRORED})

STREAM_ERRORS = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError)
"""A quiet stream (no line within the read timeout) or a cut one: read the run, reopen."""


def is_finished(run: Run | RunEvent) -> bool:
    return run.CurrentState in FINISHED


class FollowPlan:
    def __init__(
        self,
        proc_id: str,
        run_id: str,
        timeout: float | None,
        stream_idle: float = 20.0,
        poll_interval: tuple[float, float] = (0.05, 1.0),
    ) -> None:
        self.proc_id = proc_id
        self.run_id = run_id
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.stream_idle = stream_idle
        self.use_events = True
        self._poll_min, self._poll_max = poll_interval
        self._poll = self._poll_min
        self._confirmed = False

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def check_deadline(self) -> None:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(
                f"run {self.run_id!r} of processor {self.proc_id!r} did not finish "
                f"within {self.timeout:g} s"
            )

    def read_timeout(self) -> float:
        """How long one read of the stream may wait before the run is read again."""
        remaining = self.remaining()
        if remaining is None:
            return self.stream_idle
        return max(min(self.stream_idle, remaining), 0.001)

    def new_stream(self) -> None:
        """A stream is about to be opened; it has carried no event yet."""
        self._confirmed = False

    def stream_over(self, event: Event | None) -> bool:
        """Whether to leave the current stream (to read the run and maybe reopen)."""
        if isinstance(event, DoneEvent | DroppedEvent):
            return True
        if isinstance(event, RunEvent | ChunkEvent):
            self._confirmed = True  # a finished run's `done` follows its last `run` event
        return False

    def next_delay(self) -> float:
        """The wait before the next stream or read. A stream that carried events is
        reopened at once; one that ended (or failed) without any, and polling, back off
        up to the maximum interval, so a broken stream never becomes a busy loop."""
        if self.use_events and self._confirmed:
            self._poll = self._poll_min
            return 0.0
        delay = self._poll
        self._poll = min(self._poll * 1.5, self._poll_max)
        remaining = self.remaining()
        return delay if remaining is None else min(delay, remaining)
