"""/metrics: exact values after known workloads, labels by route template, one registry
per app."""

from __future__ import annotations

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for, wait_run_done
from wiz_executor import DataChunkState, Executor, create_app
from wiz_executor.metrics import Histogram

DATA_ROUTE = "/processors/{procID}/runs/{runID}/data"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def configure(client: httpx.AsyncClient, run: str, chunks: int, **ec: int) -> None:
    body = {"ExpectedData": {"NumChunks": chunks}, "ExecutorConfig": ec}
    resp = await client.post(f"/processors/noop/runs/{run}/config", json=body)
    assert resp.status_code == 200, resp.text


async def test_counters_after_five_succeeded_and_two_failed(
    client: httpx.AsyncClient, executor: Executor
) -> None:
    await configure(client, "r", 7)
    for i in range(7):
        raw = {"Fail": True} if i in (2, 5) else {"i": i}
        resp = await client.post(
            "/processors/noop/runs/r/data", json={"ChunkID": f"c{i}", "RawData": raw}
        )
        assert resp.status_code == 200
    assert (await wait_run_done(client, "noop", "r"))["CurrentState"] == "ERRORED"

    m = await scrape(client)
    assert value(m, "wiz_chunks_finished_total", processor="noop", state="SUCCEEDED") == 5
    assert value(m, "wiz_chunks_finished_total", processor="noop", state="FAILED") == 2
    assert value(m, "wiz_chunk_duration_seconds_count", processor="noop") == 7
    assert value(m, "wiz_chunk_duration_seconds_bucket", processor="noop", le="+Inf") == 7
    assert value(m, "wiz_chunk_duration_seconds_sum", processor="noop") > 0
    for state, n in {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 5, "FAILED": 2}.items():
        assert value(m, "wiz_chunks", processor="noop", state=state) == n
    for state, n in {"CONFIGURED": 0, "RUNNING": 0, "SUCCEEDED": 0, "ERRORED": 1}.items():
        assert value(m, "wiz_runs", processor="noop", state=state) == n
    assert value(m, "wiz_queue_depth") == 0
    assert value(m, "wiz_workers_busy") == 0
    assert value(m, "wiz_workers_max") == executor.settings.max_workers
    # the seven AddData calls were answered by the fast path, and still counted
    assert value(m, "wiz_http_requests_total", method="POST", route=DATA_ROUTE, status="200") == 7
    assert value(m, "wiz_http_request_duration_seconds_count", method="POST", route=DATA_ROUTE) == 7
    config_route = "/processors/{procID}/runs/{runID}/config"
    assert value(m, "wiz_http_requests_total", method="POST", route=config_route, status="200") == 1
    run_route = "/processors/{procID}/runs/{runID}"
    polls = value(m, "wiz_http_requests_total", method="GET", route=run_route, status="200")
    assert polls >= 1  # wait_run_done polled it


async def test_gauges_read_the_executor_while_chunks_wait(
    client: httpx.AsyncClient, executor: Executor
) -> None:
    await configure(client, "slow", 3, MaxWorkers=1)
    chunks = [{"ChunkID": f"c{i}", "RawData": {"SleepMs": 60_000}} for i in range(3)]
    assert (await client.post("/processors/noop/runs/slow/data", json=chunks)).status_code == 200
    await wait_for(lambda: executor.runs.counts[DataChunkState.RUNNING] == 1, what="one running")

    m = await scrape(client)
    assert value(m, "wiz_workers_busy") == 1
    assert value(m, "wiz_queue_depth") == 2
    assert value(m, "wiz_chunks", processor="noop", state="RUNNING") == 1
    assert value(m, "wiz_chunks", processor="noop", state="WAITING") == 2
    assert value(m, "wiz_runs", processor="noop", state="RUNNING") == 1

    # deleting the run cancels its chunks, running and waiting (all fail, as on shutdown):
    # the gauges drop to nothing, the counters keep what ended; only the one that ran is timed
    assert (await client.delete("/processors/noop/runs/slow")).status_code == 200
    m = await scrape(client)
    assert value(m, "wiz_queue_depth") == 0
    assert value(m, "wiz_workers_busy") == 0
    assert value(m, "wiz_runs", processor="noop", state="RUNNING") == 0
    assert value(m, "wiz_chunks", processor="noop", state="RUNNING") == 0
    assert value(m, "wiz_chunks_finished_total", processor="noop", state="FAILED") == 3
    assert value(m, "wiz_chunks_finished_total", processor="noop", state="SUCCEEDED") == 0
    assert value(m, "wiz_chunk_duration_seconds_count", processor="noop") == 1


async def test_http_labels_are_route_templates_never_raw_paths(client: httpx.AsyncClient) -> None:
    assert (await client.get("/processors/noop/runs/secret-run-1")).status_code == 404
    assert (await client.get("/no/such/path-xyz")).status_code == 404
    resp = await client.post("/processors/noop/runs/secret-run-2/data", json={"ChunkID": "c"})
    assert resp.status_code == 404  # answered by the fast path
    # (An unknown run is a 404 before its body is read: a run that exists reads it.)
    config = {"ExpectedData": {"NumChunks": 0}}
    assert (await client.post("/processors/noop/runs/secret-run-3/config", json=config)).is_success
    resp = await client.post("/processors/noop/runs/secret-run-3/data", content=b"{not json")
    assert resp.status_code == 400

    m = await scrape(client)
    run_route = "/processors/{procID}/runs/{runID}"
    assert value(m, "wiz_http_requests_total", method="GET", route=run_route, status="404") == 1
    assert value(m, "wiz_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(m, "wiz_http_requests_total", method="POST", route=DATA_ROUTE, status="404") == 1
    assert value(m, "wiz_http_requests_total", method="POST", route=DATA_ROUTE, status="400") == 1
    # The HTTP series: the per-run series (wiz_run_*) name their runs by design.
    labels = {v for (name, ls) in m if name.startswith("wiz_http_") for (_, v) in ls}
    assert labels
    assert not any("secret" in v or "xyz" in v for v in labels), labels


async def test_the_framework_own_routes_are_labelled_by_their_path(
    client: httpx.AsyncClient,
) -> None:
    """/docs and /openapi.json are plain Starlette routes: they are still routes."""
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs")).status_code == 200
    m = await scrape(client)
    for route in ("/openapi.json", "/docs"):
        assert value(m, "wiz_http_requests_total", method="GET", route=route, status="200") == 1
    assert ("wiz_http_requests_total", _labels("GET", "unmatched", "200")) not in m


async def test_each_app_has_its_own_registry(executor: Executor) -> None:
    async with _client(executor) as a, _client(executor) as b:
        for _ in range(3):
            assert (await a.get("/processors")).status_code == 200
        in_a = await scrape(a)
        in_b = await scrape(b)
    assert (
        value(in_a, "wiz_http_requests_total", method="GET", route="/processors", status="200") == 3
    )
    assert ("wiz_http_requests_total", _labels("GET", "/processors", "200")) not in in_b
    # the executor's own numbers are the same through either app
    assert value(in_a, "wiz_workers_max") == value(in_b, "wiz_workers_max")
    # and nothing went to the process-wide default registry
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "wiz_" not in default


def test_histogram_buckets_are_cumulative_upper_bounds() -> None:
    hist = Histogram([0.1, 1.0, 10.0])
    for v in (0.05, 0.1, 0.5, 1.0, 5.0, 50.0):
        hist.observe(v)
    assert hist.cumulative() == [(0.1, 2), (1.0, 4), (10.0, 5), (float("inf"), 6)]
    assert hist.count == 6
    assert hist.sum == pytest.approx(56.65)


def _labels(method: str, route: str, status: str) -> frozenset[tuple[str, str]]:
    return frozenset({"method": method, "route": route, "status": status}.items())


def _client(executor: Executor) -> httpx.AsyncClient:
    app = create_app(executor=executor)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://executor")
