"""A blocking `run` that timed out keeps its thread (Python cannot stop a thread), but
that thread must not keep one of the executor's worker threads: other chunks need them.

`Hang` blocks on a `threading.Event` the test sets, so "two threads are stuck" is a
state the test sets up and ends, not a race.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _gates import add, asgi_client, configure, run_path
from conftest import wait_for, wait_run_done
from wiz_executor import Context, Executor, Input, Processor, ProcessorConfig, Registry, Settings

pytestmark = pytest.mark.anyio

TIMEOUT = "processor did not finish the chunk within 1 s (timeout)"


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a thread blocked


@pytest.fixture
def returned() -> list[str]:
    """Chunks whose hung call has returned, in order."""
    return []


@pytest.fixture
async def served(
    tmp_path: Path, release: threading.Event, returned: list[str]
) -> AsyncIterator[tuple[Executor, httpx.AsyncClient]]:
    class Hang(Processor[ProcessorConfig]):
        id = "hang"
        name = "blocks until the test releases it, when asked to"

        def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            if data.raw_data == "hang":
                release.wait(timeout=60)
                context.report_progress(1, 1)  # from an abandoned thread: must be ignored
                returned.append(data.chunk_id)
                return "late"
            return data.raw_data

    class Plain(Processor[ProcessorConfig]):
        id = "plain"
        name = "answers with its RawData, from a thread"

        def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
            return data.raw_data

    settings = Settings(data_dir=tmp_path, max_workers=2)
    async with (
        Executor(settings, Registry([Hang, Plain])) as executor,
        asgi_client(executor) as client,
    ):
        try:
            yield executor, client
        finally:
            release.set()


async def healthz_workers(client: httpx.AsyncClient) -> dict[str, int]:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    workers: dict[str, int] = resp.json()["workers"]
    return workers


async def metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def chunk(client: httpx.AsyncClient, proc: str, run: str, chunk_id: str) -> dict[str, Any]:
    resp = await client.get(f"{run_path(proc, run)}/data/input/{chunk_id}")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def failed(client: httpx.AsyncClient, proc: str, run: str, chunk_id: str) -> bool:
    return (await chunk(client, proc, run, chunk_id))["State"] == "FAILED"


@pytest.mark.parametrize("work_model", ["POOL", "LIFETIME"])
async def test_hung_threads_do_not_take_the_executor_s_threads(
    served: tuple[Executor, httpx.AsyncClient],
    release: threading.Event,
    returned: list[str],
    work_model: str,
) -> None:
    executor, client = served
    await configure(client, "hang", "r", num_chunks=3, ChunkTimeout=1, WorkModel=work_model)
    hung = [{"ChunkID": "h1", "RawData": "hang"}, {"ChunkID": "h2", "RawData": "hang"}]
    assert (await add(client, "hang", "r", hung)).is_success
    for chunk_id in ("h1", "h2"):
        await wait_for(lambda c=chunk_id: failed(client, "hang", "r", c), what=f"{chunk_id}")
        assert (await chunk(client, "hang", "r", chunk_id))["Error"] == TIMEOUT
    assert (await healthz_workers(client))["abandoned"] == 2
    assert await metric(client, "wiz_abandoned_threads") == 2

    # --max-workers is 2 and both threads it had are stuck: a chunk still gets one
    assert (await add(client, "hang", "r", {"ChunkID": "ok", "RawData": "fine"})).is_success
    assert (await wait_run_done(client, "hang", "r"))["CurrentState"] == "ERRORED"
    ok = await chunk(client, "hang", "r", "ok")
    assert (ok["State"], ok.get("Error")) == ("SUCCEEDED", None)
    assert (await client.get(f"{run_path('hang', 'r')}/data/output/ok-out")).json()[
        "RawData"
    ] == "fine"

    release.set()
    await wait_for(lambda: sorted(returned) == ["h1", "h2"], what="the hung calls to return")
    await wait_for(
        lambda: executor.threads.abandoned == 0, what="the returned threads to be counted"
    )
    assert (await healthz_workers(client))["abandoned"] == 0
    assert await metric(client, "wiz_abandoned_threads") == 0
    # what the abandoned calls returned, and the progress they reported, changed nothing
    for chunk_id in ("h1", "h2"):
        body = await chunk(client, "hang", "r", chunk_id)
        assert (body["State"], body["Error"], body.get("Progress")) == ("FAILED", TIMEOUT, None)
    # and the executor still has its two threads
    await configure(client, "plain", "after", num_chunks=4)
    chunks = [{"ChunkID": f"c{i}", "RawData": i} for i in range(4)]
    assert (await add(client, "plain", "after", chunks)).is_success
    assert (await wait_run_done(client, "plain", "after"))["CurrentState"] == "SUCCEEDED"


async def test_past_the_cap_a_hanging_processor_s_chunks_fail_at_once(
    served: tuple[Executor, httpx.AsyncClient], release: threading.Event
) -> None:
    """Stuck threads are bounded: once the executor holds its limit of them, a processor
    that has stuck threads gets its blocking chunks failed at once, saying why, while
    other processors still run; it runs again when its threads come back."""
    executor, client = served
    executor.threads.max_abandoned = 2
    await configure(client, "hang", "r", num_chunks=3, ChunkTimeout=1)
    hung = [{"ChunkID": "h1", "RawData": "hang"}, {"ChunkID": "h2", "RawData": "hang"}]
    assert (await add(client, "hang", "r", hung)).is_success
    await wait_for(lambda: executor.threads.abandoned == 2, what="two stuck threads")

    assert (await add(client, "hang", "r", {"ChunkID": "more", "RawData": "fine"})).is_success
    await wait_run_done(client, "hang", "r")
    error = (await chunk(client, "hang", "r", "more"))["Error"]
    assert "2 threads of processor 'hang' are still stuck" in error
    assert "its limit is 2" in error

    await configure(client, "plain", "p", num_chunks=1)
    assert (await add(client, "plain", "p", {"ChunkID": "c", "RawData": 1})).is_success
    assert (await wait_run_done(client, "plain", "p"))["CurrentState"] == "SUCCEEDED"

    release.set()
    await wait_for(lambda: executor.threads.abandoned == 0, what="the stuck threads to return")
    await configure(client, "hang", "again", num_chunks=1)
    assert (await add(client, "hang", "again", {"ChunkID": "c", "RawData": 2})).is_success
    assert (await wait_run_done(client, "hang", "again"))["CurrentState"] == "SUCCEEDED"
