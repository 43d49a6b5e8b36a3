"""The Python client, sync and async, against the real app over HTTP.

Async tests use `live_server` (uvicorn in the test's loop); the blocking `Client` needs
a server on another thread, which `EmbeddedExecutor` provides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing
from typing import Any

import anyio
import httpx
import pytest

import wiz_executor
from conftest import live_server, wait_for
from wiz_executor import Settings, State
from wiz_executor import client as client_module
from wiz_executor.api import Configuration, Data, DataChunkState, Run
from wiz_executor.client import (
    AsyncClient,
    ChunkEvent,
    Client,
    DoneEvent,
    DroppedEvent,
    EventDecoder,
    EventsUnavailable,
    RetryPolicy,
    RunEvent,
)
from wiz_executor.client._retry import retry_after
from wiz_executor.errors import (
    ChunkNotFound,
    Conflict,
    ExecutorFull,
    InvalidConfiguration,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ProcessorNotFound,
    RunNotFound,
)
from wiz_executor.pipelines import EmbeddedExecutor


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[str]:
    async with live_server(settings) as (url, _):
        yield url


@pytest.fixture
async def wiz(server: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server) as c:
        yield c


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedExecutor]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("wiz-data"), shutdown_grace=5)
    with EmbeddedExecutor(settings) as ex:
        yield ex


class Recorder(httpx.AsyncBaseTransport):
    """A real transport that keeps every (method, path, status, headers) it saw."""

    def __init__(self, fake_no_events: bool = False, fake_empty_events: bool = False) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.seen: list[tuple[str, str, int, httpx.Headers]] = []
        self.fake_no_events = fake_no_events
        self.fake_empty_events = fake_empty_events

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.fake_no_events and request.url.path.endswith("/events"):
            # An older executor: no such route.
            response = httpx.Response(404, json={"value": "Not Found: GET " + request.url.path})
        elif self.fake_empty_events and request.url.path.endswith("/events"):
            # A broken stream: answered, then closed at once without an event.
            response = httpx.Response(200, headers={"content-type": "text/event-stream"})
        else:
            response = await self.inner.handle_async_request(request)
        self.seen.append((request.method, request.url.path, response.status_code, response.headers))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def drain(
    items: AsyncGenerator[Any, None], each: Callable[[Any], Awaitable[None]] | None = None
) -> list[Any]:
    """Consume an async generator to its end (closing it), calling `each` per item."""
    seen = []
    async with aclosing(items):
        async for item in items:
            seen.append(item)
            if each is not None:
                await each(item)
    return seen


# -- the operations -------------------------------------------------------------------


async def test_every_operation_async(wiz: AsyncClient) -> None:
    assert "noop" in [p.ProcID for p in await wiz.processors()]
    noop = await wiz.processor("noop")
    assert (noop.ProcID, noop.Name) == ("noop", "No Operation Processor")
    assert await wiz.runs("noop") == []

    run = await wiz.configure("noop", "r1", {"ExpectedData": {"NumChunks": 3}})
    assert (run.RunID, run.CurrentState) == ("r1", State.CONFIGURED)
    config = await wiz.config("noop", "r1")
    assert config == Configuration.model_validate({"ExpectedData": {"NumChunks": 3}})
    # The same configuration again is a no-op, as a model this time.
    assert (await wiz.configure("noop", "r1", config)).RunID == "r1"

    one = await wiz.add_data("noop", "r1", Data.model_validate({"ChunkID": "a", "RawData": 1}))
    assert (one.Accepted, one.Duplicates) == (1, 0)
    batch = await wiz.add_data(
        "noop",
        "r1",
        [{"ChunkID": "a", "RawData": 1}, {"ChunkID": "b", "RawData": [2]}, {"ChunkID": "c"}],
    )
    assert (batch.Accepted, batch.Duplicates) == (2, 1)

    final = await wiz.wait("noop", "r1", timeout=20)
    assert final.CurrentState is State.SUCCEEDED
    assert final.ChunkCounts is not None
    assert final.ChunkCounts.SUCCEEDED == 3
    assert [r.RunID for r in await wiz.runs("noop")] == ["r1"]

    spec = await wiz.data("noop", "r1")
    assert [c.ChunkID for c in spec.In] == ["a", "b", "c"]
    assert [c.RawData for c in spec.Out] == [1, [2], None]
    chunk_in = await wiz.input_chunk("noop", "r1", "b")
    assert (chunk_in.RawData, chunk_in.AssociatedChunkID) == ([2], "b-out")
    chunk_out = await wiz.output_chunk("noop", "r1", "b-out")
    assert (chunk_out.RawData, chunk_out.State) == ([2], DataChunkState.SUCCEEDED)

    # A run of unknown length completes on end of input.
    await wiz.configure("noop", "open", {})
    await wiz.add_data("noop", "open", {"ChunkID": "x", "RawData": "x"})
    closed = await wiz.end_of_input("noop", "open")
    assert (closed.RunID, closed.Accepted) == ("open", 1)
    assert (await wiz.wait("noop", "open", timeout=20)).CurrentState is State.SUCCEEDED

    gone = await wiz.delete("noop", "r1")
    assert gone.RunID == "r1"
    with pytest.raises(RunNotFound):
        await wiz.run("noop", "r1")


def test_every_operation_sync(embedded: EmbeddedExecutor) -> None:
    with Client(embedded.url) as wiz:
        assert "noop" in [p.ProcID for p in wiz.processors()]
        assert wiz.processor("noop").ProcID == "noop"
        wiz.configure("noop", "sync-1", {"ExpectedData": {"NumChunks": 2}})
        assert wiz.config("noop", "sync-1").ExpectedData.NumChunks == 2
        added = wiz.add_data("noop", "sync-1", [{"ChunkID": "a", "RawData": {"k": 1}}])
        assert added.Accepted == 1
        wiz.add_data("noop", "sync-1", {"ChunkID": "b", "RawData": {"k": 2}})
        final = wiz.wait("noop", "sync-1", timeout=20)
        assert final.CurrentState is State.SUCCEEDED
        assert "sync-1" in [r.RunID for r in wiz.runs("noop")]
        assert [c.RawData for c in wiz.data("noop", "sync-1").Out] == [{"k": 1}, {"k": 2}]
        assert wiz.input_chunk("noop", "sync-1", "a").ChunkID == "a"
        assert wiz.output_chunk("noop", "sync-1", "a-out").RawData == {"k": 1}
        wiz.configure("noop", "sync-2", {})
        assert wiz.end_of_input("noop", "sync-2").Accepted == 0
        assert wiz.run("noop", "sync-2").CurrentState is State.SUCCEEDED
        assert wiz.delete("noop", "sync-1").RunID == "sync-1"
        with pytest.raises(RunNotFound):
            wiz.data("noop", "sync-1")


# -- errors ---------------------------------------------------------------------------


async def test_errors_are_the_package_exceptions_with_the_server_message(
    wiz: AsyncClient, server: str
) -> None:
    with pytest.raises(ProcessorNotFound) as proc_missing:
        await wiz.processor("nope")
    async with httpx.AsyncClient(base_url=server) as raw:
        body = (await raw.get("/processors/nope")).json()
    assert proc_missing.value.message == body["value"]
    assert str(proc_missing.value) == body["value"]

    with pytest.raises(RunNotFound, match="no run 'missing'"):
        await wiz.run("noop", "missing")

    await wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": 1}})
    with pytest.raises(ChunkNotFound, match="no output chunk 'zzz'"):
        await wiz.output_chunk("noop", "r", "zzz")
    with pytest.raises(ChunkNotFound, match="no input chunk 'zzz'"):
        await wiz.input_chunk("noop", "r", "zzz")
    with pytest.raises(Conflict, match="already configured differently"):
        await wiz.configure("noop", "r", {"ExpectedData": {"NumChunks": 2}})
    with pytest.raises(InvalidConfiguration) as bad_config:
        await wiz.configure("noop", "bad", {"Processor": {"SleepMs": -5}})
    assert isinstance(bad_config.value, InvalidInput)
    assert "SleepMs" in bad_config.value.message
    with pytest.raises(InvalidInput, match="ChunkID"):
        await wiz.add_data("noop", "r", {"ChunkID": ""})
    await wiz.add_data("noop", "r", {"ChunkID": "c", "RawData": 1})
    with pytest.raises(Conflict, match="different content"):
        await wiz.add_data("noop", "r", {"ChunkID": "c", "RawData": 2})


async def test_payload_too_large_and_executor_full(settings: Settings) -> None:
    small = dataclasses.replace(settings, max_body_bytes=2000, max_pending=1)
    async with live_server(small) as (url, _), AsyncClient(url) as wiz:
        await wiz.configure("noop", "r", {})
        with pytest.raises(PayloadTooLarge) as too_large:
            await wiz.add_data("noop", "r", {"ChunkID": "big", "RawData": "x" * 5000})
        assert too_large.value.limit == 2000
        # Two chunks can never fit under max_pending=1: a 413 saying so, not a 429 that
        # a retrying client would follow for ever.
        with pytest.raises(PayloadTooLarge) as never_fits:
            await wiz.add_data("noop", "r", [{"ChunkID": "a"}, {"ChunkID": "b"}])
        assert "smaller batches" in never_fits.value.message
        # One chunk running, one waiting: the queue (max_pending=1) is full, so a third
        # is a 429 that a later retry can get through.
        await wiz.configure("noop", "q", {"ExecutorConfig": {"MaxWorkers": 1}})
        await wiz.add_data("noop", "q", {"ChunkID": "held", "RawData": {"SleepMs": 60_000}})
        await wiz.add_data("noop", "q", {"ChunkID": "waits"})
        no_retry = AsyncClient(url, retry=RetryPolicy(attempts=1))
        async with no_retry:
            with pytest.raises(ExecutorFull) as full:
                await no_retry.add_data("noop", "q", {"ChunkID": "one-more"})
        assert full.value.retry_after == small.retry_after
        assert "retry later" in full.value.message
        await wiz.delete("noop", "q")


async def test_429_is_retried_after_retry_after(settings: Settings) -> None:
    full_soon = dataclasses.replace(settings, max_pending=1, retry_after=1)
    async with live_server(full_soon) as (url, _):
        recorder = Recorder()
        async with AsyncClient(url, transport=recorder) as wiz:
            await wiz.configure(
                "noop", "r", {"ExpectedData": {"NumChunks": 3}, "ExecutorConfig": {"MaxWorkers": 1}}
            )
            await wiz.add_data("noop", "r", {"ChunkID": "a", "RawData": {"SleepMs": 300}})

            async def a_running() -> bool:
                counts = (await wiz.run("noop", "r")).ChunkCounts
                return counts is not None and counts.RUNNING == 1

            await wait_for(a_running, what="chunk a to run")
            await wiz.add_data("noop", "r", {"ChunkID": "b", "RawData": {"SleepMs": 300}})
            # b waits behind a: the queue is full, so c is answered 429 until b starts.
            result = await wiz.add_data("noop", "r", {"ChunkID": "c"})
            assert result.Accepted == 1
            assert (await wiz.wait("noop", "r", timeout=20)).CurrentState is State.SUCCEEDED
    adds = [
        (status, headers) for _, path, status, headers in recorder.seen if path.endswith("/data")
    ]
    statuses = [status for status, _ in adds[2:]]  # after a and b: the tries of chunk c
    assert statuses[0] == 429, statuses
    assert statuses[-1] == 200, statuses
    first_429 = next(headers for status, headers in adds if status == 429)
    assert first_429["retry-after"] == "1"
    response = httpx.Response(429, headers=first_429)
    assert RetryPolicy().delay(response, 1) == 1.0


def test_retry_policy() -> None:
    full = httpx.Response(429, headers={"Retry-After": "7"})
    policy = RetryPolicy(attempts=3, max_delay=5)
    assert policy.delay(full, 1) == 5  # capped
    assert policy.delay(full, 3) is None  # attempts used up
    assert policy.delay(httpx.Response(200), 1) is None
    assert RetryPolicy(default_delay=0.5).delay(httpx.Response(429), 1) == 0.5
    dated = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(dated) == 0.0  # a date in the past: now
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)


def test_sync_errors_and_unreachable(embedded: EmbeddedExecutor) -> None:
    with Client(embedded.url) as wiz:
        with pytest.raises(ProcessorNotFound, match="no processor 'nope'"):
            wiz.runs("nope")
        with pytest.raises(NotFound):
            wiz.run("noop", "never")
    with socket_closed_port() as url, Client(url) as wiz, pytest.raises(httpx.ConnectError):
        wiz.processors()


class socket_closed_port:
    """A URL on 127.0.0.1 where nothing listens (the port was bound, then freed)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        return None


# -- waiting and events ---------------------------------------------------------------


async def test_wait_returns_errored_runs(wiz: AsyncClient) -> None:
    await wiz.configure("noop", "bad", {"ExpectedData": {"NumChunks": 2}})
    await wiz.add_data(
        "noop", "bad", [{"ChunkID": "ok"}, {"ChunkID": "no", "RawData": {"Fail": True}}]
    )
    final = await wiz.wait("noop", "bad", timeout=20)
    assert final.CurrentState is State.ERRORED
    failed = await wiz.input_chunk("noop", "bad", "no")
    assert failed.State is DataChunkState.FAILED
    assert failed.Error is not None
    assert "Fail=true" in failed.Error


async def test_wait_times_out(wiz: AsyncClient) -> None:
    await wiz.configure("noop", "short", {"ExpectedData": {"NumChunks": 2}})
    await wiz.add_data("noop", "short", {"ChunkID": "only"})
    with pytest.raises(TimeoutError, match="did not finish within"):
        await wiz.wait("noop", "short", timeout=0.3)


async def test_wait_times_out_on_a_stream_that_keeps_talking(settings: Settings) -> None:
    # Keepalives (or progress events) arrive more often than the read timeout, so no
    # single read ever times out: the deadline itself must end the wait.
    async with live_server(settings) as (url, executor), AsyncClient(url) as wiz:
        executor.events.keepalive = 0.02
        await wiz.configure("noop", "chatty", {"ExpectedData": {"NumChunks": 2}})
        timed_out = False
        with anyio.move_on_after(10):  # a hang shows as timed_out staying False
            try:
                await wiz.wait("noop", "chatty", timeout=0.5)
            except TimeoutError as exc:
                timed_out = "did not finish within" in str(exc)
        assert timed_out


def test_sync_wait_times_out(embedded: EmbeddedExecutor) -> None:
    with Client(embedded.url) as wiz:
        wiz.configure("noop", "sync-short", {"ExpectedData": {"NumChunks": 2}})
        with pytest.raises(TimeoutError):
            wiz.wait("noop", "sync-short", timeout=0.3)


async def test_follow_reads_the_event_stream(wiz: AsyncClient) -> None:
    await wiz.configure("noop", "ev", {"ExpectedData": {"NumChunks": 2}})
    seen: list[Any] = []
    async with aclosing(wiz.follow("noop", "ev", timeout=20)) as items:
        async for item in items:
            seen.append(item)
            if len(seen) == 1:  # the run as it is, before anything was sent
                await wiz.add_data("noop", "ev", [{"ChunkID": "a"}, {"ChunkID": "b"}])
    chunk_events = [e for e in seen if isinstance(e, ChunkEvent)]
    assert {(e.ChunkID, e.State) for e in chunk_events} >= {
        ("a", DataChunkState.SUCCEEDED),
        ("b", DataChunkState.SUCCEEDED),
    }
    assert any(isinstance(e, DoneEvent) for e in seen)
    assert seen[-1].CurrentState is State.SUCCEEDED  # the final Run


async def test_events_of_a_run_end_with_done(wiz: AsyncClient) -> None:
    await wiz.configure("noop", "e2", {"ExpectedData": {"NumChunks": 1}})
    await wiz.add_data("noop", "e2", {"ChunkID": "a"})
    async with aclosing(wiz.events("noop", "e2")) as events:
        seen = [event async for event in events]
    assert isinstance(seen[0], RunEvent)
    assert isinstance(seen[-1], DoneEvent)
    assert seen[-1].CurrentState is State.SUCCEEDED
    assert all(e.id is not None for e in seen)


async def test_an_event_with_a_unicode_line_separator_is_not_lost(wiz: AsyncClient) -> None:
    """JSON may carry U+2028/U+2029 unescaped, and only CR and LF end an SSE line. The
    client split the stream with `str.splitlines` rules, cutting such an event in two
    and dropping it as malformed: a watch never saw that chunk's state."""
    odd = "line\u2028separator\u2029paragraph\x1cfile-separator"
    await wiz.configure("noop", "sep", {"ExpectedData": {"NumChunks": 1}})
    async with aclosing(wiz.events("noop", "sep")) as events:
        seen = [await anext(events)]  # the run as it is: the stream is open
        await wiz.add_data("noop", "sep", {"ChunkID": odd, "AssociatedChunkID": "out"})
        seen += [event async for event in events]
    assert isinstance(seen[-1], DoneEvent)
    assert {e.State for e in seen if isinstance(e, ChunkEvent) and e.ChunkID == odd} >= {
        DataChunkState.SUCCEEDED
    }


async def test_executor_wide_events_filtered_by_processor(wiz: AsyncClient) -> None:
    await wiz.configure("noop", "wide", {})
    received: list[Any] = []

    async def consume() -> None:
        async with aclosing(wiz.events("noop")) as events:
            async for event in events:
                received.append(event)
                if isinstance(event, ChunkEvent) and event.State is DataChunkState.SUCCEEDED:
                    return

    sent = 0

    async def send_until_seen() -> bool:
        # The stream has no snapshot and no sign of when it is subscribed: keep the run
        # busy until the consumer has seen something.
        nonlocal sent
        if not received:
            sent += 1
            await wiz.add_data("noop", "wide", {"ChunkID": f"c{sent}"})
        return bool(received)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await wait_for(send_until_seen, what="an executor-wide event")
    assert all(e.ProcID == "noop" and e.RunID == "wide" for e in received)
    assert isinstance(received[-1], ChunkEvent)


def test_sync_events_and_follow(embedded: EmbeddedExecutor) -> None:
    with Client(embedded.url) as wiz:
        wiz.configure("noop", "sync-ev", {"ExpectedData": {"NumChunks": 1}})
        wiz.add_data("noop", "sync-ev", {"ChunkID": "a"})
        kinds = [type(e) for e in wiz.events("noop", "sync-ev")]
        assert kinds[0] is RunEvent
        assert kinds[-1] is DoneEvent
        items = list(wiz.follow("noop", "sync-ev"))
        assert items[-1].CurrentState is State.SUCCEEDED


async def test_wait_polls_an_executor_without_events(server: str) -> None:
    recorder = Recorder(fake_no_events=True)
    async with AsyncClient(server, transport=recorder) as wiz:
        await wiz.configure("noop", "old", {"ExpectedData": {"NumChunks": 1}})
        await wiz.add_data("noop", "old", {"ChunkID": "a", "RawData": {"SleepMs": 100}})
        assert (await wiz.wait("noop", "old", timeout=20)).CurrentState is State.SUCCEEDED
        event_tries = [path for _, path, _, _ in recorder.seen if path.endswith("/events")]
        assert len(event_tries) == 1  # tried once, then polled GetRun
        assert any(m == "GET" and p.endswith("/runs/old") for m, p, _, _ in recorder.seen)
        with pytest.raises(EventsUnavailable):
            await drain(wiz.events("noop", "old"))


async def test_a_stream_that_ends_at_once_is_retried_with_backoff(server: str) -> None:
    recorder = Recorder(fake_empty_events=True)
    async with AsyncClient(server, transport=recorder) as wiz:
        await wiz.configure("noop", "empty", {"ExpectedData": {"NumChunks": 1}})
        await wiz.add_data("noop", "empty", {"ChunkID": "a", "RawData": {"SleepMs": 300}})
        assert (await wiz.wait("noop", "empty", timeout=20)).CurrentState is State.SUCCEEDED
    tries = [path for _, path, _, _ in recorder.seen if path.endswith("/events")]
    # Backing off from 50 ms, 300 ms allow a handful of tries; a busy loop makes hundreds.
    assert 1 <= len(tries) < 30, len(tries)


async def test_wait_on_a_deleted_run_raises(wiz: AsyncClient) -> None:
    await wiz.configure("noop", "del", {"ExpectedData": {"NumChunks": 1}})
    await wiz.add_data("noop", "del", {"ChunkID": "a", "RawData": {"SleepMs": 5000}})

    async def delete_it(item: Any) -> None:
        if isinstance(item, Run):  # the first item: the run as it is
            await wiz.delete("noop", "del")

    with pytest.raises(RunNotFound):
        await drain(wiz.follow("noop", "del", timeout=20), delete_it)


def test_event_decoder() -> None:
    decoder = EventDecoder("noop", "r")
    stream = (
        ": keepalive\n\n"
        "id: 1\nevent: run\n"
        'data: {"ProcID":"noop","RunID":"r","CurrentState":"RUNNING",'
        '"ChunkCounts":{"WAITING":1,"RUNNING":0,"SUCCEEDED":0,"FAILED":0},"InputClosed":false}\n\n'
        'id: 2\nevent: chunk\ndata: {"ProcID":"noop","RunID":"other","ChunkID":"x",'
        '"OutputID":"x-out","State":"RUNNING"}\n\n'
        'id: 3\nevent: chunk\ndata: {"ProcID":"noop","RunID":"r","ChunkID":"a",'
        '"OutputID":"a-out","State":4,"Error":"boom","Progress":{"Done":1,"Total":2}}\n\n'
        'id: 4\nevent: future-kind\ndata: {"x":1}\n\n'
        'id: 5\nevent: dropped\ndata: {"reason":"slow consumer"}\n\n'
    )
    events = [e for line in stream.split("\n") if (e := decoder.feed(line)) is not None]
    assert [type(e) for e in events] == [RunEvent, ChunkEvent, DroppedEvent]
    run, chunk, dropped = events
    assert isinstance(run, RunEvent)
    assert run.CurrentState is State.RUNNING
    assert run.id == 1
    assert run.ChunkCounts.WAITING == 1
    assert isinstance(chunk, ChunkEvent)
    assert (chunk.ChunkID, chunk.State, chunk.Error) == ("a", DataChunkState.FAILED, "boom")
    assert chunk.Progress is not None
    assert chunk.Progress.Total == 2
    assert isinstance(dropped, DroppedEvent)
    assert dropped.reason == "slow consumer"
    assert decoder.last_id == 5


# -- lifecycle and public names -------------------------------------------------------


async def test_async_client_refuses_reuse_after_close(server: str) -> None:
    wiz = AsyncClient(server)
    async with wiz:
        await wiz.processors()
        with pytest.raises(RuntimeError, match="already open"):
            await wiz.__aenter__()
    assert wiz.closed
    with pytest.raises(RuntimeError, match="closed"):
        await wiz.processors()
    with pytest.raises(RuntimeError, match="closed"):
        async with wiz:
            pass


def test_sync_client_refuses_reuse_after_close(embedded: EmbeddedExecutor) -> None:
    wiz = Client(embedded.url)
    with wiz:
        wiz.processors()
    with pytest.raises(RuntimeError, match="closed"):
        wiz.processors()
    with pytest.raises(RuntimeError, match="closed"), wiz:
        pass
    unused = Client(embedded.url)
    unused.close()
    with pytest.raises(RuntimeError, match="closed"):
        unused.run("noop", "x")


def test_public_names() -> None:
    assert sorted(client_module.__all__) == sorted(
        [
            "DEFAULT_URL",
            "AsyncClient",
            "ChunkEvent",
            "Client",
            "DoneEvent",
            "DroppedEvent",
            "Event",
            "EventDecoder",
            "EventsUnavailable",
            "RetryPolicy",
            "RunEvent",
            "RunWhy",
            "is_finished",
        ]
    )
    for name in client_module.__all__:
        assert hasattr(client_module, name), name
    assert wiz_executor.Client is Client
    assert wiz_executor.AsyncClient is AsyncClient
    assert {"Client", "AsyncClient"} <= set(wiz_executor.__all__)
