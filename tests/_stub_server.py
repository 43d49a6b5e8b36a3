"""A tiny downstream stand-in: a raw ASGI app on a real uvicorn server on 127.0.0.1.

It plays a downstream executor's AddData that refuses each chunk a few times (503, 429)
before accepting it, or forever, and records every request it got, so delivery retries
can be tested against a real socket without a second executor.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from conftest import wait_for


class FlakyDownstream:
    """Answers each ChunkID with `refusals` in turn (status codes), then 200."""

    def __init__(self, refusals: list[int], forever: bool = False) -> None:
        self.refusals = refusals
        self.forever = forever
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.tries: Counter[str] = Counter()

    def accepted(self) -> list[dict[str, Any]]:
        """Bodies answered 200, one per chunk."""
        return [body for _, body in self.requests if body.get("_status") == 200]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        chunk = json.loads(body)
        tries = self.tries[chunk["ChunkID"]]
        self.tries[chunk["ChunkID"]] += 1
        if self.forever:
            status = self.refusals[0]
        else:
            status = self.refusals[tries] if tries < len(self.refusals) else 200
        self.requests.append((scope["path"], chunk | {"_status": status}))
        headers = [(b"content-type", b"application/json")]
        if status == 429:
            headers.append((b"retry-after", b"0"))
        answer = {"Accepted": 1, "Duplicates": 0} if status == 200 else {"value": "stub: not now"}
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


@asynccontextmanager
async def serve_asgi(app: Any) -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1 and an ephemeral port; yield its `host:port`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started or task.done(), 10, "the stub to start")
        if task.done():
            task.result()
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def closed_port() -> str:
    """A `host:port` on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def deliver_one(
    answers: list[Any], monkeypatch: Any = None, **options: Any
) -> tuple[Any, list[float]]:
    """Deliver one output of a run that sends to `h:1`, through a transport that gives
    `answers` (httpx Responses) in turn, with a `Downstream(**options)` of one sender.

    Returns the output's chunk and the waits the sender asked for between its tries;
    with `monkeypatch`, they are recorded instead of slept (asyncio.sleep is replaced
    for the delivery only)."""
    import httpx

    from wiz_executor import Configuration, DataFormat, ProcessorConfig, WorkModel
    from wiz_executor.downstream import Downstream
    from wiz_executor.runs import Chunk, Run, RunMap

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def record_wait(delay: float, result: Any = None) -> Any:
        waits.append(delay)
        return await real_sleep(0, result)

    runs = RunMap()
    where = [{"Hostname": "h:1", "ProcID": "p", "RunID": "next"}]
    config = Configuration.model_validate(
        {"ExecutorConfig": {"SendDownstream": True, "DownstreamLocations": where}}
    )
    run = Run("noop", "r", config, ProcessorConfig(), 1, WorkModel.POOL, None)
    runs.insert(run)
    chunk = Chunk("a", "a-out", DataFormat.RAW, None, "", "", False)
    transport = httpx.MockTransport(lambda request: answers.pop(0))
    async with httpx.AsyncClient(transport=transport) as http:
        downstream = Downstream(runs, http, senders=1, **options)
        if monkeypatch is not None:
            monkeypatch.setattr(asyncio, "sleep", record_wait)
        runs.delivery_started(run)
        downstream.deliver(run, chunk)
        (sender,) = downstream._senders
        await sender
        if monkeypatch is not None:
            monkeypatch.undo()
    return chunk, waits
