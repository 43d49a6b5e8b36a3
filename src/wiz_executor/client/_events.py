"""The event stream: its typed events and an incremental Server-Sent-Events decoder.

`GET /processors/{procID}/runs/{runID}/events` and `GET /events` send
`id: <n>`, `event: <type>`, `data: <one-line JSON>` and a blank line per event;
lines starting with `:` are comments (keep-alives). The decoder is fed one line at a
time by either client, so both read the stream the same way. Unknown event types are
skipped: a newer server may send more kinds than this client knows.
"""

from __future__ import annotations

from typing import Annotated, Any

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
        self._type = ""
        self._data: list[str] = []
        self._id: int | None = None

    def feed(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and value.isdigit():
            self._id = int(value)
        return None

    def _dispatch(self) -> Event | None:
        kind, data, event_id = self._type or "message", "\n".join(self._data), self._id
        self._type, self._data, self._id = "", [], None
        if event_id is not None:
            self.last_id = event_id
        model = _TYPES.get(kind)
        if model is None or not data:
            return None
        try:
            event: Event = model.model_validate_json(data)
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


def describe(event: Event) -> dict[str, Any]:
    """The event as JSON-ready data, with its type, for `wiz watch --json`."""
    kind = {DoneEvent: "done", RunEvent: "run", ChunkEvent: "chunk", DroppedEvent: "dropped"}
    return {"event": kind[type(event)], **event.model_dump(mode="json", exclude_none=True)}
