"""The journal's records: the change log the run map emits, one record per transition.

The run map stays the one owner of state; these records are what it tells the journal,
in the order its transitions happen. Each is a small frozen msgspec struct holding only
strings, numbers and decoded JSON values, so building one on the event loop costs about
as much as a tuple, and the writer thread can encode it later without touching the run
map's objects. Runs are named by (proc_id, run_id) and chunks by their input ChunkID; the
store maps them to its own keys.

Times are seconds since the epoch (`time.time()`). JSON values (`raw_data`, `out_raw`,
`configuration`) must not be changed after they are appended: the writer encodes them on
its own thread.

Records are tagged (`msgspec` tagged union), so a later version can add record types,
and executor-wide settings (`SettingChanged`) have a place already.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..api import DataFormat, State


class _Record(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Base of every record (tagged with its class name)."""


class RunConfigured(_Record, frozen=True, gc=False, tag=True):
    """A run was created by Configure. `configuration` is the Configuration as JSON
    (`model_dump(mode="json")`), stored as given and handed back by `load()`."""

    proc_id: str
    run_id: str
    configuration: Any
    created: float


class AcceptedChunk(msgspec.Struct, frozen=True, gc=False):
    """One input chunk as AddData accepted it (the input half of `runs.Chunk`)."""

    chunk_id: str
    output_id: str
    in_format: DataFormat
    raw_data: Any
    fs_driver: str = ""
    fs_location: str = ""
    generated_output_id: bool = False


class ChunksAccepted(_Record, frozen=True, gc=False, tag=True):
    """A batch of chunks an AddData accepted, WAITING, in arrival order."""

    proc_id: str
    run_id: str
    chunks: tuple[AcceptedChunk, ...]
    time: float


class ChunkStarted(_Record, frozen=True, gc=False, tag=True):
    """A worker took a chunk: attempt number `attempt` (1 for the first) begins, RUNNING.

    `host`, `pid` and `worker` say where it runs, for the chunk's attempt history.
    """

    proc_id: str
    run_id: str
    chunk_id: str
    attempt: int
    time: float
    host: str = ""
    pid: int = 0
    worker: str = ""
    node: str = ""


class ChunkSucceeded(_Record, frozen=True, gc=False, tag=True):
    """A chunk ended SUCCEEDED with this output; ends its latest attempt (`attempt`, its
    number, 0 if it never started)."""

    proc_id: str
    run_id: str
    chunk_id: str
    attempt: int
    out_format: DataFormat
    out_raw: Any
    time: float
    out_driver: str = ""
    out_location: str = ""


class ChunkFailed(_Record, frozen=True, gc=False, tag=True):
    """A chunk ended FAILED with `error`; ends its latest attempt, unless `attempt` is 0: it
    failed without running (its run was deleted while it waited, or it ran out of
    attempts across restarts and its last attempt was cut short by the process dying)."""

    proc_id: str
    run_id: str
    chunk_id: str
    attempt: int
    error: str
    time: float


class ChunkRequeued(_Record, frozen=True, gc=False, tag=True):
    """A chunk's attempt number `attempt` was lost with the worker running it (a Ray
    actor or node died): the attempt ends without an outcome, with `error` saying why,
    and the chunk is WAITING again, to run as a new attempt."""

    proc_id: str
    run_id: str
    chunk_id: str
    attempt: int
    error: str
    time: float


class DeliveryPending(_Record, frozen=True, gc=False, tag=True):
    """A chunk's output is to be sent to downstream location number `downstream` (its
    index in the run's DownstreamLocations, which never change). Journalled before the
    send, so a pending delivery survives a restart and is resent."""

    proc_id: str
    run_id: str
    chunk_id: str
    downstream: int


class DeliveryDone(_Record, frozen=True, gc=False, tag=True):
    """The downstream run accepted the output: the delivery is no longer pending."""

    proc_id: str
    run_id: str
    chunk_id: str
    downstream: int


class DeliveryFailed(_Record, frozen=True, gc=False, tag=True):
    """The delivery was given up with `error` (kept on the chunk as its delivery error)."""

    proc_id: str
    run_id: str
    chunk_id: str
    downstream: int
    error: str


class InputClosed(_Record, frozen=True, gc=False, tag=True):
    """The end-of-input call: the run takes no more chunks."""

    proc_id: str
    run_id: str


class RunFinished(_Record, frozen=True, gc=False, tag=True):
    """A run ended in `state` (SUCCEEDED or ERRORED) at `time`; `purge` counts
    --keep-finished from this time."""

    proc_id: str
    run_id: str
    state: State
    time: float


class RunRetried(_Record, frozen=True, gc=False, tag=True):
    """The retry call: the FAILED chunks named go back to WAITING (error and output
    cleared, attempts kept) and a finished run is unfinished again. The outputs named in
    `redelivered` lose their delivery error; their deliveries, pending again, are
    journalled as `DeliveryPending` records beside this one."""

    proc_id: str
    run_id: str
    chunk_ids: tuple[str, ...]
    time: float
    redelivered: tuple[str, ...] = ()


class RunDeleted(_Record, frozen=True, gc=False, tag=True):
    """A run was deleted: the journal forgets it and everything of it."""

    proc_id: str
    run_id: str


class RunControlled(_Record, frozen=True, gc=False, tag=True):
    """A running run was changed live (`PATCH …/config`, pause, resume, cancel):
    `control` is its whole live state as JSON, `{"MaxWorkers": n, "ChunkTimeout": s,
    "WorkModel": name, "Paused": bool, "Cancelled": bool}` (the ExecutorConfig fields as
    changed, each only once it has been changed; `Cancelled` makes the run end ERRORED,
    until a retry clears it), so the last record wins and a restart applies it over the
    configuration Configure journalled."""

    proc_id: str
    run_id: str
    control: Any


class SettingChanged(_Record, frozen=True, gc=False, tag=True):
    """An executor-wide setting changed at run time (none do yet; the room is kept)."""

    key: str
    value: Any


Record = (
    RunConfigured
    | ChunksAccepted
    | ChunkStarted
    | ChunkSucceeded
    | ChunkFailed
    | ChunkRequeued
    | DeliveryPending
    | DeliveryDone
    | DeliveryFailed
    | InputClosed
    | RunFinished
    | RunRetried
    | RunDeleted
    | RunControlled
    | SettingChanged
)
"""Every record the journal takes."""
