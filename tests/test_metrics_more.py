"""/metrics beyond chunks and HTTP: the process collector, the journal, per-run
throughput, and Prometheus naming conventions checked on a real scrape."""

from __future__ import annotations

import dataclasses
import re
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from conftest import wait_run_done
from wiz_executor import Executor, Settings, create_app
from wiz_executor.journal import SqliteStore

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
NOT_BASE_UNITS = re.compile(
    r"_(ms|us|ns|millis|milliseconds|microseconds|nanoseconds|minutes|hours|days|"
    r"kb|mb|gb|kilobytes|megabytes|gigabytes|bits|percent)(_|$)"
)
OUR_PREFIXES = ("wiz_", "process_")


async def scrape_families(client: httpx.AsyncClient) -> dict[str, tuple[str, list[Sample]]]:
    """Each family of a scrape: {name: (type, samples)}, parsed by prometheus_client."""
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    return {
        family.name: (family.type, family.samples)
        for family in text_string_to_metric_families(resp.text)
    }


def sample_names(families: dict[str, tuple[str, list[Sample]]]) -> set[str]:
    """Every name a query can use: the samples' (`_total`, `_bucket`, ...) and, for a
    family with no sample yet, what its type exposes."""
    names: set[str] = set()
    for name, (kind, samples) in families.items():
        names.update(s.name for s in samples)
        names.update(exposed(name, kind))
    return names


def exposed(name: str, kind: str) -> list[str]:
    if kind == "counter":
        return [f"{name}_total"]
    if kind == "histogram":
        return [f"{name}_bucket", f"{name}_sum", f"{name}_count"]
    if kind == "summary":
        return [name, f"{name}_sum", f"{name}_count"]
    return [name]


def find(samples: list[Sample], name: str, **labels: str) -> float:
    [value] = [s.value for s in samples if s.name == name and s.labels == labels]
    return value


async def run_some_chunks(client: httpx.AsyncClient, run: str, n: int, failed: int = 0) -> None:
    body = {"ExpectedData": {"NumChunks": n}}
    assert (await client.post(f"/processors/noop/runs/{run}/config", json=body)).is_success
    batch = [
        {"ChunkID": f"c{i}", "RawData": {"Fail": True} if i < failed else {"i": i}}
        for i in range(n)
    ]
    assert (await client.post(f"/processors/noop/runs/{run}/data", json=batch)).is_success
    await wait_run_done(client, "noop", run)


async def test_every_metric_name_follows_the_conventions(client: httpx.AsyncClient) -> None:
    """Counters end in `_total`, nothing else does; durations and sizes are histograms
    or gauges in base units (`_seconds`, `_bytes`); names and labels are valid."""
    await run_some_chunks(client, "names", 3, failed=1)
    families = await scrape_families(client)
    assert len(families) > 15
    for name, (kind, samples) in families.items():
        assert NAME.fullmatch(name), name
        assert name.startswith(OUR_PREFIXES), f"{name}: not the executor's namespace"
        assert not NOT_BASE_UNITS.search(name), f"{name}: use base units (seconds, bytes)"
        if kind == "counter":
            assert {s.name for s in samples} <= {f"{name}_total", f"{name}_created"}, name
        else:
            assert not name.endswith("_total"), f"{name}: only counters end in _total"
        if kind == "histogram":
            assert name.endswith(("_seconds", "_bytes")), f"{name}: a histogram needs a unit"
        if "duration" in name or "latency" in name:
            assert name.endswith("_seconds"), name
        if "size" in name or "memory" in name:
            assert name.endswith("_bytes"), name
        for sample in samples:
            for label in sample.labels:
                assert LABEL.fullmatch(label), (name, label)
                assert not label.startswith("__"), (name, label)


async def test_the_process_collector(client: httpx.AsyncClient) -> None:
    families = await scrape_families(client)
    assert families["process_cpu_seconds"][0] == "counter"
    _, samples = families["process_resident_memory_bytes"]
    assert find(samples, "process_resident_memory_bytes") > 1_000_000
    _, samples = families["process_open_fds"]
    assert find(samples, "process_open_fds") > 0  # the journal's file, at least


async def test_the_journal(client: httpx.AsyncClient, executor: Executor) -> None:
    store = executor.journal
    assert isinstance(store, SqliteStore)
    await run_some_chunks(client, "j", 10)
    families = await scrape_families(client)
    commits = find(families["wiz_journal_commits"][1], "wiz_journal_commits_total")
    assert commits >= 1
    rows = find(families["wiz_journal_rows_written"][1], "wiz_journal_rows_written_total")
    assert rows >= 10 * 2  # each chunk's row inserted, then updated as it ran
    _, samples = families["wiz_journal_commit_duration_seconds"]
    count = find(samples, "wiz_journal_commit_duration_seconds_count")
    assert count >= commits  # one observation per commit (a later one may have landed)
    assert count <= store.commits
    assert find(samples, "wiz_journal_commit_duration_seconds_bucket", le="+Inf") == count
    assert find(samples, "wiz_journal_commit_duration_seconds_sum") > 0
    size = find(families["wiz_journal_size_bytes"][1], "wiz_journal_size_bytes")
    on_disk = store.path.stat().st_size
    assert size >= on_disk > 0


async def test_no_journal_series_when_ephemeral(settings: Settings) -> None:
    async with Executor(dataclasses.replace(settings, ephemeral=True)) as ex:
        transport = httpx.ASGITransport(app=create_app(executor=ex))
        async with httpx.AsyncClient(transport=transport, base_url="http://executor") as c:
            await run_some_chunks(c, "e", 2)
            families = await scrape_families(c)
    assert not [name for name in families if name.startswith("wiz_journal_")]
    assert "wiz_run_chunks_finished" in families


async def test_per_run_throughput_and_its_series_leave_with_the_run(
    client: httpx.AsyncClient, executor: Executor
) -> None:
    await run_some_chunks(client, "a", 5, failed=2)
    await run_some_chunks(client, "b", 3)
    _, samples = (await scrape_families(client))["wiz_run_chunks_finished"]
    name = "wiz_run_chunks_finished_total"
    assert find(samples, name, processor="noop", run="a", state="SUCCEEDED") == 3
    assert find(samples, name, processor="noop", run="a", state="FAILED") == 2
    assert find(samples, name, processor="noop", run="b", state="SUCCEEDED") == 3
    # Deleted: its series go.
    assert (await client.delete("/processors/noop/runs/a")).is_success
    _, samples = (await scrape_families(client))["wiz_run_chunks_finished"]
    assert {s.labels["run"] for s in samples} == {"b"}
    # Purged as --keep-finished does: gone too.
    assert await executor.purge_finished(now=time.time() + 1e9) == [("noop", "b")]
    _, samples = (await scrape_families(client))["wiz_run_chunks_finished"]
    assert samples == []
