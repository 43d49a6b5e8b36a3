"""The event stream: its typed events and an incremental Server-Sent-Events decoder.

`GET /processors/{procID}/runs/{runID}/events` and `GET /events` send
`id: <n>`, `event: <type>`, `data: <one-line JSON>` and a blank line per event;
lines starting with `:` are comments (keep-alives). The decoder is fed one line at a
time by either client, so both read the stream the same way. Unknown event types are
skipped: a newer server may send more kinds than this client knows.

Splitting the stream into lines and lines into events is httpx-sse's (the WHATWG
rules: only CR, LF and CRLF end a line, so JSON carrying U+2028 survives). Its line
and event decoders are used directly rather than through `EventSource.aiter_sse()`,
because `follow()` must see every line, keep-alives included, to check its deadline
while a stream keeps talking; `EventSource` yields only whole events.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Annotated, Any

from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..api import ChunkCounts as _ChunkCounts
from ..api import DataChunkState as _DataChunkState
from ..api import Progress as _Progress
from ..api import State as _State


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: int | None = Field(None, description="the SSE `id` of the event, for resuming")


class RunEvent(_Event):
    """A run changed state (or its input was closed)."""

    ProcID: str
    RunID: str
    CurrentState: Annotated[_State, BeforeValidator(_State.from_wire)]
    ChunkCounts: _ChunkCounts = Field(default_factory=_ChunkCounts)
    InputClosed: bool = False
    Paused: bool = False

    @property
    def finished(self) -> bool:
        return self.CurrentState in (_State.SUCCEEDED, _State.ERRORED)


class DoneEvent(RunEvent):
    """The last event of a run's stream: the run is SUCCEEDED or ERRORED."""


class ChunkEvent(_Event):
    """A chunk changed state or reported progress."""

    ProcID: str
    RunID: str
    ChunkID: str
    OutputID: str = ""
    State: Annotated[_DataChunkState, BeforeValidator(_DataChunkState.from_wire)]
    Error: str | None = None
    Progress: _Progress | None = None


class DroppedEvent(_Event):
    """The server dropped this consumer (it fell behind); the stream ends after it."""

    reason: str = ""


Event = RunEvent | DoneEvent | ChunkEvent | DroppedEvent
"""Any event of the stream."""

_TYPES: dict[str, type[RunEvent] | type[ChunkEvent] | type[DroppedEvent]] = {
    "run": RunEvent,
    "done": DoneEvent,
    "chunk": ChunkEvent,
    "dropped": DroppedEvent,
}


class EventDecoder:
    """Feed it the stream's lines; it returns an event when a blank line completes one.

    With `proc_id` (and `run_id`) set, events of other processors (runs) are left out,
    which lets a client follow one processor on the executor-wide stream.
    """

    def __init__(self, proc_id: str | None = None, run_id: str | None = None) -> None:
        self.proc_id = proc_id
        self.run_id = run_id
        self.last_id: int | None = None
        self._sse = SSEDecoder()

    def feed(self, line: str) -> Event | None:
        """One line of the stream (without its line break); an event when the line
        completes one."""
        sse = self._sse.decode(line)
        return None if sse is None else self.decode(sse)

    def decode(self, sse: ServerSentEvent) -> Event | None:
        """A decoded Server-Sent Event as a typed event, or None when it is of an
        unknown type, malformed, or of another processor or run."""
        event_id = int(sse.id) if sse.id.isdigit() else None
        if event_id is not None:
            self.last_id = event_id
        model = _TYPES.get(sse.event or "message")
        if model is None or not sse.data:
            return None
        try:
            event: Event = model.model_validate_json(sse.data)
        except ValidationError:
            return None  # a malformed event must not end a long watch
        event.id = event_id
        if isinstance(event, DroppedEvent):
            return event
        if self.proc_id is not None and event.ProcID != self.proc_id:
            return None
        if self.run_id is not None and event.RunID != self.run_id:
            return None
        return event


def sse_lines(texts: Iterable[str]) -> Iterator[str]:
    """The lines of a stream's decoded text, split as SSE splits them."""
    splitter = SSELineDecoder()
    for text in texts:
        yield from splitter.decode(text)
    yield from splitter.flush()


async def asse_lines(texts: AsyncIterable[str]) -> AsyncIterator[str]:
    """`sse_lines` for an async stream."""
    splitter = SSELineDecoder()
    async for text in texts:
        for line in splitter.decode(text):
            yield line
    for line in splitter.flush():
        yield line


def describe(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data, with its type, for `wiz watch --json`."""
    kind = {DoneEvent: "done", RunEvent: "run", ChunkEvent: "chunk", DroppedEvent: "dropped"}
    return {"event": kind[type(event)], **event.model_dump(mode="json", exclude_none=True)}
