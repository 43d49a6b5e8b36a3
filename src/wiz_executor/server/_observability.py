"""Routes for watching the executor: event streams, Prometheus metrics, the dashboard.

The dashboard is one static page (HTML, CSS and plain JavaScript shipped as package
data, no build step, nothing fetched from elsewhere) that reads the JSON API and the
executor-wide event stream.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ..errors import NotFound
from ..executor import Executor
from ._metrics import Metrics
from ._sse import EventStreamResponse

EVENT_FORMAT = """Server-Sent Events, each `id: <increasing int>`, `event: <type>`, \
`data: <one-line JSON>`, then a blank line. Types: `run` {ProcID, RunID, CurrentState, \
ChunkCounts{WAITING,RUNNING,SUCCEEDED,FAILED}, InputClosed}; `chunk` {ProcID, RunID, \
ChunkID, OutputID, State, Error?, Progress?{Done, Total}}; `done` (the final `run` \
payload, last event of a run's stream); `dropped` {reason}, sent to a consumer that fell \
behind, before the stream closes. An idle stream gets a `: keepalive` comment every 15 s."""

_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _stream_doc(extra: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": EVENT_FORMAT,
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **extra,
    }


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files, read once: they are small and never change at run time."""
    folder = resources.files("wiz_executor.server") / "static"
    files: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _STATIC_TYPES:
            files[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return files


def add_observability_routes(app: FastAPI, metrics: Metrics, errors: dict[int | str, Any]) -> None:
    """Add /events, the run event stream, /metrics and the dashboard to `app`."""
    static = _load_static()

    def executor(request: Request) -> Executor:
        ex: Executor = request.app.state.executor
        return ex

    @app.get(
        "/processors/{procID}/runs/{runID}/events",
        tags=["events"],
        response_class=EventStreamResponse,
        status_code=200,
        responses=_stream_doc({404: errors[404]}),
    )
    async def run_events(request: Request, procID: str, runID: str) -> EventStreamResponse:
        """*Extension*: a run's state changes as they happen. Starts with a `run` event
        (the current state), then `run` and `chunk` events, and ends with `done` once the
        run is SUCCEEDED or ERRORED (at once if it already is); a deleted run's stream
        ends with `dropped`."""
        ex = executor(request)
        run = ex.get_run(procID, runID)
        return EventStreamResponse(ex.events.subscribe(run), ex.events.keepalive)

    @app.get(
        "/events",
        tags=["events"],
        response_class=EventStreamResponse,
        status_code=200,
        responses=_stream_doc({503: {"description": "the executor is shutting down"}}),
    )
    async def all_events(request: Request) -> EventStreamResponse:
        """*Extension*: the `run` and `chunk` events of every run of the executor. It
        never ends by itself (only when the executor stops, or with `dropped` when the
        consumer falls behind); it starts with no snapshot: read the runs from the JSON
        API once the stream is open."""
        ex = executor(request)
        return EventStreamResponse(ex.events.subscribe(None), ex.events.keepalive)

    @app.get(
        "/metrics",
        tags=["executor"],
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        """*Extension*: metrics in the Prometheus text format (chunks and runs by state,
        finished chunks and their durations, per-run finished chunks, workers, queue
        depth, HTTP requests, the journal's commits and size, the process's CPU, memory
        and open files)."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", tags=["dashboard"], response_class=HTMLResponse)
    async def dashboard() -> Response:
        """*Extension*: the live dashboard page (processors, runs, chunks, workers)."""
        return _static_response(static, "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def dashboard_asset(name: str) -> Response:
        return _static_response(static, name)


def _static_response(static: dict[str, tuple[bytes, str]], name: str) -> Response:
    try:
        body, media_type = static[name]
    except KeyError:
        raise NotFound(f"no dashboard file {name!r}") from None
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})
