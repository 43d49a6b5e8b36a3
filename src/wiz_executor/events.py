"""The event stream: run and chunk state changes, fanned out to subscribers as SSE frames.

The run map tells its listeners of every state change, synchronously and on the event
loop's thread. `EventHub` is such a listener, but only while somebody subscribes: with
no subscriber it is not in `RunMap.listeners` at all, so an executor nobody watches pays
nothing.

Each change is encoded once, as the bytes of one Server-Sent-Events frame, and the same
bytes are appended to every interested subscriber's buffer. The buffers are bounded and
appending never waits: a subscriber that falls `buffer_size` frames behind is dropped
(its buffer is replaced by one final `dropped` frame and it is unsubscribed), so a
consumer that stops reading never slows the executor down and costs a bounded amount.

Frames look like `id: <n>\\nevent: <type>\\ndata: <one-line JSON>\\n\\n`; the types are
`run`, `chunk`, `done` (last frame of a run's stream) and `dropped`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from .api import DataChunkState
from .errors import ShuttingDown
from .runs import Chunk, Run, RunMap

__all__ = ["KEEPALIVE", "EventHub", "Subscription", "chunk_payload", "run_payload"]

KEEPALIVE = b": keepalive\n\n"
"""An SSE comment: keeps idle connections (and proxies) from timing out."""

_encode = msgspec.json.Encoder().encode
_STATES = tuple(DataChunkState)


def run_payload(run: Run) -> dict[str, Any]:
    """The `run` (and `done`) event's data: a run's state and chunk counts."""
    counts = run.counts
    payload = {
        "ProcID": run.proc_id,
        "RunID": run.run_id,
        "CurrentState": run.state.value,
        "ChunkCounts": {state.value: counts[state] for state in _STATES},
        "InputClosed": run.input_closed,
    }
    if run.paused:
        payload["Paused"] = True
    return payload


def chunk_payload(run: Run, chunk: Chunk) -> dict[str, Any]:
    """The `chunk` event's data. A failed downstream delivery shows as an `Error` on a
    SUCCEEDED chunk, since that is what will make its run ERRORED."""
    data: dict[str, Any] = {
        "ProcID": run.proc_id,
        "RunID": run.run_id,
        "ChunkID": chunk.id,
        "OutputID": chunk.output_id,
        "State": chunk.state.value,
    }
    if chunk.error is not None:
        data["Error"] = chunk.error
    elif chunk.delivery_error is not None:
        data["Error"] = f"downstream delivery failed: {chunk.delivery_error}"
    if chunk.progress is not None:
        data["Progress"] = {"Done": chunk.progress[0], "Total": chunk.progress[1]}
    return data


def frame(event_id: int, kind: str, data: Any) -> bytes:
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, kind.encode(), _encode(data))


class Subscription:
    """One consumer's bounded buffer of frames.

    The hub appends; the consumer takes everything buffered at once with `batches`.
    Once `ended`, no frame is added any more: the consumer gets what is left, then the
    iteration stops.
    """

    __slots__ = (
        "_ended",
        "_frames",
        "_hub",
        "_idle",
        "_wakeup",
        "ended",
        "limit",
        "reason",
        "run",
    )

    def __init__(self, hub: EventHub, run: Run | None, limit: int) -> None:
        self._hub = hub
        self.run = run
        """The run followed, or None for the executor-wide stream."""
        self.limit = limit
        self._frames: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._ended = asyncio.Event()
        self._idle = False
        """The consumer has taken everything and waits for more (so it is not behind)."""
        self.ended = False
        self.reason = ""
        """Why the stream ended: "done", "dropped", "deleted", "closed" or "unsubscribed"."""

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def idle(self) -> bool:
        return self._idle

    def push(self, data: bytes) -> None:
        """Buffer a frame, or drop the subscriber when it is behind. Never waits.

        Behind means: `limit` frames wait while the consumer is busy with earlier ones.
        A consumer that has caught up and waits for more is not behind, so a burst
        (one AddData of many chunks is one burst of WAITING events) is taken whole; the
        bound applies from the moment the consumer starts sending it.
        """
        if self.ended:
            return
        if len(self._frames) >= self.limit and not self._idle:
            self._hub.drop(
                self,
                f"the consumer fell behind: {self.limit} events were waiting to be sent",
            )
            return
        self._frames.append(data)
        self._wakeup.set()

    def end(self, reason: str, last: bytes | None = None, discard: bool = False) -> None:
        """No more frames after `last`; `discard` throws away what was still buffered."""
        if self.ended:
            return
        self.ended = True
        self.reason = reason
        if discard:
            self._frames.clear()
        if last is not None:
            self._frames.append(last)
        self._hub.unsubscribe(self)
        self._wakeup.set()
        self._ended.set()

    def close(self) -> None:
        """The consumer is gone (disconnected): stop buffering for it."""
        self.end("unsubscribed", discard=True)

    async def wait_ended(self) -> None:
        await self._ended.wait()

    async def batches(self, keepalive: float) -> AsyncIterator[bytes]:
        """Everything buffered, joined, as soon as there is any; `KEEPALIVE` after
        `keepalive` idle seconds; stops once the subscription has ended and is drained."""
        frames = self._frames
        while True:
            if not frames:
                if self.ended:
                    return
                self._wakeup.clear()
                self._idle = True
                try:
                    async with asyncio.timeout(keepalive):
                        await self._wakeup.wait()
                except TimeoutError:
                    self._idle = False
                    yield KEEPALIVE
                    continue
                if not frames:
                    continue
            batch = b"".join(frames)
            frames.clear()
            self._idle = False
            yield batch


class EventHub:
    """Fans run-map changes out to subscribers of one run or of the whole executor."""

    def __init__(self, runs: RunMap, buffer_size: int = 8192, keepalive: float = 15.0) -> None:
        self._runs = runs
        self.buffer_size = buffer_size
        """Frames a subscriber may have waiting before it is dropped."""
        self.keepalive = keepalive
        """Idle seconds before a stream sends a keepalive comment."""
        self._all: set[Subscription] = set()
        self._by_run: dict[Run, set[Subscription]] = {}
        self._seq = 0
        self._listening = False
        self.closed = False
        self.dropped = 0
        """Subscribers dropped for falling behind, since the start."""
        runs.on_run_removed.append(self._run_removed)

    @property
    def listening(self) -> bool:
        """Whether the hub is among the run map's listeners (only while subscribed)."""
        return self._listening

    @property
    def subscribers(self) -> int:
        return len(self._all) + sum(len(subs) for subs in self._by_run.values())

    # -- subscribing -------------------------------------------------------------------

    def subscribe(self, run: Run | None = None) -> Subscription:
        """Follow one run (starting with its snapshot, ending with `done`) or, with
        None, every run of the executor until the hub closes."""
        if self.closed:
            raise ShuttingDown()
        sub = Subscription(self, run, self.buffer_size)
        if run is None:
            self._all.add(sub)
        else:
            snapshot = run_payload(run)
            sub.push(self._frame("run", snapshot))
            if run.finished:
                sub.end("done", self._frame("done", snapshot))
                return sub
            if run.removed:
                sub.end("deleted", self._frame("dropped", {"reason": "the run was deleted"}))
                return sub
            self._by_run.setdefault(run, set()).add(sub)
        if not self._listening:
            self._listening = True
            # A new list, never an edit in place: the run map may be iterating the old
            # one right now (see `unsubscribe`).
            self._runs.listeners = [*self._runs.listeners, self._on_change]
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.run is None:
            self._all.discard(sub)
        else:
            subs = self._by_run.get(sub.run)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_run[sub.run]
        if self._listening and not self._all and not self._by_run:
            self._listening = False
            # The last subscriber may be dropped inside `_on_change`, while the run map
            # iterates its listeners: removing in place would skip the next listener.
            self._runs.listeners = [f for f in self._runs.listeners if f != self._on_change]

    def drop(self, sub: Subscription, reason: str) -> None:
        self.dropped += 1
        sub.end("dropped", self._frame("dropped", {"reason": reason}), discard=True)

    def close(self) -> None:
        """End every stream after what it has buffered, and take no new subscriber."""
        self.closed = True
        for sub in [*self._all, *(s for subs in self._by_run.values() for s in subs)]:
            sub.end("closed")

    # -- run-map listener --------------------------------------------------------------

    def _frame(self, kind: str, data: Any) -> bytes:
        self._seq += 1
        return frame(self._seq, kind, data)

    def _on_change(self, run: Run, chunk: Chunk | None) -> None:
        followers = self._by_run.get(run)
        if not followers and not self._all:
            return
        if chunk is None:
            payload = run_payload(run)
            data = self._frame("run", payload)
        else:
            data = self._frame("chunk", chunk_payload(run, chunk))
        for sub in tuple(self._all):
            sub.push(data)
        if followers:
            for sub in tuple(followers):
                sub.push(data)
            if chunk is None and run.finished:
                last = self._frame("done", payload)
                for sub in tuple(followers):
                    sub.end("done", last)

    def _run_removed(self, run: Run) -> None:
        followers = self._by_run.get(run)
        if not followers:
            return
        last = self._frame("dropped", {"reason": "the run was deleted"})
        for sub in tuple(followers):
            sub.end("deleted", last)
