"""Wire models of the Wiz Processor API, and nothing else.

Field names, paths and enum spellings are fixed by existing Go clients, so every model
uses the PascalCase JSON names of the spec. Enums are written as names and read as names
or integer codes (the Go client may send either). A missing field takes Go's zero value.
Fields marked *extension* are new: optional on input, and omitted from output while
unset, so an old client sees exactly the shapes it knows.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

__all__ = [
    "CancelResult",
    "ChunkAttempt",
    "ChunkCounts",
    "Configuration",
    "Data",
    "DataChunkState",
    "DataFormat",
    "DataSpec",
    "DataType",
    "DownstreamDataLocation",
    "ErrorBody",
    "ExecutorConfig",
    "ExecutorLimits",
    "ExpectedData",
    "FilesystemReference",
    "HistorySample",
    "Processor",
    "Progress",
    "RayConfig",
    "Run",
    "RunChange",
    "RunHistory",
    "State",
    "Waiting",
    "WaitingReason",
    "WorkModel",
]


class _CodedEnum(StrEnum):
    """An enum whose JSON form is its name; `code` is the integer the Go side uses."""

    @property
    def code(self) -> int:
        return list(type(self)).index(self) + 1

    @classmethod
    def from_wire(cls, value: Any) -> Any:
        """Accept a name or an integer code; leave anything else for pydantic to reject."""
        return _FROM_CODE.get((cls, value), value) if type(value) is int else value


class State(_CodedEnum):
    """State of a run."""

    UNINITIALIZED = "UNINITIALIZED"
    CONFIGURED = "CONFIGURED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    ERRORED = "ERRORED"


class DataChunkState(_CodedEnum):
    """State of a chunk: WAITING → RUNNING → SUCCEEDED | FAILED."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class DataFormat(_CodedEnum):
    RAW = "RAW"
    FILESYSTEM_REF = "FILESYSTEM_REF"


class DataType(_CodedEnum):
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


_FROM_CODE: dict[tuple[type[_CodedEnum], int], _CodedEnum] = {
    (enum, member.code): member
    for enum in (State, DataChunkState, DataFormat, DataType)
    for member in enum
}


class WorkModel(StrEnum):
    """*Extension*: how a run's chunks get workers (see the README's "Work models").

    The one list of work-model names: the scheduler serves each one with the class
    registered for it (`scheduling.register`), and the CLI offers these names."""

    LIFETIME = "LIFETIME"
    POOL = "POOL"
    RAY = "RAY"


_State = State
_WorkModel = WorkModel
E = TypeVar("E", bound=_CodedEnum)


def _wire_enum(enum: type[E], default: E) -> Any:
    """A name or a code; Go's zero value (`0`, `"DataFormat(0)"`) means the default."""
    zero = f"{enum.__name__}(0)"

    def read(value: Any) -> Any:
        # `type(...) is int`: JSON false and 0.0 equal 0 in Python but are not Go's zero.
        if (type(value) is int and value == 0) or value == zero:
            return default
        return enum.from_wire(value)

    return Annotated[
        enum,
        BeforeValidator(read),
        Field(default=default, description=f"a name, or its integer code 1..{len(enum)}"),
    ]


def _executor_owned(enum: type[E], default: E) -> Any:
    """A field the executor sets itself (a chunk's State and Type): whatever a client
    sends there ("DataChunkState(0)", 0, a real name) is read without failing. A real
    name or code is kept, so a client reading GetData sees each chunk's true state."""

    def lenient(value: Any) -> E:
        value = enum.from_wire(value)
        if isinstance(value, enum):
            return value
        try:
            return enum(value)
        except (ValueError, TypeError):
            return default

    return Annotated[enum, BeforeValidator(lenient), Field(default=default)]


class _Wire(BaseModel):
    """Base of the wire models: Go-style zero values, unknown fields ignored, and
    unset extension fields left out of the output.

    Ignored, not dropped silently: the server finds a request's unknown fields with
    `unknown_fields` and reports them (a `Warnings` extension), or refuses them under
    `--strict-config`. The models themselves stay lenient so that a client reading a
    newer executor's answers never fails on a field it does not know."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    _extensions: frozenset[str] = frozenset()

    @model_serializer(mode="wrap")
    def _drop_unset_extensions(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        for name in self._extensions:
            if out.get(name) is None:
                out.pop(name, None)
        return out


def _finite_json(value: Any) -> Any:
    """Refuse NaN and infinities anywhere in a value. pydantic's JSON parser reads `NaN`,
    `Infinity` and `1e400`; JSON, Go and the AddData fast path (msgspec) do not, and an
    output holding one could not be written back as JSON."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                raise ValueError("JSON numbers must be finite (no NaN, Infinity or 1e400)")
        elif kind is list:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.values())
    return value


class Processor(_Wire):
    ProcID: str = Field(examples=["noop"])
    Name: str = Field(examples=["No Operation Processor"])
    Version: str = Field(examples=["0.1.0"])


def _whole_number(value: Any) -> Any:
    """JSON has one kind of number, so `3.0` is the integer 3 (JSON Schema says so too,
    and clients generated from the OpenAPI document may write it so). A fraction, a
    string or a boolean is left for the strict integer check to refuse."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


_Count = Annotated[NonNegativeInt, BeforeValidator(_whole_number)]
_Limit = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(_whole_number)]


class ExpectedData(_Wire):
    NumChunks: _Count = Field(
        0, le=2**32 - 1, description="chunks the run will receive; 0 = not known in advance"
    )


_ExpectedData = ExpectedData


class DownstreamDataLocation(_Wire):
    Hostname: str = Field(
        min_length=1, description="host:port (or a base URL) of the executor serving the next run"
    )
    ProcID: str = Field(min_length=1)
    RunID: str = Field(min_length=1)


_Amount = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]


class RayConfig(_Wire):
    """*Extension*: what each Ray actor of a RAY run needs, and its batch size."""

    NumCPUs: _Amount = Field(1, description="CPUs each actor holds (fractions allowed)")
    NumGPUs: _Amount = Field(0, description="GPUs each actor holds (fractions allowed)")
    Resources: dict[Annotated[str, Field(min_length=1, max_length=200)], _Amount] = Field(
        default_factory=dict,
        max_length=32,
        description='custom Ray resources each actor holds, e.g. {"gpu_like": 1}',
    )
    BatchSize: Annotated[int, BeforeValidator(_whole_number)] = Field(
        100, ge=1, le=10_000, description="most chunks sent to an actor in one call"
    )


_RayConfig = RayConfig


class ExecutorConfig(_Wire):
    _extensions = frozenset({"WorkModel", "ChunkTimeout", "Ray"})

    MaxWorkers: _Count = Field(
        0, description="chunks of this run processed at once; 0 = the executor's default"
    )
    SendDownstream: bool = False
    DownstreamLocations: list[DownstreamDataLocation] | None = Field(
        None,
        description="where outputs go when SendDownstream is true; empty or null sends "
        "nothing (the original manager configures its leaves so)",
    )
    WorkModel: _WorkModel | None = Field(
        None,
        description=f"*Extension*: {' or '.join(_WorkModel)}; unset = the executor's default",
    )
    ChunkTimeout: NonNegativeFloat | None = Field(
        None,
        allow_inf_nan=False,  # `1e400` reads as infinity, which reads back as null
        description="*Extension*: seconds a chunk may take before it fails; "
        "unset or 0 = the executor's default",
    )
    Ray: _RayConfig | None = Field(
        None, description="*Extension*: the Ray actors' resources (RAY runs only)"
    )


_ExecutorConfig = ExecutorConfig


class Configuration(_Wire):
    ExpectedData: _ExpectedData = Field(default_factory=lambda: _ExpectedData())
    ExecutorConfig: _ExecutorConfig = Field(default_factory=lambda: _ExecutorConfig())
    Processor: Annotated[Any, AfterValidator(_finite_json)] = Field(
        None, description="the processor's own configuration; null = its defaults"
    )


_Configuration = Configuration


class ChunkCounts(_Wire):
    WAITING: int = 0
    RUNNING: int = 0
    SUCCEEDED: int = 0
    FAILED: int = 0


_ChunkCounts = ChunkCounts


class WaitingReason(StrEnum):
    """*Extension*: why a run's WAITING chunks are not running (its `Waiting.Reason`).

    The executor reports the first that applies, in this order (see `waiting.py`)."""

    RECOVERING = "RECOVERING"
    """the executor is rebuilding its runs from the journal and has not given this run's
    chunks to its workers yet"""
    STOPPING = "STOPPING"
    """the executor is shutting down: no chunk starts any more"""
    PAUSED = "PAUSED"
    """the run is paused"""
    SWITCHING = "SWITCHING"
    """the run is moving to another work model: its chunks in flight on the old one
    finish first"""
    CLUSTER = "CLUSTER"
    """the work model's cluster cannot take them (unreachable, or lacking resources)"""
    JOURNAL = "JOURNAL"
    """accepted chunks start once the journal has committed them (or never: it failed)"""
    RUN_LIMIT = "RUN_LIMIT"
    """every worker the run may have (`MaxWorkers`) is busy"""
    SETUP = "SETUP"
    """a worker of the run is still in its processor's `setup`"""
    EXECUTOR_LIMIT = "EXECUTOR_LIMIT"
    """other runs hold every executor-wide worker slot (`--max-workers`)"""
    QUEUED = "QUEUED"
    """a free worker has yet to pick them up (a moment: nothing holds them)"""


_WaitingReason = WaitingReason


class Waiting(_Wire):
    """*Extension*: why a run's WAITING chunks are not running, computed when asked."""

    Reason: _WaitingReason = Field(description="the first reason that applies (see the README)")
    Detail: str = Field(
        description="for a person: the numbers behind the reason",
        examples=["8 of MaxWorkers 8 busy"],
    )
    Since: str = Field(
        description="since when (RFC 3339): the setup's start for SETUP, recovery's or "
        "the shutdown's start for RECOVERING and STOPPING; otherwise since when the run "
        "has had chunks waiting without a break"
    )


_Waiting = Waiting


class Run(_Wire):
    _extensions = frozenset(
        {
            "ChunkCounts",
            "InputClosed",
            "Warnings",
            "Started",
            "Ended",
            "DurationSeconds",
            "ChunksPerSecond",
            "EtaSeconds",
            "Waiting",
            "FreeRoom",
            "Paused",
        }
    )

    RunID: str
    Configuration: _Configuration
    CurrentState: Annotated[_State, BeforeValidator(_State.from_wire)]
    ChunkCounts: _ChunkCounts | None = Field(
        None, description="*Extension*: the run's input chunks by state"
    )
    InputClosed: bool | None = Field(
        None, description="*Extension*: true once end of input was declared"
    )
    Warnings: list[str] | None = Field(
        None,
        description="*Extension*: what Configure ignored or changed in the configuration "
        "(unknown fields, a MaxWorkers clamped to the executor's limit); omitted when none",
    )
    Started: str | None = Field(None, description="*Extension*: when it was configured (RFC 3339)")
    Ended: str | None = Field(
        None,
        description="*Extension*: when it reached SUCCEEDED or ERRORED (RFC 3339); omitted "
        "while it is not finished",
    )
    DurationSeconds: float | None = Field(
        None, description="*Extension*: seconds from Started to Ended, or to now while it runs"
    )
    ChunksPerSecond: float | None = Field(
        None,
        description="*Extension*: chunks finished (succeeded or failed) per second over the "
        "last minute; omitted with under a second to measure over",
    )
    EtaSeconds: float | None = Field(
        None,
        description="*Extension*: seconds until its chunks are all finished at that rate; "
        "only when its size is known (NumChunks, or end of input declared) and the rate "
        "is above 0 (0 once all are finished)",
    )
    Waiting: _Waiting | None = Field(
        None,
        description="*Extension*: why the run's WAITING chunks are not running; omitted "
        "when none waits",
    )
    FreeRoom: NonNegativeInt | None = Field(
        None,
        description="*Extension*: how many more chunks the run would accept now (the "
        "executor's --max-pending less the chunks waiting, within the run's NumChunks; 0 "
        "once its input is closed or it has finished)",
    )
    Paused: bool | None = Field(
        None,
        description="*Extension*: true while the run is paused (no chunk of it starts); "
        "omitted otherwise",
    )


class RunChange(_Wire):
    """*Extension*: the body of `PATCH …/runs/{runID}/config`, a partial ExecutorConfig:
    the fields given change on the running run; absent (or null) ones stay as they are."""

    MaxWorkers: _Count | None = Field(
        None, description="chunks of this run processed at once; 0 = the executor's default"
    )
    ChunkTimeout: NonNegativeFloat | None = Field(
        None,
        allow_inf_nan=False,
        description="seconds a chunk started from now on may take; 0 = the executor's default",
    )
    WorkModel: _WorkModel | None = Field(
        None,
        description="the work model to move the run to: its chunks in flight finish on the "
        "old one, the rest run on the new one",
    )


class ExecutorLimits(_Wire):
    """*Extension*: the executor-wide limits (`GET /executor`), and the body of
    `PATCH /executor` (a partial: absent or null fields stay as they are)."""

    MaxWorkers: _Limit | None = Field(
        None,
        description="chunks processed at once, and live processor instances, across all "
        "runs (--max-workers)",
    )
    MaxPending: _Limit | None = Field(
        None, description="waiting chunks held before AddData answers 429 (--max-pending)"
    )


class FilesystemReference(_Wire):
    Driver: str = Field("", examples=["local"])
    Location: str = Field("", examples=["/path/in/the/data/dir"])


_FilesystemReference = FilesystemReference


class Progress(_Wire):
    Done: int = 0
    Total: int | None = None


_Progress = Progress


def _null_is_zero(value: Any) -> Any:
    """Go reads `null` for a struct field as its zero value, and so does the fast path."""
    return {} if value is None else value


def _names(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _data_as_accepted(schema: dict[str, Any]) -> None:
    """Make the documented Data schema say what AddData (`wire.decode_chunks`) accepts,
    which the fields' types alone do not: a required, non-empty ChunkID; Format as a
    name, an integer code or Go's zero; State and Type as anything (ignored on input,
    names on output); a null FilesystemReference (read as empty); the executor's
    reports (Error, DeliveryError, Progress) as read-only: ignored in a request."""
    props = schema["properties"]
    props["ChunkID"] = {
        "type": "string",
        "minLength": 1,
        "description": "the chunk's ID, unique within the run (an empty one is a 400)",
    }
    schema["required"] = ["ChunkID"]
    props["Format"] = {
        "anyOf": [
            {"type": "string", "enum": _names(DataFormat)},
            {"type": "integer", "enum": [0, 1, 2]},
            {"type": "string", "enum": ["DataFormat(0)"]},
        ],
        "default": "RAW",
        "description": "a name, or its integer code (1, 2); Go's zero (0, "
        '"DataFormat(0)") means RAW. Written by the executor as a name.',
    }
    for name, enum in (("Type", DataType), ("State", DataChunkState)):
        props[name] = {
            "anyOf": [{"type": "string", "enum": _names(enum)}, {}],
            "default": _names(enum)[0],
            "description": f"set by the executor (one of {', '.join(_names(enum))}); "
            "on input any value is ignored",
        }
    props["FilesystemReference"] = {
        "anyOf": [props["FilesystemReference"], {"type": "null"}],
        "description": "where a FILESYSTEM_REF chunk's data is; null reads as empty",
    }
    for name in ("Error", "DeliveryError", "Progress", "Attempts", "RunningSince", "Slow"):
        props[name]["readOnly"] = True  # the executor's report; ignored in a request


class ChunkAttempt(_Wire):
    """*Extension*: one run of a chunk by a worker (its `Attempts` history entry)."""

    _extensions = frozenset({"Node"})

    Attempt: int = Field(1, description="its number: 1 for the first run of the chunk")
    Start: str = Field("", description="when it started (RFC 3339)")
    End: str | None = Field(
        None,
        description="when it ended (RFC 3339); null while it runs, and for an attempt the "
        "executor stopped or crashed in",
    )
    Outcome: DataChunkState | None = Field(
        None, description="SUCCEEDED or FAILED; null while it runs or if it never ended"
    )
    Error: str | None = Field(None, description="why it failed")
    Host: str = Field("", description="the host it ran on (a RAY run: its node's address)")
    PID: int = Field(0, description="the process it ran in (a RAY run: its actor's)")
    Worker: str = Field("", description="the worker (task, or Ray actor) that ran it")
    Node: str | None = Field(None, description="*Extension*: the Ray node ID (RAY runs)")


class Data(_Wire):
    """A chunk. On AddData, `State` and `Type` are the executor's to set and are ignored."""

    model_config = ConfigDict(json_schema_extra=_data_as_accepted)
    _extensions = frozenset(
        {"Error", "DeliveryError", "Progress", "Attempts", "RunningSince", "Slow"}
    )

    ChunkID: str = ""
    Format: _wire_enum(DataFormat, DataFormat.RAW)  # type: ignore[valid-type]
    Type: _executor_owned(DataType, DataType.INPUT)  # type: ignore[valid-type]
    State: _executor_owned(DataChunkState, DataChunkState.WAITING)  # type: ignore[valid-type]
    RawData: Annotated[Any, AfterValidator(_finite_json)] = None
    FilesystemReference: Annotated[_FilesystemReference, BeforeValidator(_null_is_zero)] = Field(
        default_factory=lambda: _FilesystemReference()
    )
    AssociatedChunkID: str = Field(
        "",
        description="on input, the ID of the output chunk to produce (made up when empty); "
        "on output, the ID of the input it came from",
    )
    Error: str | None = Field(None, description="*Extension*: why a FAILED chunk failed")
    DeliveryError: str | None = Field(
        None, description="*Extension*: why sending this output downstream finally failed"
    )
    Progress: _Progress | None = Field(
        None, description="*Extension*: work done on a RUNNING chunk, as the processor reports it"
    )
    Attempts: list[ChunkAttempt] | None = Field(
        None,
        description="*Extension*, on input chunks: every run of the chunk so far, oldest "
        "first (a chunk runs again after the executor stopped or crashed while it ran: "
        "processing is at-least-once)",
    )
    RunningSince: str | None = Field(
        None,
        description="*Extension*, on a RUNNING input chunk: when its current attempt "
        "started (RFC 3339)",
    )
    Slow: bool | None = Field(
        None,
        description="*Extension*, on a RUNNING input chunk: true once it has run longer "
        "than half its ChunkTimeout; omitted otherwise",
    )


class DataSpec(_Wire):
    In: list[Data] = Field(default_factory=list)
    Out: list[Data] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """Every error answer: `{"value": "<what went wrong, for a person>"}`."""

    value: str


class AddDataResult(_Wire):
    """*Extension*: what AddData did (the original answered `null`)."""

    _extensions = frozenset({"Warnings"})

    Accepted: int = Field(description="new chunks queued by this request")
    Duplicates: int = Field(description="chunks already held with the same content (no-ops)")
    Warnings: list[str] | None = Field(
        None,
        description="*Extension*: what the executor ignored in the chunks (unknown "
        "fields); omitted when none",
    )


class EndOfInputResult(_Wire):
    RunID: str
    CurrentState: _State
    Accepted: int


class CancelResult(_Wire):
    """*Extension*: what a cancel did."""

    RunID: str
    CurrentState: _State = Field(description="the run's state after the cancel")
    Cancelled: int = Field(description="WAITING chunks failed without running")


class HistorySample(_Wire):
    """*Extension*: a run's counts at one moment (see `RunHistory`)."""

    Time: str = Field(description="when it was taken (RFC 3339)")
    Finished: int = Field(description="chunks finished (succeeded or failed) so far")
    Queued: int = Field(description="chunks WAITING then")
    Running: int = Field(description="chunks RUNNING then")


class RunHistory(_Wire):
    """*Extension*: a run's recent counts, sampled by the executor on a timer (about
    the last ten minutes, oldest first), for charts of its rate and queue."""

    IntervalSeconds: float = Field(description="seconds between two samples")
    Samples: list[HistorySample] = Field(default_factory=list)


class RetryResult(_Wire):
    """*Extension*: what a retry re-queued (0 and 0 when nothing had failed)."""

    RunID: str
    CurrentState: _State = Field(description="the run's state after the retry")
    Chunks: int = Field(description="FAILED chunks queued again (WAITING)")
    Deliveries: int = Field(description="failed downstream deliveries sent again")


def unknown_fields(model: type[BaseModel], value: Any, path: str = "") -> list[str]:
    """The dotted paths of the keys in a decoded JSON `value` that `model` does not know,
    looking into nested wire objects (and lists of them) but not into free-form values
    (`RawData`, `Processor`), whose content is not the wire's to judge.

    The models ignore unknown fields (`_Wire`); this is how they are found, to be
    reported or refused instead of dropped silently. A value of the wrong shape is left
    for validation to reject, so this never raises.
    """
    found: list[str] = []
    if type(value) is not dict:
        return found
    fields = model.model_fields
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        field = fields.get(key)
        if field is None:
            found.append(where)
            continue
        nested = _wire_model_of(field.annotation)
        if nested is None:
            continue
        kind, sub = nested
        if kind == "one":
            found += unknown_fields(sub, item, where)
        elif type(item) is list:
            for i, element in enumerate(item):
                found += unknown_fields(sub, element, f"{where}[{i}]")
    return found


def _wire_model_of(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("one", M) for a field holding a wire object M (or null), ("list", M) for a list
    of them, None for anything else."""
    for arg in (annotation, *get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, _Wire):
            return "one", arg
        if get_origin(arg) is list:
            (element,) = get_args(arg) or (None,)
            if isinstance(element, type) and issubclass(element, _Wire):
                return "list", element
    return None


data_adapter: TypeAdapter[Data] = TypeAdapter(Data)
data_batch_adapter: TypeAdapter[list[Data]] = TypeAdapter(list[Data])
StateName = Literal["UNINITIALIZED", "CONFIGURED", "RUNNING", "SUCCEEDED", "ERRORED"]
