"""The event stream: what a run's stream and the executor-wide stream carry, in which
order, and what happens to consumers that fall behind, disconnect or outlive the server.

Streams are read over real sockets (uvicorn on 127.0.0.1), since an in-memory ASGI
transport buffers whole responses; the hub itself is also tested without HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from conftest import live_server, wait_for
from wiz_executor import (
    Configuration,
    Data,
    DataChunkState,
    Executor,
    Registry,
    Settings,
    ShuttingDown,
    State,
    create_app,
)
from wiz_executor.events import KEEPALIVE, Subscription
from wiz_executor.processors import BUILTINS, Context, Input, Processor, ProcessorConfig
from wiz_executor.server._serving import Server

RUN = "/processors/noop/runs/{run}"


@dataclass
class Event:
    id: int
    type: str
    data: dict[str, Any]


async def sse_events(
    lines: AsyncIterator[str], comments: list[str] | None = None
) -> AsyncIterator[Event]:
    """Parse a Server-Sent-Events body as the browser does (the subset we send)."""
    fields: dict[str, str] = {}
    async for line in lines:
        if line == "":
            if fields:
                assert set(fields) == {"id", "event", "data"}, fields
                yield Event(int(fields["id"]), fields["event"], json.loads(fields["data"]))
                fields = {}
            continue
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        name, _, value = line.partition(": ")
        assert name not in fields, f"field {name!r} repeated: one-line data expected"
        fields[name] = value
    assert not fields, f"stream ended inside an event: {fields}"


async def collect(stream: AsyncIterator[Event], until: str | None = None) -> list[Event]:
    """Events up to the end of the stream (or up to and including the first `until`)."""
    out = []
    async for event in stream:
        out.append(event)
        if event.type == until:
            break
    return out


async def configure(http: httpx.AsyncClient, run: str, chunks: int, **ec: Any) -> None:
    body: dict[str, Any] = {"ExpectedData": {"NumChunks": chunks}}
    if ec:
        body["ExecutorConfig"] = ec
    resp = await http.post(RUN.format(run=run) + "/config", json=body)
    assert resp.status_code == 200, resp.text


async def add(http: httpx.AsyncClient, run: str, chunks: list[dict[str, Any]]) -> None:
    resp = await http.post(RUN.format(run=run) + "/data", json=chunks)
    assert resp.status_code == 200, resp.text


def states_by_chunk(events: list[Event]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in events:
        if e.type == "chunk":
            out.setdefault(e.data["ChunkID"], []).append(e.data["State"])
    return out


# -- a run's stream ----------------------------------------------------------------------


async def test_run_stream_snapshot_chunks_then_done(settings: Settings) -> None:
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        await configure(http, "r", 4, MaxWorkers=2)
        async with http.stream("GET", RUN.format(run="r") + "/events") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            events = sse_events(resp.aiter_lines())
            first = await anext(events)
            assert first.type == "run"
            assert first.data == {
                "ProcID": "noop",
                "RunID": "r",
                "CurrentState": "CONFIGURED",
                "ChunkCounts": {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 0, "FAILED": 0},
                "InputClosed": False,
            }
            await add(http, "r", [{"ChunkID": f"c{i}", "RawData": i} for i in range(4)])
            rest = await collect(events)  # the server ends the stream after `done`

    ids = [first.id] + [e.id for e in rest]
    assert all(a < b for a, b in itertools.pairwise(ids)), "ids must increase"
    assert rest[-1].type == "done"
    assert [e.type for e in rest].count("done") == 1
    assert rest[-1].data["CurrentState"] == "SUCCEEDED"
    assert rest[-1].data["ChunkCounts"] == {"WAITING": 0, "RUNNING": 0, "SUCCEEDED": 4, "FAILED": 0}
    assert states_by_chunk(rest) == {f"c{i}": ["WAITING", "RUNNING", "SUCCEEDED"] for i in range(4)}
    chunk_events = [e for e in rest if e.type == "chunk"]
    assert all(e.data["OutputID"] == e.data["ChunkID"] + "-out" for e in chunk_events)
    assert all("Error" not in e.data for e in chunk_events)
    run_states = [e.data["CurrentState"] for e in rest if e.type == "run"]
    assert run_states == ["RUNNING", "SUCCEEDED"]
    # the run turns RUNNING before any chunk event, and SUCCEEDED after the last one
    assert rest[0].type == "run"
    assert rest[0].data["CurrentState"] == "RUNNING"
    assert rest[-2].type == "run"
    assert rest[-2].data["CurrentState"] == "SUCCEEDED"


async def test_failed_chunk_carries_its_error_and_run_ends_errored(settings: Settings) -> None:
    async with live_server(settings) as (url, _), httpx.AsyncClient(base_url=url) as http:
        await configure(http, "r", 2)
        async with http.stream("GET", RUN.format(run="r") + "/events") as resp:
            events = sse_events(resp.aiter_lines())
            await anext(events)
            await add(
                http,
                "r",
                [{"ChunkID": "ok", "RawData": {}}, {"ChunkID": "bad", "RawData": {"Fail": True}}],
            )
            rest = await collect(events)
    failed = [e.data for e in rest if e.type == "chunk" and e.data["State"] == "FAILED"]
    assert len(failed) == 1
    assert failed[0]["ChunkID"] == "bad"
    assert "asked to fail chunk 'bad'" in failed[0]["Error"]
    assert states_by_chunk(rest)["bad"] == ["WAITING", "RUNNING", "FAILED"]
    assert rest[-1].type == "done"
    assert rest[-1].data["CurrentState"] == "ERRORED"
    assert rest[-1].data["ChunkCounts"]["FAILED"] == 1


async def test_stream_of_a_finished_run_is_snapshot_and_done(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/processors/noop/runs/r/config", json={"ExpectedData": {"NumChunks": 1}}
    )
    assert resp.status_code == 200
    await client.post("/processors/noop/runs/r/data", json={"ChunkID": "c", "RawData": 1})
    await wait_for(lambda: _state(client, "r", "SUCCEEDED"), what="run r to succeed")
    # the stream ends by itself, so the in-memory transport (which buffers) can read it
    resp = await client.get("/processors/noop/runs/r/events")
    assert resp.status_code == 200
    events = await collect(sse_events(_lines(resp.text)))
    assert [e.type for e in events] == ["run", "done"]
    assert events[0].data == events[1].data
    assert events[1].data["CurrentState"] == "SUCCEEDED"
    assert events[0].id < events[1].id


async def test_unknown_run_is_404(client: httpx.AsyncClient) -> None:
    resp = await client.get("/processors/noop/runs/nope/events")
    assert resp.status_code == 404
    assert "no run 'nope'" in resp.json()["value"]
    resp = await client.get("/processors/nope/runs/r/events")
    assert resp.status_code == 404


async def test_deleting_a_run_ends_its_stream_with_dropped(settings: Settings) -> None:
    async with live_server(settings) as (url, ex), httpx.AsyncClient(base_url=url) as http:
        await configure(http, "r", 0)
        async with http.stream("GET", RUN.format(run="r") + "/events") as resp:
            events = sse_events(resp.aiter_lines())
            assert (await anext(events)).type == "run"
            assert (await http.delete(RUN.format(run="r"))).status_code == 200
            rest = await collect(events)
        assert rest[-1].type == "dropped"
        assert rest[-1].data == {"reason": "the run was deleted"}
        await wait_for(lambda: ex.events.subscribers == 0, what="the stream to unsubscribe")


class Counting(Processor[ProcessorConfig]):
    """Reports progress three times, then answers."""

    id = "counting"
    name = "Counting"

    async def run(self, data: Input, context: Context[ProcessorConfig]) -> Any:
        for done in range(1, 4):
            context.report_progress(done, 3)
        return data.raw_data


async def test_progress_reports_become_chunk_events(settings: Settings) -> None:
    async with Executor(settings, Registry([*BUILTINS, Counting])) as ex:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(executor=ex)), base_url="http://executor"
        )
        async with http:
            resp = await http.post(
                "/processors/counting/runs/r/config", json={"ExpectedData": {"NumChunks": 1}}
            )
            assert resp.status_code == 200
            # the in-memory transport returns the body once the stream ends: start it,
            # and add the chunk once the subscription exists
            reading = asyncio.create_task(http.get("/processors/counting/runs/r/events"))
            await wait_for(lambda: ex.events.subscribers == 1, what="the subscription")
            await http.post("/processors/counting/runs/r/data", json={"ChunkID": "c", "RawData": 7})
            resp = await reading
    events = await collect(sse_events(_lines(resp.text)))
    chunk = [e.data for e in events if e.type == "chunk"]
    assert [(c["State"], c.get("Progress")) for c in chunk] == [
        ("WAITING", None),
        ("RUNNING", None),
        ("RUNNING", {"Done": 1, "Total": 3}),
        ("RUNNING", {"Done": 2, "Total": 3}),
        ("RUNNING", {"Done": 3, "Total": 3}),
        ("SUCCEEDED", None),
    ]
    assert events[-1].type == "done"


# -- the executor-wide stream ------------------------------------------------------------


async def test_executor_stream_carries_every_run(settings: Settings) -> None:
    async with live_server(settings) as (url, ex), httpx.AsyncClient(base_url=url) as http:
        async with http.stream("GET", "/events") as resp:
            assert resp.status_code == 200
            await wait_for(lambda: ex.events.subscribers == 1, what="the subscription")
            await configure(http, "a", 2)
            await configure(http, "b", 1)
            await add(http, "a", [{"ChunkID": "a1"}, {"ChunkID": "a2", "RawData": {"Fail": True}}])
            await add(http, "b", [{"ChunkID": "b1"}])
            events: list[Event] = []
            finished: set[str] = set()
            async for event in sse_events(resp.aiter_lines()):
                events.append(event)
                if event.type == "run" and event.data["CurrentState"] in ("SUCCEEDED", "ERRORED"):
                    finished.add(event.data["RunID"])
                if finished == {"a", "b"}:
                    break
        # the client went away: the hub forgets it and stops listening to the run map
        await wait_for(lambda: ex.events.subscribers == 0, what="the stream to unsubscribe")
        assert not ex.events.listening

    ids = [e.id for e in events]
    assert ids == sorted(ids)
    assert {e.type for e in events} == {"run", "chunk"}, "no done/dropped on the executor stream"
    runs = {e.data["RunID"]: e.data["CurrentState"] for e in events if e.type == "run"}
    assert runs == {"a": "ERRORED", "b": "SUCCEEDED"}
    created = [
        e.data["RunID"]
        for e in events
        if e.type == "run" and e.data["CurrentState"] == "CONFIGURED"
    ]
    assert created == ["a", "b"]
    assert states_by_chunk(events) == {
        "a1": ["WAITING", "RUNNING", "SUCCEEDED"],
        "a2": ["WAITING", "RUNNING", "FAILED"],
        "b1": ["WAITING", "RUNNING", "SUCCEEDED"],
    }


async def test_idle_stream_gets_keepalive_comments(settings: Settings) -> None:
    async with live_server(settings) as (url, ex), httpx.AsyncClient(base_url=url) as http:
        ex.events.keepalive = 0.05
        async with http.stream("GET", "/events") as resp:
            lines = resp.aiter_lines()
            assert await anext(lines) == KEEPALIVE.decode().splitlines()[0]


# -- consumers that fall behind ------------------------------------------------------------


async def test_subscriber_that_never_reads_is_dropped(executor: Executor) -> None:
    hub = executor.events
    hub.buffer_size = 16
    assert not hub.listening
    idle = hub.subscribe()
    assert hub.listening
    executor.configure("noop", "r", _config(200))
    executor.add_data("noop", "r", [_data(f"c{i}") for i in range(200)])
    run = await executor.wait("noop", "r", timeout=30)
    assert run.state is State.SUCCEEDED  # the executor did not wait for the consumer

    assert idle.ended
    assert idle.reason == "dropped"
    assert hub.dropped == 1
    assert not hub.listening, "with nobody left, the hub leaves the run map alone"
    frames = await _drain(idle)
    assert len(frames) == 1, "the backlog is discarded: only the dropped notice is left"
    event = await anext(sse_events(_lines(frames[0])))
    assert event.type == "dropped"
    assert "fell behind" in event.data["reason"]


async def test_dropping_the_last_subscriber_mid_change_skips_no_other_listener(
    executor: Executor,
) -> None:
    # The hub leaves the run map's listeners while the run map is calling them (its
    # last consumer is dropped inside a change notice): listeners after it in the list
    # must still hear of that change, and of every one after it.
    before: list[Any] = []
    after: list[Any] = []
    executor.runs.listeners.insert(0, lambda run, chunk: before.append(chunk))
    hub = executor.events
    hub.buffer_size = 2
    unread = hub.subscribe()
    executor.runs.listeners.append(lambda run, chunk: after.append(chunk))
    executor.configure("noop", "r", _config(5))
    executor.add_data("noop", "r", [_data(f"c{i}") for i in range(5)])
    await executor.wait("noop", "r", timeout=30)
    assert unread.reason == "dropped"
    assert not hub.listening
    assert len(after) == len(before)


async def test_a_consumer_that_keeps_up_takes_bursts_larger_than_its_buffer(
    executor: Executor,
) -> None:
    hub = executor.events
    hub.buffer_size = 16
    sub = hub.subscribe()
    received: list[bytes] = []

    async def read() -> None:
        async for batch in sub.batches(keepalive=30):
            received.append(batch)

    reader = asyncio.create_task(read())
    await wait_for(lambda: sub.idle, what="the reader to wait for events")
    executor.configure("noop", "burst", _config(300))
    executor.add_data("noop", "burst", [_data(f"c{i}") for i in range(300)])  # 300 at once
    await executor.wait("noop", "burst", timeout=30)
    await wait_for(lambda: sub.idle, what="the reader to take the last events")
    sub.close()
    await reader
    assert hub.dropped == 0
    events = [e async for e in sse_events(_lines(b"".join(received).decode()))]
    assert sum(e.type == "chunk" and e.data["State"] == "SUCCEEDED" for e in events) == 300


async def test_slow_http_consumer_is_dropped_while_the_run_completes(settings: Settings) -> None:
    async with live_server(settings) as (url, ex):
        ex.events.buffer_size = 64
        # a client that reads the response headers and then nothing: the kernel's socket
        # buffers fill up, then uvicorn's, then the subscription falls behind
        slow = httpx.AsyncClient(base_url=url)
        async with slow, httpx.AsyncClient(base_url=url) as http:
            async with slow.stream("GET", "/events") as resp:
                assert resp.status_code == 200  # headers read; the body is left unread
                await configure(http, "big", 0)
                batches = 0
                while ex.events.dropped == 0:
                    assert batches < 200, "the idle consumer was never dropped"
                    chunks = [{"ChunkID": f"c{batches}-{i}", "RawData": i} for i in range(500)]
                    await add(http, "big", chunks)
                    batches += 1
                resp_eoi = await http.post(RUN.format(run="big") + "/end-of-input")
                assert resp_eoi.status_code == 200
                run = await ex.wait("noop", "big", timeout=30)
                assert run.state is State.SUCCEEDED
                assert run.counts[DataChunkState.SUCCEEDED] == batches * 500
                # now read: what was in flight, then the dropped notice, then the end
                tail = await collect(sse_events(resp.aiter_lines()))
            assert tail[-1].type == "dropped"
            assert "fell behind" in tail[-1].data["reason"]
            assert ex.events.subscribers == 0


# -- shutdown ------------------------------------------------------------------------------


async def test_executor_shutdown_ends_streams(settings: Settings) -> None:
    ex = Executor(settings)
    async with ex:
        everything = ex.events.subscribe()
        ex.configure("noop", "r", _config(0))
        one_run = ex.events.subscribe(ex.get_run("noop", "r"))
    assert everything.ended
    assert everything.reason == "closed"
    assert one_run.ended
    assert one_run.reason == "closed"
    # what was buffered is still delivered, then the stream ends
    delivered = [e async for e in sse_events(_lines("".join(await _drain(everything))))]
    assert [(e.type, e.data["CurrentState"]) for e in delivered] == [("run", "CONFIGURED")]
    assert [e.type async for e in sse_events(_lines("".join(await _drain(one_run))))] == ["run"]
    assert not ex.events.listening
    with pytest.raises(ShuttingDown):
        ex.events.subscribe()


async def test_server_shutdown_does_not_wait_for_open_streams(tmp_path: Path) -> None:
    """uvicorn waits for open responses before the lifespan shutdown; our Server ends the
    event streams first, so an open dashboard does not hold the server."""
    app = create_app(Settings(data_dir=tmp_path / "data"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=None))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        await wait_for(lambda: server.started or serving.done(), what="uvicorn to start")
        async with httpx.AsyncClient(base_url=url) as http, http.stream("GET", "/events") as resp:
            await wait_for(lambda: app.state.executor.events.subscribers == 1, what="subscriber")
            server.should_exit = True
            # the stream ends cleanly (no error from the client), and the server stops
            assert [line async for line in resp.aiter_lines()] == []
        async with asyncio.timeout(20):
            await serving
    finally:
        server.should_exit = True
        await serving
        sock.close()


# -- helpers -------------------------------------------------------------------------------


async def _state(client: httpx.AsyncClient, run: str, state: str) -> bool:
    return bool((await client.get(f"/processors/noop/runs/{run}")).json()["CurrentState"] == state)


async def _lines(text: str) -> AsyncIterator[str]:
    for line in text.split("\n"):
        yield line


async def _drain(sub: Subscription) -> list[str]:
    return [b.decode() async for b in sub.batches(keepalive=30)]


def _config(chunks: int) -> Configuration:
    return Configuration.model_validate({"ExpectedData": {"NumChunks": chunks}})


def _data(chunk_id: str) -> Data:
    return Data.model_validate({"ChunkID": chunk_id, "RawData": chunk_id})
