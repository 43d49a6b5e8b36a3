"""Every API operation as data: the request to send and how to read its answer.

`Client` and `AsyncClient` only execute these `Call`s (send, retry on 429, parse), so a
path, a body or a response model is written once for both. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
from pydantic import TypeAdapter

from ..api import (
    AddDataResult,
    CancelResult,
    Configuration,
    Data,
    DataChunkState,
    DataSpec,
    EndOfInputResult,
    ExecutorLimits,
    Processor,
    RetryResult,
    Run,
    RunChange,
    RunHistory,
    WorkModel,
)
from ._errors import Target, error_from_response

T = TypeVar("T")

_JSON_HEADERS = {"content-type": "application/json"}
_processors = TypeAdapter(list[Processor])
_runs = TypeAdapter(list[Run])
_batch = TypeAdapter(list[Data])

ChunkInput = Data | Mapping[str, Any]
"""A chunk as a model or as its JSON object."""


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the parser of its successful answer."""

    method: str
    path: str
    read: Callable[[bytes], T]
    target: Target = field(default_factory=Target)
    body: bytes | None = None
    read_response: Callable[[httpx.Response], T] | None = None
    """Used instead of `read` when the answer's headers matter too (GetData's Link)."""

    @property
    def headers(self) -> dict[str, str]:
        return _JSON_HEADERS if self.body is not None else {}

    def result(self, response: httpx.Response) -> T:
        """The parsed answer, or the package's exception for an error answer."""
        if response.is_success:
            if self.read_response is not None:
                return self.read_response(response)
            return self.read(response.content)
        raise error_from_response(response, self.target)


def _q(segment: str) -> str:
    return quote(segment, safe="")


def _run_path(proc_id: str, run_id: str) -> str:
    return f"/processors/{_q(proc_id)}/runs/{_q(run_id)}"


def _on_run(
    method: str, proc_id: str, run_id: str, suffix: str, read: Callable[[bytes], T]
) -> Call[T]:
    """A bodiless request to one of a run's sub-resources, its errors told of that run."""
    return Call(method, _run_path(proc_id, run_id) + suffix, read, Target(proc_id, run_id))


def processors() -> Call[list[Processor]]:
    return Call("GET", "/processors", _processors.validate_json)


def processor(proc_id: str) -> Call[Processor]:
    return Call("GET", f"/processors/{_q(proc_id)}", Processor.model_validate_json, Target(proc_id))


def runs(proc_id: str) -> Call[list[Run]]:
    return Call("GET", f"/processors/{_q(proc_id)}/runs", _runs.validate_json, Target(proc_id))


def run(proc_id: str, run_id: str) -> Call[Run]:
    return Call("GET", _run_path(proc_id, run_id), Run.model_validate_json, Target(proc_id, run_id))


def config(proc_id: str, run_id: str) -> Call[Configuration]:
    return Call(
        "GET",
        _run_path(proc_id, run_id) + "/config",
        Configuration.model_validate_json,
        Target(proc_id, run_id),
    )


def configure(
    proc_id: str, run_id: str, configuration: Configuration | Mapping[str, Any]
) -> Call[Run]:
    if not isinstance(configuration, Configuration):
        configuration = Configuration.model_validate(configuration)
    return Call(
        "POST",
        _run_path(proc_id, run_id) + "/config",
        Run.model_validate_json,
        Target(proc_id, run_id, configuring=True),
        configuration.model_dump_json().encode(),
    )


def as_data(chunk: ChunkInput) -> Data:
    return chunk if isinstance(chunk, Data) else Data.model_validate(chunk)


def add_data(
    proc_id: str, run_id: str, data: ChunkInput | Sequence[ChunkInput]
) -> Call[AddDataResult]:
    """One chunk, or a sequence of them sent as one batch (accepted or rejected whole)."""
    if isinstance(data, Data | Mapping):
        body = as_data(data).model_dump_json().encode()
    else:
        body = _batch.dump_json([as_data(chunk) for chunk in data])
    return Call(
        "POST",
        _run_path(proc_id, run_id) + "/data",
        AddDataResult.model_validate_json,
        Target(proc_id, run_id),
        body,
    )


def data(proc_id: str, run_id: str) -> Call[DataSpec]:
    return Call(
        "GET",
        _run_path(proc_id, run_id) + "/data",
        DataSpec.model_validate_json,
        Target(proc_id, run_id),
    )


@dataclass(frozen=True, slots=True)
class RunWhy:
    """What `why` reads of a run: the run itself (its `Waiting` reason, `FreeRoom` and
    counts) and its RUNNING input chunks (each with `RunningSince`, `Progress`, `Slow`)."""

    run: Run
    running: list[Data]
    """The first RUNNING chunks, in arrival order (at most the `limit` asked for)."""


@dataclass(frozen=True, slots=True)
class DataPage:
    """One page of GetData, and the call that reads the next one (None on the last)."""

    data: DataSpec
    next: Call[DataPage] | None


def data_page(
    proc_id: str,
    run_id: str,
    state: DataChunkState | str | None = None,
    limit: int = 1000,
    after: str | None = None,
) -> Call[DataPage]:
    """A page of a run's data: at most `limit` chunks, optionally only those in `state`,
    after the input chunk `after` (in arrival order)."""
    params: dict[str, Any] = {}
    if state is not None:
        params["state"] = DataChunkState(state).value
    params["limit"] = limit
    if after is not None:
        params["after"] = after
    path = _run_path(proc_id, run_id) + "/data"
    target = Target(proc_id, run_id)

    def read(response: httpx.Response) -> DataPage:
        link = response.links.get("next")
        following = None
        if link is not None:
            # Follow the Link's query on our own path, so a base URL with a prefix
            # (a client behind a proxy) is kept.
            query = urlsplit(link["url"]).query
            following = Call("GET", f"{path}?{query}", _no_read, target, read_response=read)
        return DataPage(DataSpec.model_validate_json(response.content), following)

    query = urlencode(params, quote_via=quote)
    return Call("GET", f"{path}?{query}", _no_read, target, read_response=read)


def _no_read(content: bytes) -> Any:
    raise AssertionError("read through read_response")


def chunk(proc_id: str, run_id: str, chunk_id: str, kind: str) -> Call[Data]:
    """`kind` is "input" or "output" (an output is named by its own ID)."""
    return Call(
        "GET",
        f"{_run_path(proc_id, run_id)}/data/{kind}/{_q(chunk_id)}",
        Data.model_validate_json,
        Target(proc_id, run_id, chunk_id, kind),
    )


def end_of_input(proc_id: str, run_id: str) -> Call[EndOfInputResult]:
    return _on_run("POST", proc_id, run_id, "/end-of-input", EndOfInputResult.model_validate_json)


def retry(proc_id: str, run_id: str) -> Call[RetryResult]:
    return _on_run("POST", proc_id, run_id, "/retry", RetryResult.model_validate_json)


def cancel(proc_id: str, run_id: str) -> Call[CancelResult]:
    return _on_run("POST", proc_id, run_id, "/cancel", CancelResult.model_validate_json)


def change_config(
    proc_id: str,
    run_id: str,
    max_workers: int | None = None,
    chunk_timeout: float | None = None,
    work_model: WorkModel | str | None = None,
) -> Call[Run]:
    """PATCH a running run's configuration: only the fields given (not None) change."""
    change = RunChange(
        MaxWorkers=max_workers,
        ChunkTimeout=chunk_timeout,
        WorkModel=None if work_model is None else WorkModel(str(work_model).upper()),
    )
    return Call(
        "PATCH",
        _run_path(proc_id, run_id) + "/config",
        Run.model_validate_json,
        Target(proc_id, run_id),
        change.model_dump_json(exclude_none=True).encode(),
    )


def pause(proc_id: str, run_id: str) -> Call[Run]:
    return _on_run("POST", proc_id, run_id, "/pause", Run.model_validate_json)


def history(proc_id: str, run_id: str) -> Call[RunHistory]:
    return _on_run("GET", proc_id, run_id, "/history", RunHistory.model_validate_json)


def resume(proc_id: str, run_id: str) -> Call[Run]:
    return _on_run("POST", proc_id, run_id, "/resume", Run.model_validate_json)


def executor_limits() -> Call[ExecutorLimits]:
    return Call("GET", "/executor", ExecutorLimits.model_validate_json)


def set_executor_limits(
    max_workers: int | None = None, max_pending: int | None = None
) -> Call[ExecutorLimits]:
    """PATCH the executor-wide limits: only those given (not None) change."""
    limits = ExecutorLimits(MaxWorkers=max_workers, MaxPending=max_pending)
    return Call(
        "PATCH",
        "/executor",
        ExecutorLimits.model_validate_json,
        body=limits.model_dump_json(exclude_none=True).encode(),
    )


def delete(proc_id: str, run_id: str) -> Call[Run]:
    return Call(
        "DELETE", _run_path(proc_id, run_id), Run.model_validate_json, Target(proc_id, run_id)
    )


def _no_body(content: bytes) -> None:
    return None


def events(proc_id: str | None, run_id: str | None) -> Call[None]:
    """The event stream of one run, or (without `run_id`) the executor-wide one."""
    if run_id is not None:
        if proc_id is None:
            raise ValueError("a run's events need its processor ID too")
        return Call(
            "GET",
            _run_path(proc_id, run_id) + "/events",
            _no_body,
            Target(proc_id, run_id, events=True),
        )
    return Call("GET", "/events", _no_body, Target(proc_id or "", events=True))
