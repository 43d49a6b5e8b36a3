"""Downstream outages are ridden out: deliveries back off up to a cap for a window
(`delivery_timeout`), honour `Retry-After` within it, probe a dead host one request at a
time, and fail with their reason only once the window has passed; shutdown does not
wait for the window."""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from _gates import add, asgi_client, configure, run_path
from _stub_server import FlakyDownstream, closed_port, deliver_one, serve_asgi
from conftest import live_server, wait_for, wait_run_done
from wiz_executor import (
    Executor,
    Settings,
    create_app,
)

pytestmark = pytest.mark.anyio


class Outage:
    """An ASGI app in front of another that answers 503 while `down`, holding each
    refusal a few loop passes so that requests sent together overlap, and counting how
    many it held at once of those sent once the sender could know it was down (after
    its first refusal: the first requests go out before anything has failed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.down = True
        self.refused: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self.probes = 0
        """Requests refused that were sent after the first refusal."""
        self.tries: Counter[str] = Counter()
        """Requests refused, per ChunkID."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.down:
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.tries[json.loads(body)["ChunkID"]] += 1
        known_down = sum(self.refused.values()) > 0
        if known_down:
            self.probes += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(20):  # let other requests in meanwhile, if any are sent
                await asyncio.sleep(0)  # noqa: sleep-ok (one loop pass, not a wait)
            self.refused[scope["path"]] += 1
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"value":"down"}'})
        finally:
            if known_down:
                self.in_flight -= 1


def sender_settings(tmp_path: Path, **kwargs: Any) -> Settings:
    """Small delays, so that a test outage is short; no attempt bound, as by default."""
    options: dict[str, Any] = {"downstream_backoff": 0.01, "delivery_backoff_cap": 0.1}
    return Settings(data_dir=tmp_path / "a", **(options | kwargs))


def chunks(n: int) -> list[dict[str, Any]]:
    return [
        {"ChunkID": f"in{i}", "AssociatedChunkID": f"out{i}", "RawData": {"i": i}} for i in range(n)
    ]


async def test_an_outage_longer_than_the_old_retry_budget_loses_nothing(tmp_path: Path) -> None:
    """B is down (503) for longer than delivery used to try (5 attempts, ~1.5 s with
    the default backoff): every output of A still reaches B exactly once, A ends
    SUCCEEDED with no delivery error, and B never saw more than one request at a time
    while it was down."""
    n = 30
    async with Executor(Settings(data_dir=tmp_path / "b")) as executor_b:
        outage = Outage(create_app(executor=executor_b))
        async with (
            serve_asgi(outage) as host_b,
            live_server(sender_settings(tmp_path)) as (url_a, executor_a),
            httpx.AsyncClient(base_url=url_a) as a,
            asgi_client(executor_b) as b,
        ):
            await configure(b, "noop", "next", num_chunks=n)
            where = [{"Hostname": host_b, "ProcID": "noop", "RunID": "next"}]
            await configure(
                a, "noop", "first", num_chunks=n, SendDownstream=True, DownstreamLocations=where
            )
            assert (await add(a, "noop", "first", chunks(n))).json()["Accepted"] == n
            # The first requests go out together; then 15 probes, one at a time, at 0.01 s
            # doubling to the 0.1 s cap: about 1.2 s more of outage, and more tries of
            # one output than delivery used to make (5) before it gave up.
            await wait_for(
                lambda: outage.probes >= 15 and max(outage.tries.values()) > 6,
                30,
                "B to refuse 15 probes, and one output 7 times",
            )
            assert executor_a.downstream is not None
            assert executor_a.downstream.host_down(host_b)
            assert (await a.get(run_path("noop", "first"))).json()["CurrentState"] == "RUNNING"
            outage.down = False

            assert (await wait_run_done(a, "noop", "first", 30))["CurrentState"] == "SUCCEEDED"
            assert (await wait_run_done(b, "noop", "next"))["CurrentState"] == "SUCCEEDED"
            data = (await b.get(run_path("noop", "next") + "/data")).json()
            assert sorted(c["ChunkID"] for c in data["In"]) == sorted(f"out{i}" for i in range(n))
            sent = (await a.get(run_path("noop", "first") + "/data")).json()
            assert [o for o in sent["Out"] if "DeliveryError" in o] == []
            assert not executor_a.downstream.host_down(host_b)
    assert outage.most_in_flight == 1, "the dead host was sent several requests at once"


async def test_a_delivery_fails_with_its_reason_once_its_window_has_passed(
    tmp_path: Path,
) -> None:
    stub = FlakyDownstream([503], forever=True)
    settings = sender_settings(tmp_path, delivery_timeout=0.3)
    async with (
        serve_asgi(stub) as stub_host,
        live_server(settings) as (url, _),
        httpx.AsyncClient(base_url=url) as http,
    ):
        where = [{"Hostname": stub_host, "ProcID": "next", "RunID": "r2"}]
        await configure(
            http, "noop", "r", num_chunks=3, SendDownstream=True, DownstreamLocations=where
        )
        assert (await add(http, "noop", "r", chunks(3))).is_success
        assert (await wait_run_done(http, "noop", "r"))["CurrentState"] == "ERRORED"
        out = (await http.get(run_path("noop", "r") + "/data")).json()["Out"]
    assert len(out) == 3
    for output in out:
        assert output["State"] == "SUCCEEDED"
        error = output["DeliveryError"]
        assert error.startswith(f"{stub_host} next/r2: gave up after "), error
        assert "0.3 s delivery window (--delivery-timeout)" in error
        assert error.endswith("last: HTTP 503: stub: not now"), error


@pytest.mark.parametrize(("asked", "low", "high"), [("3", 3.0, 3.0), ("50", 4.0, 5.0)])
async def test_retry_after_is_honoured_past_the_backoff_cap_but_not_past_the_window(
    monkeypatch: pytest.MonkeyPatch, asked: str, low: float, high: float
) -> None:
    """A downstream asking for 3 s gets 3 s although the backoff cap is 1 s; one asking
    for 50 s gets what is left of the 5 s window. The waits are recorded, not slept."""
    answers = [
        httpx.Response(503, headers={"Retry-After": asked}, json={"value": "maintenance"}),
        httpx.Response(200, json={"Accepted": 1, "Duplicates": 0}),
    ]
    chunk, waits = await deliver_one(answers, monkeypatch, backoff=0.01, cap=1.0, timeout=5.0)
    assert not answers, "not retried after the Retry-After"
    assert chunk.delivery_error is None
    assert len(waits) == 1
    assert low <= waits[0] <= high, waits


@pytest.mark.parametrize("ephemeral", [True, False])
async def test_shutdown_does_not_wait_for_the_delivery_window(
    tmp_path: Path, ephemeral: bool
) -> None:
    """With an hour's window and a dead downstream, shutdown gives the pending delivery
    the grace period, then stops it: with `--ephemeral` it fails, saying why; with the
    journal it stays pending there, to be resent after the restart."""
    stub = FlakyDownstream([503], forever=True)
    settings = replace(sender_settings(tmp_path, shutdown_grace=0.2), ephemeral=ephemeral)
    async with serve_asgi(stub) as stub_host:
        executor = Executor(settings)
        async with executor, asgi_client(executor) as http:
            where = [{"Hostname": stub_host, "ProcID": "next", "RunID": "r2"}]
            await configure(
                http, "noop", "r", num_chunks=1, SendDownstream=True, DownstreamLocations=where
            )
            assert (await add(http, "noop", "r", chunks(1))).is_success
            await wait_for(lambda: stub.tries["out0"] >= 2, what="the delivery being retried")
        # (the per-test timeout fails this test if shutdown waits for the window)
        run = executor.runs.get("noop", "r")
        if ephemeral:
            assert run.state.value == "ERRORED"
            assert run.chunk("in0").delivery_error == (
                f"{stub_host} next/r2: executor shut down before the output was delivered"
            )
        else:
            assert run.state.value == "RUNNING"  # not finished: its output is still owed
            assert run.chunk("in0").delivery_error is None


class Counting(httpx.AsyncBaseTransport):
    """An httpx transport around the real one that counts connection failures and, while
    `watching`, the requests in flight once one has failed."""

    def __init__(self) -> None:
        self.real = httpx.AsyncHTTPTransport()
        self.watching = True
        self.refused = 0
        self.probes = 0
        """Requests sent after the first refusal."""
        self.tries: Counter[str] = Counter()
        """Requests sent, per ChunkID."""
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.tries[json.loads(request.content)["ChunkID"]] += 1
        counted = self.watching and self.refused > 0
        if counted:
            self.probes += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self.real.handle_async_request(request)
        except httpx.ConnectError:
            self.refused += 1
            raise
        finally:
            if counted:
                self.in_flight -= 1

    async def aclose(self) -> None:
        await self.real.aclose()


@asynccontextmanager
async def serve_on(app: Any, port: int) -> AsyncIterator[None]:
    """Serve `app` on 127.0.0.1:`port` (a port nothing listened on a moment ago)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_for(lambda: server.started or task.done(), 10, "B to start")
        if task.done():
            task.result()
        yield
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_a_downstream_that_is_not_running_yet_gets_every_output_once(
    tmp_path: Path,
) -> None:
    """B is not running (connections refused) until A has been refused more times than
    it used to try; then B starts on that port (answering 503 until its run is
    configured), and gets every output exactly once; A ends SUCCEEDED."""
    n = 20
    nowhere = closed_port()
    port = int(nowhere.rsplit(":", 1)[1])
    counting = Counting()
    async with (
        Executor(sender_settings(tmp_path)) as executor_a,
        asgi_client(executor_a) as a,
        Executor(Settings(data_dir=tmp_path / "b")) as executor_b,
        asgi_client(executor_b) as b,
    ):
        assert executor_a.downstream is not None
        real_client = executor_a.downstream.client
        executor_a.downstream.client = httpx.AsyncClient(transport=counting)
        try:
            where = [{"Hostname": nowhere, "ProcID": "noop", "RunID": "next"}]
            await configure(
                a, "noop", "first", num_chunks=n, SendDownstream=True, DownstreamLocations=where
            )
            assert (await add(a, "noop", "first", chunks(n))).json()["Accepted"] == n
            # after the first requests, refused together: 12 probes, one at a time, and
            # more tries of one output than delivery used to make (5) before it gave up
            await wait_for(
                lambda: counting.probes >= 12 and max(counting.tries.values()) > 6,
                30,
                "A to be refused 12 probes, and one output 7 times",
            )
            assert (await a.get(run_path("noop", "first"))).json()["CurrentState"] == "RUNNING"
            outage = Outage(create_app(executor=executor_b))  # up, but 503 until configured
            counting.watching = False  # B is coming up: many requests at once are fine now
            async with serve_on(outage, port):
                await configure(b, "noop", "next", num_chunks=n)
                outage.down = False
                assert (await wait_run_done(a, "noop", "first", 30))["CurrentState"] == "SUCCEEDED"
                assert (await wait_run_done(b, "noop", "next"))["CurrentState"] == "SUCCEEDED"
                data = (await b.get(run_path("noop", "next") + "/data")).json()
                got = sorted(c["ChunkID"] for c in data["In"])
                assert got == sorted(f"out{i}" for i in range(n))
        finally:
            await executor_a.downstream.client.aclose()
            executor_a.downstream.client = real_client
    assert counting.most_in_flight == 1, "the dead host was sent several requests at once"
