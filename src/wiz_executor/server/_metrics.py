"""Prometheus metrics of one app: HTTP requests, and the executor read at scrape time.

Each app has its own `CollectorRegistry` (in `app.state.metrics`), so several apps can
live in one process. Counting a request is a dict increment and a histogram bucket, in
the middleware below for routed requests and in the AddData fast path for the rest;
route templates, never raw paths, are the label values, so the number of series stays
bounded whatever clients send.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api import DataChunkState, State
from ..metrics import Histogram
from ..waiting import free_room, waiting_by_reason
from ._collectors import JournalCollector, RunCollector

if TYPE_CHECKING:
    from ..executor import Executor

ADD_DATA_ROUTE = "/processors/{procID}/runs/{runID}/data"
UNMATCHED = "unmatched"
"""The route label of requests no route matched (404s): raw paths would be unbounded."""
REFUSED = "refused"
"""The route label of requests the guard refused (401, 403, 421) before any routing."""

HTTP_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RUN_STATES = (State.CONFIGURED, State.RUNNING, State.SUCCEEDED, State.ERRORED)
_CHUNK_STATES = tuple(DataChunkState)


class HttpStats:
    """Requests by (method, route, status) and their durations by (method, route)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], Histogram] = {}

    def histogram(self, method: str, route: str) -> Histogram:
        hist = self.durations.get((method, route))
        if hist is None:
            hist = self.durations[(method, route)] = Histogram(HTTP_BUCKETS)
        return hist

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:
            method = "OTHER"
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.histogram(method, route).observe(seconds)

    def add_data_observer(self) -> Callable[[int, float], None]:
        """What the AddData fast path calls per request: as little work as possible."""
        requests = self.requests
        observe = self.histogram("POST", ADD_DATA_ROUTE).observe

        def add_data_answered(status: int, seconds: float) -> None:
            key = ("POST", ADD_DATA_ROUTE, status)
            requests[key] = requests.get(key, 0) + 1
            observe(seconds)

        return add_data_answered

    def refusal_observer(self) -> Callable[[str, int, float], None]:
        """What the guard calls per refused request."""

        def refused(method: str, status: int, seconds: float) -> None:
            self.observe(method, REFUSED, status, seconds)

        return refused


class HttpMetricsMiddleware:
    """Counts and times every request that reaches the router (pure ASGI, so streaming
    responses pass through untouched)."""

    def __init__(self, app: ASGIApp, stats: HttpStats) -> None:
        self.app = app
        self.stats = stats
        self._by_endpoint: dict[Any, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or self._plain_route(scope) or UNMATCHED
            self.stats.observe(scope["method"], template, status, perf_counter() - started)

    def _plain_route(self, scope: Scope) -> str | None:
        """The template of a plain Starlette route (FastAPI's /docs, /openapi.json):
        those set only the endpoint they matched in the scope, not the route."""
        endpoint = scope.get("endpoint")
        if endpoint is None:
            return None
        if self._by_endpoint is None:
            app = scope.get("app")
            self._by_endpoint = {
                r.endpoint: r.path
                for r in getattr(app, "routes", ())
                if hasattr(r, "endpoint") and hasattr(r, "path")
            }
        return self._by_endpoint.get(endpoint)


class ExecutorCollector(Collector):
    """Reads the executor when scraped: cheap (one pass over the runs), always current."""

    def __init__(self, executor: Callable[[], Executor | None], http: HttpStats) -> None:
        self._executor = executor
        self._http = http

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: the executor may not exist yet

    def collect(self) -> Iterator[Metric]:
        executor = self._executor()
        if executor is not None:
            yield from _executor_metrics(executor)
            yield from _waiting_metrics(executor)
        yield from _http_metrics(self._http)


def _executor_metrics(ex: Executor) -> Iterator[Metric]:
    processors = [p.ProcID for p in ex.processors()]
    chunks = {p: dict.fromkeys(_CHUNK_STATES, 0) for p in processors}
    runs = {p: dict.fromkeys(_RUN_STATES, 0) for p in processors}
    for run in ex.runs:
        by_state = chunks.setdefault(run.proc_id, dict.fromkeys(_CHUNK_STATES, 0))
        for state, n in run.counts.items():
            by_state[state] += n
        of_proc = runs.setdefault(run.proc_id, dict.fromkeys(_RUN_STATES, 0))
        of_proc[run.state] = of_proc.get(run.state, 0) + 1

    gauge = GaugeMetricFamily(
        "wiz_chunks", "Input chunks held, by processor and state.", labels=["processor", "state"]
    )
    for proc, by_state in chunks.items():
        for chunk_state, n in by_state.items():
            gauge.add_metric([proc, chunk_state.value], n)
    yield gauge

    gauge = GaugeMetricFamily(
        "wiz_runs", "Runs held, by processor and state.", labels=["processor", "state"]
    )
    for proc, by_run_state in runs.items():
        for run_state, n in by_run_state.items():
            gauge.add_metric([proc, run_state.value], n)
    yield gauge

    finished = CounterMetricFamily(
        "wiz_chunks_finished",
        "Chunks that ended SUCCEEDED or FAILED since the executor started.",
        labels=["processor", "state"],
    )
    duration = HistogramMetricFamily(
        "wiz_chunk_duration_seconds",
        "Seconds a chunk ran, from RUNNING to SUCCEEDED or FAILED.",
        labels=["processor"],
    )
    totals = ex.runs.finished_totals
    for proc in dict.fromkeys([*processors, *totals, *ex.stats.durations]):
        counts = totals.get(proc, {})
        for state in (DataChunkState.SUCCEEDED, DataChunkState.FAILED):
            finished.add_metric([proc, state.value], counts.get(state, 0))
        _add_histogram(duration, [proc], ex.stats.duration(proc))
    yield finished
    yield duration

    limiter = ex.scheduler.limiter
    yield GaugeMetricFamily(
        "wiz_workers_busy",
        "Workers running a chunk now.",
        value=ex.runs.counts[DataChunkState.RUNNING],
    )
    yield GaugeMetricFamily(
        "wiz_processor_instances",
        "Live processor instances (setting up, running or idle), each holding a worker slot.",
        value=limiter.in_use,
    )
    yield GaugeMetricFamily(
        "wiz_workers_max", "Executor-wide limit on workers.", value=limiter.total
    )
    yield GaugeMetricFamily(
        "wiz_abandoned_threads",
        "Threads still running a blocking call whose chunk timed out or was cancelled "
        "(replaced in the pool; they end when the call returns).",
        value=ex.threads.abandoned,
    )
    yield GaugeMetricFamily(
        "wiz_queue_depth",
        "WAITING chunks across all runs (AddData answers 429 past the limit).",
        value=ex.runs.counts[DataChunkState.WAITING],
    )
    yield GaugeMetricFamily(
        "wiz_event_streams", "Open event-stream subscriptions.", value=ex.events.subscribers
    )
    yield CounterMetricFamily(
        "wiz_event_streams_dropped",
        "Event-stream consumers dropped for falling behind.",
        value=ex.events.dropped,
    )
    if ex.stats.per_node:  # (RAY runs only)
        by_node = CounterMetricFamily(
            "wiz_ray_node_chunks",
            "Chunks RAY runs sent to each Ray node since the executor started.",
            labels=["node", "address"],
        )
        for (node, address), n in sorted(ex.stats.per_node.items()):
            by_node.add_metric([node, address], n)
        yield by_node


def _waiting_metrics(ex: Executor) -> Iterator[Metric]:
    """Why chunks wait, and how many more the executor takes: computed at the scrape,
    one reason per run with waiting chunks (see `waiting.py`)."""
    gauge = GaugeMetricFamily(
        "wiz_waiting_chunks",
        "WAITING chunks by why they are not running (their run's Waiting reason).",
        labels=["reason"],
    )
    for reason, n in waiting_by_reason(ex).items():
        gauge.add_metric([reason.value], n)
    yield gauge
    yield GaugeMetricFamily(
        "wiz_free_room",
        "Chunks the executor would accept now (--max-pending less the chunks waiting).",
        value=free_room(ex),
    )


def _http_metrics(http: HttpStats) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "wiz_http_requests",
        "HTTP requests answered, by method, route template and status.",
        labels=["method", "route", "status"],
    )
    for (method, route, status), n in sorted(http.requests.items()):
        requests.add_metric([method, route, str(status)], n)
    yield requests
    durations = HistogramMetricFamily(
        "wiz_http_request_duration_seconds",
        "Seconds from request to the end of the response, by method and route template.",
        labels=["method", "route"],
    )
    for (method, route), hist in sorted(http.durations.items()):
        _add_histogram(durations, [method, route], hist)
    yield durations


def _add_histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    family.add_metric(
        labels,
        buckets=[(_le(bound), n) for bound, n in hist.cumulative()],
        sum_value=hist.sum,
    )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class Metrics:
    """An app's metrics: its HTTP stats and the registry the /metrics route renders."""

    def __init__(self, executor: Callable[[], Executor | None]) -> None:
        self.http = HttpStats()
        self.registry = CollectorRegistry()
        self.registry.register(ExecutorCollector(executor, self.http))
        self.registry.register(JournalCollector(executor))
        self.registry.register(RunCollector(executor))
        # The process's CPU seconds, resident memory, open files (from /proc; nothing
        # on platforms without it), on this app's registry like the rest.
        ProcessCollector(registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def executor_getter(state: Any) -> Callable[[], Executor | None]:
    """The app's executor when it has one (it is set by the lifespan or by create_app)."""
    return lambda: getattr(state, "executor", None)
